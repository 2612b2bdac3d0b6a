//! flipstream ingestion: web pairs in, committed Parquet shards out.
//!
//! - [`caption`]: caption cleanup and caption filters.
//! - [`dedup`]: exact and near-duplicate detection within a unit.
//! - [`workers`]: which units this process runs (flags, Slurm, Kubernetes).

pub mod caption;
pub mod dedup;
pub mod workers;
