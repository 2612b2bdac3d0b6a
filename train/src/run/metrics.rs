//! `metrics.jsonl`: one JSON object per line, tagged by `kind`:
//!
//! - `step`: an optimizer step (`step` is its 0-based index): loss and each of its terms by name,
//!   in-batch accuracy, lr, logit
//!   scale, gradient norm, mask ratio, phase, epoch, samples seen, step time, images/s, and the
//!   share of the step spent waiting for data;
//! - `eval`: an evaluation after `step` optimizer steps ([`EvalReport`]);
//! - `checkpoint`: a checkpoint saved after `step` optimizer steps, and where.
//!
//! A resumed run first drops the records past its checkpoint, so the file reads as if the run
//! had never been interrupted.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::run::eval::EvalReport;
use crate::run::rundir::{METRICS_FILE, RunDir};
use crate::schedule::Phase;

/// One optimizer step as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 0-based index of the optimizer step.
    pub step: u64,
    /// Epoch of the batch.
    pub epoch: u64,
    /// Samples consumed after this step.
    pub samples_seen: u64,
    /// Loss of the batch (before the update): the weighted sum of `terms`.
    pub loss: f64,
    /// Each loss term by name, unweighted (`contrastive`, `reconstruction`, …). Absent in files
    /// written before objectives existed, whose `loss` is the contrastive term.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub terms: BTreeMap<String, f64>,
    /// Mean in-batch top-1 accuracy of both directions.
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Logit scale (exp of its log).
    pub logit_scale: f64,
    /// Gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Fraction of patches removed.
    pub mask_ratio: f64,
    /// `masked` or `unmasked_tune`.
    pub phase: Phase,
    /// Wall time of the step: waiting for the batch plus computing.
    pub step_time_s: f64,
    /// Of which waiting for the loader.
    pub data_wait_s: f64,
    /// `data_wait_s / step_time_s`.
    pub data_wait_share: f64,
    /// Batch size / step time.
    pub images_per_s: f64,
    /// Samples of the batch that are substitutes for samples the loader could not read (all
    /// ranks); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub substituted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// An optimizer step.
    Step(StepRecord),
    /// An evaluation.
    Eval(Box<EvalReport>),
    /// A checkpoint, recorded once it is complete (saves run in the background, so the record
    /// may follow a few later steps' records).
    Checkpoint {
        /// Optimizer steps completed.
        step: u64,
        /// Where it is (path or URL).
        path: String,
        /// Seconds training waited for it (the copy off the device); 0 in runs from before
        /// background saves.
        #[serde(default)]
        stall_s: f64,
        /// Seconds the background save took (write, upload, pruning).
        #[serde(default)]
        write_s: f64,
    },
}

impl MetricsRecord {
    /// Whether a run resumed after `completed` steps keeps this record.
    fn before_resume(&self, completed: u64) -> bool {
        match self {
            MetricsRecord::Step(s) => s.step < completed,
            MetricsRecord::Eval(e) => e.step <= completed,
            MetricsRecord::Checkpoint { step, .. } => *step <= completed,
        }
    }
}

/// Appends records to the run's `metrics.jsonl` (uploaded on [`MetricsLog::sync`] for remote
/// run directories).
#[derive(Debug)]
pub struct MetricsLog {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
}

/// Parses a `metrics.jsonl` text; a line that does not parse is an error naming its number.
pub fn parse_metrics(text: &str) -> Result<Vec<MetricsRecord>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Request(format!("{METRICS_FILE} line {}: {e}", i + 1)))
        })
        .collect()
}

impl MetricsLog {
    /// Starts `metrics.jsonl` afresh, or — when resuming after `resume_after` steps — keeps the
    /// records up to that point, byte for byte as they were written, and drops the rest.
    pub fn open(dir: &RunDir, resume_after: Option<u64>) -> Result<Self> {
        let kept: Vec<String> = match resume_after {
            None => Vec::new(),
            Some(done) => match dir.read_opt(METRICS_FILE)? {
                None => Vec::new(),
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let lines = text.lines().filter(|l| !l.trim().is_empty());
                    // The original lines, not the records written again: floats need not print
                    // back to the same digits.
                    lines
                        .zip(parse_metrics(&text)?)
                        .filter(|(_, r)| r.before_resume(done))
                        .map(|(line, _)| line.to_string())
                        .collect()
                }
            },
        };
        let path = dir.local_path(METRICS_FILE);
        let file = std::fs::File::create(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let mut log = Self {
            file: std::io::BufWriter::new(file),
            path,
        };
        for line in &kept {
            writeln!(log.file, "{line}").map_err(|source| TrainError::Io {
                path: log.path.clone(),
                source,
            })?;
        }
        log.flush()?;
        Ok(log)
    }

    /// Appends one record.
    pub fn append(&mut self, record: &MetricsRecord) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| TrainError::Request(format!("serialising a metrics record: {e}")))?;
        writeln!(self.file, "{line}").map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes to the local file.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes and, for a remote run directory, uploads the file.
    pub fn sync(&mut self, dir: &RunDir) -> Result<()> {
        self.flush()?;
        dir.upload(METRICS_FILE)
    }
}
