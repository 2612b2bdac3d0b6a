//! [`SynthError`]: everything that can go wrong while generating, with the context to act on it.

use std::path::PathBuf;

/// An error of the synthetic-pair generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration is impossible (bad fraction, dirt that does not fit into `count`, …).
    #[error("invalid synth configuration: {0}")]
    Config(String),
    /// The output folder exists, is not empty, and replacing it was not asked for.
    #[error("output {path} already exists and is not empty (pass --force to replace it)")]
    OutputExists {
        /// The output folder.
        path: PathBuf,
    },
    /// The output path exists but is not a folder.
    #[error("output {path} exists and is not a directory")]
    OutputNotDirectory {
        /// The output path.
        path: PathBuf,
    },
    /// The output folder (or its temporary sibling) cannot be created.
    #[error("cannot write output {path}: {source}")]
    OutputUnwritable {
        /// The folder that could not be created.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image encoder failed on an item.
    #[error("encoding item {index} as {what} failed: {detail}")]
    Encode {
        /// The item index.
        index: u64,
        /// What was being produced (`jpeg`, `png`, `webp`, `gif`).
        what: &'static str,
        /// The encoder's message.
        detail: String,
    },
    /// Writing a Parquet file failed.
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow batch failed.
    #[error("building Arrow batch for {path}: {source}")]
    Arrow {
        /// The file the batch was for.
        path: PathBuf,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
    /// Serialising the sidecar failed.
    #[error("writing JSON to {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

impl SynthError {
    /// Whether the error is about what was asked for (bad options, unusable output path) rather
    /// than a failure during the work: command-line front ends exit with code 2 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SynthError::Config(_)
                | SynthError::OutputExists { .. }
                | SynthError::OutputNotDirectory { .. }
                | SynthError::OutputUnwritable { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SynthError {
        let path = path.into();
        move |source| SynthError::Io { path, source }
    }
}
