//! The learning-rate and mask-ratio schedule: linear warmup, cosine decay to a floor, then the
//! optional unmasked tuning phase (its own warmup and cosine to 0, mask ratio 0).
//!
//! Steps are 0-based optimizer steps. With `W` warmup steps, `N` total steps of the masked phase,
//! peak `η` and floor `η_min`:
//!
//! ```text
//! step < W:        lr = η · (step + 1) / W
//! W ≤ step < N:    lr = η_min + (η − η_min) · ½ · (1 + cos(π · (step − W) / (N − W)))
//! N ≤ step < N+T:  unmasked tuning, the same shape with its own peak, warmup and floor 0
//! after:           lr = the floor of the last phase
//! ```
//!
//! The schedule is a pure function of the config and the step, so resuming needs only the step.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// Which part of training a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Linear warmup of the masked phase.
    Warmup,
    /// Cosine decay of the masked phase.
    Cosine,
    /// The unmasked tuning phase.
    UnmaskedTune,
    /// Past the last scheduled step.
    Finished,
}

/// The schedule's value at one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleValue {
    /// Learning rate.
    pub lr: f64,
    /// Fraction of patches to remove.
    pub mask_ratio: f64,
    /// Phase of this step.
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq)]
struct Segment {
    warmup: u64,
    steps: u64,
    peak: f64,
    floor: f64,
}

impl Segment {
    /// lr at `step` within the segment (0-based).
    fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup);
        if span == 0 {
            return self.peak;
        }
        let progress = (step - self.warmup) as f64 / span as f64;
        self.floor
            + (self.peak - self.floor)
                * 0.5
                * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// Learning rate and mask ratio per optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    main: Segment,
    tune: Option<Segment>,
    mask_ratio: f64,
}

impl Schedule {
    /// The schedule a training config describes (peak lr = `base_lr · batch_size / 256`).
    pub fn new(cfg: &TrainConfig) -> Self {
        let peak = cfg.peak_lr();
        Schedule {
            main: Segment {
                warmup: cfg.warmup_steps,
                steps: cfg.total_steps,
                peak,
                floor: peak * cfg.min_lr_ratio,
            },
            tune: cfg.unmasked_tune.as_ref().map(|t| Segment {
                warmup: t.warmup_steps,
                steps: t.steps,
                peak: t.base_lr * cfg.batch_size as f64 / 256.0,
                floor: 0.0,
            }),
            mask_ratio: cfg.mask_ratio,
        }
    }

    /// Steps of both phases together.
    pub fn total_steps(&self) -> u64 {
        self.main.steps + self.tune.as_ref().map_or(0, |t| t.steps)
    }

    /// The value at 0-based optimizer step `step`.
    pub fn at(&self, step: u64) -> ScheduleValue {
        if step < self.main.steps {
            let phase = if step < self.main.warmup {
                Phase::Warmup
            } else {
                Phase::Cosine
            };
            return ScheduleValue {
                lr: self.main.lr(step),
                mask_ratio: self.mask_ratio,
                phase,
            };
        }
        match &self.tune {
            Some(tune) if step < self.main.steps + tune.steps => ScheduleValue {
                lr: tune.lr(step - self.main.steps),
                mask_ratio: 0.0,
                phase: Phase::UnmaskedTune,
            },
            Some(tune) => ScheduleValue {
                lr: tune.floor,
                mask_ratio: 0.0,
                phase: Phase::Finished,
            },
            None => ScheduleValue {
                lr: self.main.floor,
                mask_ratio: self.mask_ratio,
                phase: Phase::Finished,
            },
        }
    }
}
