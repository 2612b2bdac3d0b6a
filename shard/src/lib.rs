//! flipstream storage and the shard format: everything that writes, commits, lists, checks or reads
//! a committed dataset, without images, charts or libtorch. The crates built on it: `flipstream-
//! imaging` (decode/resize/encode), `flipstream-loader` (the streaming loader and tokenizer),
//! `flipstream-stats` (the statistics report), `flipstream-ingest` (web pairs → shards).
//!
//! - [`store`]: object-store URLs (`path`, `file://`, `memory://`, `s3://`, `gs://`, `az://`) as a
//!   [`StoreRoot`] rooted at a folder.
//! - [`writer`]: Parquet files streamed to a store with checksums; [`ShardSink`] rotates shards.
//! - [`commit`]: the commit protocol's write side ([`DatasetWriter`], [`UnitWriter`]).
//! - [`dataset`]: the read side ([`Dataset`]: manifest + commit records → committed row groups).
//! - [`reader`]: ranged reads of single row groups with column projection ([`ShardReader`]).
//! - [`listing`]: `shard ls`, committed units and files from the commit records.
//! - [`retried`]: retry units (`ingest --retry-failed`) and the rejections they superseded.
//! - [`verify`]: `shard verify`, every object checked against its commit record.
//! - [`split`]: `shard split`, the train/validation split view.
//! - [`filter`]: `shard filter`, a new dataset of the rows that satisfy column predicates.
//! - [`scores`]: score sidecars (`flipstream score`): per-row CLIP scores beside the shards.
//! - [`problems`]: [`problems::Validate`], how every configuration reports what is wrong with it.
//! - [`progress`]: [`Progress`], how long operations report their advance (libraries never print).

pub mod commit;
pub mod dataset;
pub mod error;
pub mod filter;
pub mod listing;
pub mod problems;
pub mod progress;
pub mod reader;
pub mod retried;
pub mod rows;
pub mod scores;
pub mod split;
pub mod store;
pub mod verify;
pub mod writer;

pub use commit::{DatasetWriter, Rejection, UnitWriter};
pub use dataset::{Dataset, RowGroupRef};
pub use error::{Result, ShardError};
pub use progress::Progress;
pub use reader::ShardReader;
pub use store::StoreRoot;
pub use writer::{ParquetFile, ShardSink, WriterSettings};
