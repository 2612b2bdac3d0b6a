//! The loader's error type. Settings that cannot work are refused up front with a message that
//! says what to change ([`LoaderError::is_usage`] tells a CLI to exit with code 2); bad data is
//! substituted and counted rather than raised, except when a whole batch is lost.

use crate::tokenize::TokenizeError;
use flipstream_shard::error::ShardError;

/// Errors from planning, resuming and streaming batches.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Opening the dataset or reading its records failed.
    #[error(transparent)]
    Dataset(#[from] ShardError),
    /// A setting that cannot work (batch not divisible by lanes, rank ≥ world size, ...).
    #[error("{0}")]
    Settings(String),
    /// A train/val split was asked for but the dataset has none.
    #[error(
        "{url} has no train/val split (no _flipstream/split.json); create one with \
         `flipstream shard split {url}` or use --split all"
    )]
    NoSplit {
        /// Dataset root.
        url: String,
    },
    /// `split.json` does not describe the committed data (units were committed after the split).
    #[error(
        "{url}: _flipstream/split.json is out of date: {detail}; re-run `flipstream shard split {url}`"
    )]
    SplitOutOfDate {
        /// Dataset root.
        url: String,
        /// Which row group disagrees, and how.
        detail: String,
    },
    /// A saved loader state does not fit this loader.
    #[error("cannot resume from the saved loader state: {0}")]
    State(String),
    /// A store error persisted across retries for every sample of a batch.
    #[error("epoch {epoch} batch {batch}: every sample failed to load; last error: {detail}")]
    BatchLost {
        /// Epoch.
        epoch: u64,
        /// Batch index in the epoch.
        batch: u64,
        /// The last failure (object and cause).
        detail: String,
    },
    /// A row group's content contradicts the dataset's records in a way that substitution would hide.
    #[error("{location} row group {row_group}: {detail}")]
    Inconsistent {
        /// Shard location.
        location: String,
        /// Row group index.
        row_group: usize,
        /// What disagrees.
        detail: String,
    },
    /// The tokenizer could not be loaded or failed on a caption.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// Threads or the I/O runtime could not be started.
    #[error("starting the loader's {what}: {detail}")]
    Runtime {
        /// `I/O runtime`, `decode pool`, `producer thread`.
        what: &'static str,
        /// The OS error.
        detail: String,
    },
    /// The background producer stopped without reporting why (it panicked).
    #[error("the loader's producer thread stopped unexpectedly")]
    ProducerGone,
}

impl LoaderError {
    /// True for errors caused by what the user asked for (bad settings, missing split, a state
    /// from another configuration): a CLI exits with code 2 on these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LoaderError::Settings(_) | LoaderError::NoSplit { .. } | LoaderError::State(_)
        )
    }
}

/// Result alias for the loader.
pub type LoaderResult<T> = std::result::Result<T, LoaderError>;
