//! [`TestServer`]: the loopback HTTP server, on its own thread and tokio runtime.
//!
//! Running on its own thread makes it usable from any test: `#[tokio::test]` (either flavour) or
//! a plain `#[test]` that runs the `flipstream` binary and waits for it. Dropping the server stops
//! it: the accept loop and every connection still open are cancelled, and the thread is joined.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::http::{read_request, write_head};
use super::routes::{Reply, RouteContext, route};

/// Size of the pieces `/big…` bodies are written in.
const ZERO_CHUNK: usize = 64 * 1024;

/// Behaviour knobs of a [`TestServer`].
#[derive(Debug, Clone)]
pub struct TestServerOptions {
    /// Pause before each byte of a `/slow/…` body. Default 500 ms.
    pub slow_interval: Duration,
}

impl Default for TestServerOptions {
    fn default() -> Self {
        Self {
            slow_interval: Duration::from_millis(500),
        }
    }
}

/// Per-target counters.
#[derive(Debug, Default, Clone, Copy)]
struct TargetStats {
    requests: u64,
    body_bytes: u64,
}

/// State shared by the accept loop, the connections and the test.
#[derive(Debug)]
struct Shared {
    root: PathBuf,
    options: TestServerOptions,
    connections: AtomicU64,
    requests: AtomicU64,
    /// Requests between being read and their response written, now and at most so far.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    targets: Mutex<HashMap<String, TargetStats>>,
}

/// Counts one request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn with_targets<T>(&self, f: impl FnOnce(&mut HashMap<String, TargetStats>) -> T) -> T {
        // A panicking test thread cannot leave the map half-updated: every update is one field.
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut targets)
    }

    /// Counts a request to `target`; returns its number (1 for the first).
    fn count_request(&self, target: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.with_targets(|t| {
            let stats = t.entry(target.to_owned()).or_default();
            stats.requests += 1;
            stats.requests
        })
    }

    fn count_body_bytes(&self, target: &str, n: usize) {
        self.with_targets(|t| t.entry(target.to_owned()).or_default().body_bytes += n as u64);
    }
}

/// A real HTTP/1.1 server on `127.0.0.1` (ephemeral port) serving `root/files/…` and the scripted
/// routes of [`routes`](super::routes). Stops when dropped.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let server = flipstream_testkit::http_server::TestServer::start("tests/data")?;
/// let url = server.url("/flaky/2/cat.jpg"); // 503, 503, then the file
/// // … download it …
/// assert_eq!(server.requests("/flaky/2/cat.jpg"), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server for `root` with default options.
    pub fn start(root: impl Into<PathBuf>) -> io::Result<Self> {
        Self::start_with(root, TestServerOptions::default())
    }

    /// Starts a server for `root` with `options`.
    pub fn start_with(root: impl Into<PathBuf>, options: TestServerOptions) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            root: root.into(),
            options,
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            targets: Mutex::new(HashMap::new()),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || runtime.block_on(accept_loop(listener, serving, shutdown_rx)))?;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port><path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Requests received for this exact target (path and query, as sent).
    pub fn requests(&self, target: &str) -> u64 {
        self.shared
            .with_targets(|t| t.get(target).map_or(0, |s| s.requests))
    }

    /// Requests received in all.
    pub fn total_requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same time so far (from the request read
    /// to the last byte of its response written).
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// TCP connections accepted in all (a refused download makes none).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Body bytes written to the socket for this target so far (all its requests together). For
    /// an aborted download this is what the kernel accepted before the client hung up.
    pub fn body_bytes_sent(&self, target: &str) -> u64 {
        self.shared
            .with_targets(|t| t.get(target).map_or(0, |s| s.body_bytes))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The receiver is gone only if the loop already ended; nothing left to stop then.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been printed; do not panic in drop.
            let _ = thread.join();
        }
    }
}

/// Accepts connections until shutdown; dropping the `JoinSet` on the way out cancels the
/// connections still open.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Out of file descriptors and the like: let the peer's timeout report it.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One request, one response, then the connection closes. I/O errors (a client that hung up)
/// just end the connection.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    // Small writes (the trickle) must leave at once.
    let _ = stream.set_nodelay(true);
    let request = match read_request(&mut stream).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(_) => {
            let _ = write_head(&mut stream, 400, &[("Content-Length".into(), "0".into())]).await;
            return;
        }
    };
    let count = shared.count_request(&request.target);
    let ctx = RouteContext {
        root: &shared.root,
        count,
        slow_interval: shared.options.slow_interval,
    };
    let in_flight = InFlight::enter(&shared);
    let reply = route(&request, ctx).await;
    let sent = send(&mut stream, reply, &shared, &request.target).await;
    drop(in_flight);
    if sent.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Writes `reply`, counting body bytes as they are accepted by the socket.
async fn send(
    stream: &mut TcpStream,
    reply: Reply,
    shared: &Shared,
    target: &str,
) -> io::Result<()> {
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            write_head(stream, status, &headers).await?;
            stream.write_all(&body).await?;
            shared.count_body_bytes(target, body.len());
        }
        Reply::Trickle {
            headers,
            body,
            interval,
        } => {
            write_head(stream, 200, &headers).await?;
            for byte in body.chunks(1) {
                tokio::time::sleep(interval).await;
                stream.write_all(byte).await?;
                shared.count_body_bytes(target, byte.len());
            }
        }
        Reply::Zeros { len, chunked } => {
            let header = if chunked {
                ("Transfer-Encoding", "chunked".to_owned())
            } else {
                ("Content-Length", len.to_string())
            };
            write_head(
                stream,
                200,
                &[
                    (header.0.into(), header.1),
                    ("Content-Type".into(), "application/octet-stream".into()),
                ],
            )
            .await?;
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut left = len;
            while left > 0 {
                let n = usize::try_from(left).map_or(ZERO_CHUNK, |l| l.min(ZERO_CHUNK));
                let piece = zeros.get(..n).unwrap_or_default();
                if chunked {
                    stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    stream.write_all(piece).await?;
                    stream.write_all(b"\r\n").await?;
                } else {
                    stream.write_all(piece).await?;
                }
                shared.count_body_bytes(target, n);
                left -= n as u64;
            }
            if chunked {
                stream.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    stream.flush().await
}
