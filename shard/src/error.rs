//! The shard crate's error type. Every variant names the object (URL, path, unit) it is about.

use flipstream_schemas::ValidationError;

/// Result alias for this crate.
pub type Result<T, E = ShardError> = std::result::Result<T, E>;

/// Errors from storage, the shard format and the commit protocol.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The URL or path cannot name a store.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// As given.
        url: String,
        /// Why.
        reason: String,
    },
    /// An object-store operation failed.
    #[error("{op} {path}: {source}")]
    Store {
        /// `get`, `put`, `list`, `delete`, `head`, `multipart upload`.
        op: &'static str,
        /// Full location (store URL + path).
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// Reading or writing Parquet failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        /// Full location.
        path: String,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An Arrow operation failed (building or slicing batches).
    #[error("arrow {context}: {source}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The Arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A JSON record could not be parsed or is inconsistent.
    #[error("{path}: {detail}")]
    BadRecord {
        /// Full location of the record.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A Parquet file is not a valid flipstream file.
    #[error("{path}: {source}")]
    Invalid {
        /// Full location.
        path: String,
        /// What the validator found.
        #[source]
        source: ValidationError,
    },
    /// The split asked for cannot be made from this dataset (holdout columns it lacks, too few
    /// label combinations to hold out).
    #[error("cannot split {url}: {detail}")]
    SplitRequest {
        /// Dataset root.
        url: String,
        /// What stands in the way.
        detail: String,
    },
    /// The filter asked for cannot be applied to this dataset (no predicate, a column it lacks, a
    /// column that does not compare with the value).
    #[error("cannot filter {url}: {detail}")]
    FilterRequest {
        /// Dataset root.
        url: String,
        /// What stands in the way.
        detail: String,
    },
    /// Scores asked for that this dataset does not have (no sidecar, several to choose from, one
    /// of another dataset or another model under the same name).
    #[error("scores of {url}: {detail}")]
    ScoresRequest {
        /// Dataset root.
        url: String,
        /// What stands in the way.
        detail: String,
    },
    /// The URL holds no flipstream dataset.
    #[error("{url} is not a flipstream dataset: {detail}")]
    NotADataset {
        /// Dataset root.
        url: String,
        /// What is missing.
        detail: String,
    },
    /// The dataset was created with another configuration than the one now used to write to it.
    #[error(
        "{url} was created with a different configuration (fingerprint {existing}, this run {ours}); \
         use the same options, or write to a new location"
    )]
    ConfigMismatch {
        /// Dataset root.
        url: String,
        /// Fingerprint in the manifest.
        existing: String,
        /// Fingerprint of this run.
        ours: String,
    },
    /// The accounting identity failed: an item was neither accepted nor rejected. A bug, never
    /// committed.
    #[error("unit {unit}: {detail}; not committed")]
    Accounting {
        /// Unit id.
        unit: String,
        /// Which side is off.
        detail: String,
    },
}

impl ShardError {
    /// Wraps an object-store error with the operation and location.
    pub fn store(
        op: &'static str,
        path: impl std::fmt::Display,
        source: object_store::Error,
    ) -> Self {
        ShardError::Store {
            op,
            path: path.to_string(),
            source: crate::store::explain(source),
        }
    }

    /// Wraps a Parquet error with the location.
    pub fn parquet(path: impl std::fmt::Display, source: parquet::errors::ParquetError) -> Self {
        ShardError::Parquet {
            path: path.to_string(),
            source,
        }
    }

    /// Wraps an Arrow error with what was being done.
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        ShardError::Arrow {
            context: context.into(),
            source,
        }
    }

    /// True when the error is an object that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ShardError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
