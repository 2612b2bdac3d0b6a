//! The fault-injecting proxy (`scripts/fault-proxy.py`) in front of a test server: 503/500
//! answers, reset connections and bodies cut short on a seeded share of requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::s3::python;

/// A running proxy; killed when dropped.
pub(crate) struct FaultProxy {
    child: Child,
    port: u16,
}

impl FaultProxy {
    /// Starts the proxy on a free port in front of `upstream` (`http://127.0.0.1:PORT`), giving a
    /// fault to `rate` of the requests, drawn from `seed`.
    pub(crate) fn start(upstream: &str, rate: f64, seed: u64) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fault-proxy.py");
        let mut child = Command::new(python())
            .args([
                script,
                "--upstream",
                upstream,
                "--rate",
                &rate.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting scripts/fault-proxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("proxy stdout"))
            .read_line(&mut line)
            .expect("reading the proxy's port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the fault proxy said {line:?}"));
        Self { child, port }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn control(&self, method: &str, what: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} /__fault-proxy/{what} HTTP/1.1\r\nHost: proxy\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Requests seen, forwarded, and faults injected by kind (`{"requests", "forwarded",
    /// "faults": {"503", "500", "reset", "cut"}}`).
    pub(crate) fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("GET", "stats", "")).expect("proxy stats")
    }

    /// Holds every write (PUT/POST) whose path contains `substring` unanswered until called again
    /// with `""`; `stats()["stalled"]` counts the writes held now.
    pub(crate) fn stall(&self, substring: &str) {
        assert_eq!(self.control("PUT", "stall", substring), "ok");
    }

    /// Changes the share of faulted requests (1.0: an outage; 0: none).
    pub(crate) fn set_rate(&self, rate: f64) {
        assert_eq!(self.control("PUT", "rate", &rate.to_string()), "ok");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
