//! Training objectives: what a step's loss is made of. An objective reads a [`Batch`] through the
//! model (and its own heads) and returns [`ObjectiveOutput`]: the embeddings of a contrastive term,
//! when it has one, and named local terms (`reconstruction`, …) with their weights. The step
//! ([`crate::step::TrainStep`]) adds `contrastive` over the whole batch — also under gradient
//! accumulation, where the other micro-batches' embeddings are held fixed — and the weighted local
//! terms; every term is reported by name in the step's metrics and `metrics.jsonl`.
//!
//! - [`config`]: the `[objective]` table ([`ObjectiveConfig`], [`ObjectiveKind`]).
//! - [`clip`]: CLIP / FLIP, contrastive only.
//! - [`mae_clip`]: CLIP + MAE's pixel reconstruction of the removed patches.
//! - [`cae_v2`]: the masked image tower regresses a frozen CLIP teacher's token features.
//! - [`mug`]: from one masked encoding, reconstruct the pixels and generate the caption.
//!
//! Adding an objective: a file here implementing [`Objective`], its settings as a variant of
//! [`ObjectiveConfig`], and one arm in [`build`] (see `docs/architecture.md`).

pub mod cae_v2;
pub mod clip;
pub mod config;
pub mod mae_clip;
pub mod mug;

use std::fmt;

use tch::{Device, TchError, Tensor};

pub use config::{
    CaeV2Settings, ClipSettings, ContrastiveView, DecoderShape, MaeClipSettings, MugSettings,
    ObjectiveConfig, ObjectiveKind, Supervise,
};

use crate::config::RunConfig;
use crate::error::Result;
use crate::model::{ClipModel, Compute, PatchMask};

/// A batch on the model's device and its patch mask (`None`: every patch is encoded).
#[derive(Debug)]
pub struct Batch {
    /// u8 `[B, H, W, 3]`.
    pub images: Tensor,
    /// int64 `[B, n]`.
    pub tokens: Tensor,
    /// This step's mask at the schedule's ratio.
    pub mask: Option<PatchMask>,
}

impl Batch {
    /// Rows `start .. start + len` (one micro-batch).
    pub fn narrow(&self, start: i64, len: i64) -> std::result::Result<Batch, TchError> {
        Ok(Batch {
            images: self.images.f_narrow(0, start, len)?,
            tokens: self.tokens.f_narrow(0, start, len)?,
            mask: self
                .mask
                .as_ref()
                .map(|m| m.narrow(start, len))
                .transpose()?,
        })
    }
}

/// L2-normalised image and text embeddings `[B, E]` for the contrastive term.
#[derive(Debug)]
pub struct Embeddings {
    /// Image side.
    pub images: Tensor,
    /// Text side.
    pub texts: Tensor,
}

/// One named loss term of a (micro-)batch: a scalar mean over its samples.
#[derive(Debug)]
pub struct Term {
    /// `reconstruction`, `feature`, `caption`, … (`contrastive` is added by the step).
    pub name: &'static str,
    /// Its weight in the loss.
    pub weight: f64,
    /// Scalar float32, differentiable.
    pub value: Tensor,
}

/// What an objective computes for one (micro-)batch.
#[derive(Debug)]
pub struct ObjectiveOutput {
    /// The embeddings of the contrastive term (`None`: the objective has none).
    pub embeddings: Option<Embeddings>,
    /// The local terms.
    pub terms: Vec<Term>,
}

/// A training objective (see the module docs).
pub trait Objective: fmt::Debug + Send {
    /// Which objective this is.
    fn kind(&self) -> ObjectiveKind;

    /// Weight of the contrastive term, `None` when the objective has none.
    fn contrastive_weight(&self) -> Option<f64>;

    /// The contrastive embeddings of `batch` exactly as [`Objective::forward`] computes them
    /// (called without gradients for the other micro-batches under accumulation). Only called
    /// when [`Objective::contrastive_weight`] is `Some`.
    /// The default: the text embeddings and the image embeddings of the batch's own mask.
    fn embeddings(&self, model: &ClipModel, batch: &Batch, compute: Compute) -> Result<Embeddings> {
        contrastive_embeddings(model, batch, batch.mask.as_ref(), compute)
    }

    /// Embeddings and local terms of `batch`, with gradients.
    fn forward(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<ObjectiveOutput>;

    /// Terms worth reporting on validation samples (whole images, called without gradients),
    /// such as MUG's caption loss; none by default.
    fn validation_terms(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<Vec<Term>> {
        let _ = (model, batch, compute);
        Ok(Vec::new())
    }
}

/// The model of `config` and its objective, initialised from `train.seed` on `device`: the one
/// place where objectives are registered.
pub fn build(config: &RunConfig, device: Device) -> Result<(ClipModel, Box<dyn Objective>)> {
    let (model, seed) = (&config.model, config.train.seed);
    Ok(match &config.objective {
        ObjectiveConfig::Clip(_) => {
            let (m, ()) = ClipModel::with_heads(model, seed, device, |_| Ok(()))?;
            (m, Box::new(clip::Clip))
        }
        ObjectiveConfig::MaeClip(s) => {
            let (m, o) = ClipModel::with_heads(model, seed, device, |init| {
                mae_clip::MaeClip::new(init, s, model, device)
            })?;
            (m, Box::new(o))
        }
        ObjectiveConfig::CaeV2(s) => {
            let teacher = cae_v2::load_teacher(&s.teacher, model, device)?;
            let (mut m, o) = ClipModel::with_heads(model, seed, device, |init| {
                cae_v2::CaeV2::new(init, s, model, teacher)
            })?;
            m.freeze(&cae_v2::FROZEN)?;
            (m, Box::new(o))
        }
        ObjectiveConfig::Mug(s) => {
            let (mut m, o) = ClipModel::with_heads(model, seed, device, |init| {
                mug::Mug::new(init, s, model, device)
            })?;
            m.freeze(&mug::FROZEN)?;
            (m, Box::new(o))
        }
    })
}

/// The text embeddings of `batch` and the image embeddings of `mask` (the standard contrastive
/// pair), for objectives that reuse CLIP's towers as they are.
pub fn contrastive_embeddings(
    model: &ClipModel,
    batch: &Batch,
    mask: Option<&PatchMask>,
    compute: Compute,
) -> Result<Embeddings> {
    Ok(Embeddings {
        images: model.image_features(&batch.images, mask, compute)?,
        texts: model.text_features(&batch.tokens, compute)?,
    })
}
