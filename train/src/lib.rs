//! flipstream trainer on libtorch (tch): the only crate that links libtorch.
//!
//! - [`config`]: [`RunConfig`] = [`ModelConfig`] + [`TrainConfig`], presets, TOML, validation.
//! - [`model`]: [`ClipModel`], the FLIP/CLIP model (masked ViT + text Transformer), and FLOP counts.
//! - [`loss`]: symmetric InfoNCE ([`clip_loss`]).
//! - [`objective`]: what a step's loss is made of ([`Objective`]: CLIP/FLIP, MAE+CLIP) and the
//!   `[objective]` table ([`ObjectiveConfig`]).
//! - [`optim`]: [`AdamW`] with saveable state, [`Gradients`] (accumulation, clipping).
//! - [`schedule`]: warmup + cosine learning rate, unmasked tuning phase ([`Schedule`]).
//! - [`checkpoint`]: safetensors weights and moments plus a JSON sidecar, atomic writes.
//! - [`interop`]: open_clip and transformers: export a trained model, import open_clip weights.
//! - [`step`]: [`TrainStep`], one optimizer step from u8 images and token ids.
//! - [`run`]: training runs: run directory, config, the loop, metrics, evaluation.
//! - [`bench`]: the train-step benchmark behind `flipstream bench train-step`.
//! - [`cpu_memory`]: keeps freed memory in the process for CPU training (fewer page faults).
//! - [`device`] picks where tensors live (`cpu`, `cuda`, `cuda:N`, `auto`).
//! - [`dist`]: data-parallel training on c10d process groups ([`dist::World`], launch variables).

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cpu_memory;
pub mod device;
pub mod dist;
pub mod error;
pub mod interop;
pub mod loss;
pub mod model;
pub mod objective;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod step;

pub use checkpoint::{CheckpointMeta, TrainProgress};
pub use config::{
    Activation, ModelConfig, PatchEmbed, PosEmbed, Precision, Preset, RunConfig, TextPool,
    TrainConfig, UnmaskedTune, VisionPool,
};
pub use error::{Result, TrainError};
pub use loss::{ContrastiveLoss, clip_loss};
pub use model::{ClipModel, ClipOutput, Compute, ImageOutput, PatchMask, flops_per_sample};
pub use objective::{Objective, ObjectiveConfig, ObjectiveKind};
pub use optim::{AdamW, AdamWConfig, Gradients};
pub use schedule::{Phase, Schedule, ScheduleValue};
pub use step::{StepMetrics, TrainStep};
