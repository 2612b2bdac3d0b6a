//! flipstream ingestion: web pairs in, committed Parquet shards out.
//!
//! - [`pipeline`]: `flipstream ingest`: plan units, read, filter, dedup, resize, write, commit.
//! - [`config`]: [`config::IngestConfig`], every setting of an ingest run (TOML or flags).
//! - [`caption`]: caption cleanup and caption filters.
//! - `dedup`: exact and near-duplicate detection within a unit.
//! - `retry_failed`: `--retry-failed`, retry units that fetch transient failures again.
//! - [`source`]: inputs (WebDataset tars, Parquet, folders, URL lists) → units → raw items.
//! - [`fetch`]: the HTTP downloader for URL lists (timeouts, retries, size caps, opt-outs, and no
//!   loopback/private/link-local addresses unless allowed).
//! - [`workers`]: which units this process runs (flags, Slurm, Kubernetes).

pub mod caption;
pub mod config;
mod dedup;
pub mod fetch;
pub mod pipeline;
mod retry_failed;
pub mod source;
pub mod workers;
