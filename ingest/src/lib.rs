//! flipstream ingestion: web pairs in, committed Parquet shards out.
//!
//! - [`source`]: inputs (WebDataset tars, Parquet, image folders, URL lists; local or on object
//!   stores) → deterministic units ([`source::plan_units`]) → raw items ([`source::open_unit`]).

pub mod source;
