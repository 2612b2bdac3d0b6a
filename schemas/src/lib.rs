//! The flipstream data format, schema v1: the one source of truth for what a dataset looks like.
//!
//! A dataset is a folder (a prefix on an object store) holding
//! - Parquet **shards** of accepted pairs, one row per pair ([`shard_schema`]),
//! - Parquet **rejection files**, one row per input item that was not accepted ([`rejection_schema`]),
//! - one JSON [`CommitRecord`] per unit of work, written last: readers only see committed units,
//! - one JSON [`DatasetManifest`] describing how the dataset was made,
//! - optional score sidecars (`flipstream score`): per unit, a Parquet file of `key` and
//!   `clip_score`, described by a [`ScoreManifest`] ([`score_schema`]).
//!
//! Where each object lives is fixed by [`layout`]. Schema version and writer settings travel in the
//! Parquet key-value metadata ([`metadata`]); [`validate`] checks a file against schema v1 and says
//! precisely what differs. Rejection reasons are the stable codes of [`RejectReason`].
//!
//! `docs/format.md` documents every column for people who read the files with other tools.

pub mod checksum;
pub mod columns;
pub mod layout;
pub mod metadata;
pub mod records;
pub mod reject;
pub mod validate;

pub use columns::{
    FileKind, PASSTHROUGH_PREFIX_ON_CLASH, embedding_type, extra_column_name, rejection_schema,
    score_schema, score_schema_with_embeddings, shard_schema, shard_schema_with_extras,
};
pub use records::{
    CLIP_SCORE_COLUMN, CommitRecord, DatasetManifest, FileEntry, Holdout, HoldoutError,
    IMAGE_EMBEDDING_COLUMN, RetryInfo, ScoreManifest, ScoreModel, ShardEntry, Split, SplitManifest,
    SplitRowGroup, TEXT_EMBEDDING_COLUMN, UnitCounts, UnitSpec, WorkerInfo, chain_counts,
    choose_holdout, combo_hash, dataset_counts, now_rfc3339, side_of, split_of, validate_holdout,
};
pub use reject::RejectReason;
pub use validate::{
    ParquetInfo, SchemaDiff, ValidationError, validate_parquet_file, validate_schema,
};

/// The schema version written by this build. Readers accept exactly this version.
pub const SCHEMA_VERSION: u32 = 1;

/// Length in bytes of the `content_hash` column (BLAKE3, 256 bits).
pub const CONTENT_HASH_LEN: i32 = 32;
