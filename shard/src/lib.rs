//! flipstream storage: everything that touches a committed dataset, without libtorch.
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
//! - [`stats`]: the dataset statistics report (JSON, Markdown, HTML with SVG charts).
//! - [`imaging`]: image probe / decode / resize / encode / hashes for ingest and the loader
//!   ([`imaging::process_for_shard`], [`imaging::decode`], [`imaging::crop_resize_into`]).
//! - [`loader`]: the streaming loader ([`Loader`]): deterministic, elastic, resumable u8 batches.
//! - [`tokenize`]: caption tokenization and byte-level BPE training ([`TextTokenizer`]).

pub mod commit;
pub mod dataset;
pub mod error;
pub mod filter;
pub mod imaging;
pub mod listing;
pub mod loader;
pub mod reader;
pub mod retried;
pub mod rows;
pub mod scores;
pub mod split;
pub mod stats;
pub mod store;
pub mod tokenize;
pub mod verify;
pub mod writer;

pub use commit::{DatasetWriter, Rejection, UnitWriter};
pub use dataset::{Dataset, RowGroupRef};
pub use error::{Result, ShardError};
pub use loader::{Batch, Loader, LoaderConfig, LoaderState};
pub use reader::ShardReader;
pub use store::StoreRoot;
pub use tokenize::TextTokenizer;
pub use writer::{ParquetFile, ShardSink, WriterSettings};
