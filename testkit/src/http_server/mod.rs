//! Test support shared by this crate's tests and the end-to-end tests.
//!
//! - [`TestServer`]: a real HTTP/1.1 server on 127.0.0.1 that serves a folder's files and scripted
//!   misbehaviours (errors, flaky answers, redirects and loops, trickling and oversized bodies,
//!   opt-out headers, HTML disguised as `.jpg`), and counts the requests it receives per path.
//!   Its routes are listed in [`routes`] and in `docs/fetching.md`.
//!
//! Nothing here is used by the pipeline itself; it lives in the library (not behind `cfg(test)`)
//! so that other crates' tests can start the same server.

mod http;
pub mod routes;
mod server;

pub use server::{TestServer, TestServerOptions};
