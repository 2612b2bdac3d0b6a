//! A real S3-compatible server for the tests: moto's server on 127.0.0.1, started from the Python
//! test tools (`FLIPSTREAM_PYTHON`, provided by `make test` / `scripts/pytools-env.sh`).
//!
//! [`MotoServer::start`] picks a free port, starts `python -m moto.server`, waits until it answers,
//! and creates a fresh bucket with boto3; [`MotoServer::env`] gives the variables that point the
//! AWS SDK conventions (and `object_store`) at it. The server is killed when the value is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running moto server with one fresh bucket.
pub(crate) struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket created for this run.
    pub bucket: String,
    python: String,
}

/// The Python with the test tools, or a panic saying how to get it (never a silent skip).
pub(crate) fn python() -> String {
    std::env::var("FLIPSTREAM_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FLIPSTREAM_PYTHON is not set: these tests need the Python test tools (moto). Run them with \
             `make test`, or `source scripts/pytools-env.sh` first."
        )
    })
}

/// Points this test process at the server (`MotoServer::env`), for in-process reads through
/// `StoreRoot::parse("s3://…")`. Only for a test binary with one test, called before that test
/// starts any thread: setting the environment is sound only while nothing reads it concurrently.
pub(crate) fn set_process_env(vars: &[(String, String)]) {
    for (k, v) in vars {
        // SAFETY: per the contract above, no other thread exists yet that could read the
        // environment.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(k, v)
        };
    }
}

/// A TCP port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

fn answers_http(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.1 2"))
}

impl MotoServer {
    /// Starts the server and creates a bucket; panics with a clear message on failure.
    pub(crate) fn start() -> Self {
        let python = python();
        let port = free_port();
        let mut child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting moto with {python}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers_http(port) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("moto server exited ({status}) before answering:\n{err}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("moto server did not answer on 127.0.0.1:{port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto logs every request to stderr: stop collecting it so the pipe never fills
        drop(child.stderr.take());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let bucket = format!("flipstream-test-{}-{nanos}", std::process::id());
        let server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            python,
        };
        server.create_bucket();
        server
    }

    fn create_bucket(&self) {
        let script = format!(
            "import boto3\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n\
             s3.create_bucket(Bucket='{}')\n",
            self.endpoint, self.bucket
        );
        let out = Command::new(&self.python)
            .args(["-c", &script])
            .output()
            .expect("running boto3");
        assert!(
            out.status.success(),
            "creating bucket {}: {}",
            self.bucket,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Environment variables that point S3 clients at this server.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `s3://<bucket>/<prefix>`.
    pub(crate) fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
