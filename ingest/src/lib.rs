//! flipstream ingestion: web pairs in, committed Parquet shards out.
pub mod synth;
