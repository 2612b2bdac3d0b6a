//! Test support for flipstream's crates and its end-to-end tests, and the data of the `bench`
//! commands: nothing here runs in ingest, the loader or the trainer.
//!
//! - [`synthetic`]: committed datasets of known composition written through the real commit
//!   protocol (for `flipstream bench stats`, the stats, verify and S3 tests, and the Python
//!   interop example `make_interop_dataset`).
//! - [`http_server`]: [`http_server::TestServer`], a real HTTP/1.1 server on 127.0.0.1 with scripted
//!   misbehaviour (errors, flaky answers, redirects, trickling bodies, opt-out headers), for the
//!   URL-ingest tests. Its routes are listed in `docs/fetching.md`.
//!
//! Synthetic web pairs for training and ingest live in their own crate, `flipstream-synth`: they are
//! a user-facing command (`flipstream synth`), not only test data.

pub mod http_server;
pub mod synthetic;
