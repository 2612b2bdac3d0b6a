//! The trainer's error type, [`TrainError`]: every variant says where it happened (config key,
//! file, step, tensor) so that a failure can be acted on without a debugger.

use std::path::PathBuf;

use flipstream_shard::problems::{Problem, joined};
use tch::TchError;

/// Everything that can go wrong in the trainer crate.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config file that is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    ConfigParse {
        /// Where the text came from (a path, or `<string>`).
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A config that parses but cannot work; each entry names the key and what to change.
    #[error("invalid config: {}", joined(.problems))]
    InvalidConfig {
        /// Every problem, each naming its key and what to change.
        problems: Vec<Problem>,
    },
    /// A preset name that does not exist.
    #[error("unknown preset {name:?}: expected one of {}", crate::config::Preset::NAMES.join(", "))]
    UnknownPreset {
        /// The name given.
        name: String,
    },
    /// Input tensors with the wrong shape, kind or values (images, tokens).
    #[error("bad {what}: {detail}")]
    Input {
        /// Which input (`images`, `tokens`).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A libtorch operation failed.
    #[error("{context}: {source}")]
    Torch {
        /// What the trainer was doing.
        context: String,
        /// libtorch's error.
        #[source]
        source: TchError,
    },
    /// The loss or the gradient norm is NaN or infinite: training diverged.
    #[error(
        "{what} is {value} at step {step} (lr {lr:.3e}, mask ratio {mask_ratio}): training diverged; lower the learning rate, enable gradient clipping or use fp32"
    )]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The offending value.
        value: f64,
        /// The optimizer step (0-based) that produced it.
        step: u64,
        /// The learning rate of that step.
        lr: f64,
        /// The mask ratio of that step.
        mask_ratio: f64,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint that is unreadable, incomplete or inconsistent.
    #[error("checkpoint {}: {detail}", .path.display())]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint made with another model config (or for a model with other tensors).
    #[error("checkpoint {} does not fit this model: {}", .path.display(), .differences.join("; "))]
    CheckpointMismatch {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// Each differing config field or tensor, with both values.
        differences: Vec<String>,
    },
    /// The streaming loader refused the settings or failed while reading the dataset.
    #[error("{context}: {source}")]
    Loader {
        /// What the run was doing (`training data`, `validation data`).
        context: String,
        /// The loader's error.
        #[source]
        source: Box<flipstream_loader::LoaderError>,
    },
    /// Opening a dataset or reading its records failed.
    #[error("{context}: {source}")]
    Dataset {
        /// What the run was doing.
        context: String,
        /// The storage error.
        #[source]
        source: Box<flipstream_shard::ShardError>,
    },
    /// Loading, training or applying the caption tokenizer failed.
    #[error("{context}: {source}")]
    Tokenizer {
        /// Which tokenizer, and what was being done with it.
        context: String,
        /// The tokenizer's error.
        #[source]
        source: Box<flipstream_loader::tokenize::TokenizeError>,
    },
    /// A run directory that cannot be used as asked (already holds a run, holds none to resume,
    /// unreadable or unwritable files).
    #[error("run directory {url}: {detail}")]
    RunDir {
        /// The run directory (path or URL).
        url: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A data-parallel launch that cannot work: launcher variables that disagree, a world size
    /// that does not divide the batch, a rendezvous that nobody answers, ranks started with
    /// different settings. The message says what to change.
    #[error("distributed setup: {0}")]
    DistSetup(String),
    /// A collective failed while training: another rank died or stopped answering.
    #[error("distributed training: {context}: {detail}")]
    Distributed {
        /// What this rank was doing.
        context: String,
        /// c10d's message.
        detail: String,
    },
    /// What was asked cannot work with this dataset or run (no validation split, missing label
    /// columns, a resumed run with other settings); the message says what to change.
    #[error("{0}")]
    Request(String),
}

impl TrainError {
    /// True when the error is caused by what the user asked for (a setting, a flag, a dataset
    /// without what the request needs) rather than by a failure while working: a CLI exits with
    /// code 2 on these.
    pub fn is_usage(&self) -> bool {
        match self {
            TrainError::ConfigParse { .. }
            | TrainError::InvalidConfig { .. }
            | TrainError::UnknownPreset { .. }
            | TrainError::CheckpointMismatch { .. }
            | TrainError::NonFinite { .. }
            | TrainError::RunDir { .. }
            | TrainError::DistSetup(_)
            | TrainError::Request(_) => true,
            TrainError::Loader { source, .. } => {
                source.is_usage()
                    || matches!(
                        **source,
                        flipstream_loader::LoaderError::Dataset(
                            flipstream_shard::ShardError::NotADataset { .. }
                                | flipstream_shard::ShardError::InvalidUrl { .. }
                        )
                    )
            }
            TrainError::Dataset { source, .. } => matches!(
                **source,
                flipstream_shard::ShardError::NotADataset { .. }
                    | flipstream_shard::ShardError::InvalidUrl { .. }
                    | flipstream_shard::ShardError::ScoresRequest { .. }
            ),
            TrainError::Tokenizer { source, .. } => matches!(
                **source,
                flipstream_loader::tokenize::TokenizeError::Settings(_)
                    | flipstream_loader::tokenize::TokenizeError::Load { .. }
                    | flipstream_loader::tokenize::TokenizeError::MissingSpecial { .. }
            ),
            TrainError::Input { .. }
            | TrainError::Torch { .. }
            | TrainError::Io { .. }
            | TrainError::Distributed { .. }
            | TrainError::Checkpoint { .. } => false,
        }
    }
}

/// Short for `Result<T, TrainError>`.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Adds a context line to libtorch errors.
pub(crate) trait TorchContext<T> {
    /// Wraps a [`TchError`] into [`TrainError::Torch`] with `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, TchError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| TrainError::Torch {
            context: context(),
            source,
        })
    }
}
