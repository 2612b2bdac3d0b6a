//! flipstream ingestion: web pairs in, committed Parquet shards out.
//!
//! - [`fetch`]: the HTTP downloader for URL lists (`Fetcher`, `FetchConfig`).
//! - [`testing`]: a loopback HTTP server with scripted behaviours, for this crate's and the
//!   end-to-end tests.

pub mod fetch;
pub mod testing;
