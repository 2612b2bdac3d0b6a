//! [`SourceError`]: why an input could not be planned or opened. Every variant names the input.
//!
//! Bad *items* are not errors: a truncated tar, an unreadable member or a bad row becomes a
//! [`RawItem`](super::RawItem) with `malformed` set, so that it is counted and rejected. An error
//! means the input itself cannot be used (missing file, unreachable store, unknown format, bad
//! option), and the unit must not be committed.

/// Result alias for this module.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Errors from planning units and opening them.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A glob or brace range matched nothing.
    #[error("{input}: no input matches this pattern")]
    NoMatch {
        /// The pattern as given.
        input: String,
    },
    /// The input does not exist.
    #[error("{input}: no such file, folder or object")]
    NotFound {
        /// Path or URL.
        input: String,
    },
    /// The pattern or URL cannot be parsed.
    #[error("{input}: invalid input: {detail}")]
    InvalidInput {
        /// As given.
        input: String,
        /// What is wrong.
        detail: String,
    },
    /// The input's kind cannot be recognised.
    #[error("{input}: unsupported input: {detail}")]
    UnknownKind {
        /// Path or URL.
        input: String,
        /// What was found, and what is supported.
        detail: String,
    },
    /// The input lacks a needed column, or a requested column does not exist.
    #[error("{input}: {detail}")]
    Columns {
        /// Path or URL.
        input: String,
        /// Which column, and which columns there are.
        detail: String,
    },
    /// Local I/O failed.
    #[error("{input}: {source}")]
    Io {
        /// Path.
        input: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An object-store operation failed.
    #[error("{input}: {op}: {source}")]
    Store {
        /// Full URL.
        input: String,
        /// `get`, `head`, `list`.
        op: &'static str,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The store URL could not be turned into a store.
    #[error("{input}: {source}")]
    StoreUrl {
        /// As given.
        input: String,
        /// Why.
        #[source]
        source: Box<flipstream_shard::ShardError>,
    },
    /// The Parquet footer cannot be read.
    #[error("{input}: parquet: {source}")]
    Parquet {
        /// Path or URL.
        input: String,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Reading the input's bytes failed partway (the storage failed, not the format): the unit
    /// must be retried, not committed.
    #[error("{input}: reading failed: {detail}")]
    Read {
        /// Path or URL.
        input: String,
        /// The underlying error.
        detail: String,
    },
    /// A unit plan does not fit its input (it changed since planning, or the plan is not ours).
    #[error("unit {unit} ({input}): {detail}")]
    Unit {
        /// Unit id.
        unit: String,
        /// Path or URL.
        input: String,
        /// What does not fit.
        detail: String,
    },
    /// An option is invalid.
    #[error("invalid source option: {0}")]
    Option(String),
}

impl SourceError {
    /// The input (path, URL or pattern) the error is about, when it names one.
    pub fn input(&self) -> Option<&str> {
        match self {
            SourceError::NoMatch { input }
            | SourceError::NotFound { input }
            | SourceError::InvalidInput { input, .. }
            | SourceError::UnknownKind { input, .. }
            | SourceError::Columns { input, .. }
            | SourceError::Io { input, .. }
            | SourceError::Store { input, .. }
            | SourceError::StoreUrl { input, .. }
            | SourceError::Parquet { input, .. }
            | SourceError::Read { input, .. }
            | SourceError::Unit { input, .. } => Some(input),
            SourceError::Option(_) => None,
        }
    }

    /// An I/O error on `input`; a missing file becomes [`SourceError::NotFound`].
    pub(crate) fn io(input: impl Into<String>, source: std::io::Error) -> Self {
        let input = input.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            SourceError::NotFound { input }
        } else {
            SourceError::Io { input, source }
        }
    }

    /// A store error on `input`; a missing object becomes [`SourceError::NotFound`].
    pub(crate) fn store(
        input: impl Into<String>,
        op: &'static str,
        source: object_store::Error,
    ) -> Self {
        let input = input.into();
        if matches!(source, object_store::Error::NotFound { .. }) {
            SourceError::NotFound { input }
        } else {
            SourceError::Store { input, op, source }
        }
    }
}

/// Options that fail [`Validate`](flipstream_shard::problems::Validate): every problem, in one
/// [`SourceError::Option`].
impl From<flipstream_shard::problems::Problems> for SourceError {
    fn from(problems: flipstream_shard::problems::Problems) -> Self {
        SourceError::Option(problems.to_string())
    }
}
