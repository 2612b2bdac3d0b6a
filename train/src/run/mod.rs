//! Training runs: the loop behind `flipstream train` and the evaluation behind `flipstream eval`.
//!
//! - [`spec`]: [`RunSpec`] = [`crate::RunConfig`] + the `[run]` table (data, loader, tokenizer,
//!   evaluation, checkpoint cadence), command-line [`Overrides`].
//! - [`rundir`]: [`RunDir`], the run directory (local or object store) and its layout.
//! - [`captions`]: the BPE tokenizer trained on the training captions when none is given.
//! - [`metrics`]: `metrics.jsonl` records ([`MetricsRecord`]).
//! - [`prompts`]: zero-shot classes from label columns ([`LabelSet`]) and prompt templates.
//! - [`eval`]: zero-shot classification (in-distribution and compositional) and image↔text
//!   retrieval on the validation split.
//! - [`saver`]: checkpoints saved on a background thread while training goes on.
//! - [`score`]: CLIP scores of a dataset's rows into a score sidecar (`flipstream score`).
//! - [`train_loop`]: [`train`], the loop itself: loader → step → metrics, evaluation, checkpoints.

pub mod captions;
pub mod eval;
pub mod metrics;
pub mod prompts;
pub mod rundir;
pub mod saver;
pub mod score;
pub mod spec;
pub mod train_loop;

pub use eval::{
    EvalData, EvalReport, EvalTargets, ProbeColumn, ProbeReport, Recall, RetrievalReport,
    ZeroShotReport, check_eval_data, evaluate,
};
pub use metrics::{MetricsRecord, StepRecord, parse_metrics};
pub use prompts::{LabelSet, read_templates};
pub use rundir::RunDir;
pub use score::{FailedUnit, ScoreQuantiles, ScoreRequest, ScoreSummary, score_dataset};
pub use spec::{DataSplit, EvalOptions, Overrides, RunOptions, RunSpec};
pub use train_loop::{RunStart, Session, Silent, TrainObserver, TrainSummary, train};
