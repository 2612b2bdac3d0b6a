//! CLIP's objective, FLIP's when the step masks patches: symmetric InfoNCE between the image and
//! text embeddings, nothing else (the step computes the contrastive term).

use super::{Batch, Objective, ObjectiveKind, ObjectiveOutput, contrastive_embeddings};
use crate::error::Result;
use crate::model::{ClipModel, Compute};

/// CLIP / FLIP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clip;

impl Objective for Clip {
    fn kind(&self) -> ObjectiveKind {
        ObjectiveKind::Clip
    }

    fn contrastive_weight(&self) -> Option<f64> {
        Some(1.0)
    }

    fn forward(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<ObjectiveOutput> {
        Ok(ObjectiveOutput {
            embeddings: Some(contrastive_embeddings(
                model,
                batch,
                batch.mask.as_ref(),
                compute,
            )?),
            terms: Vec::new(),
        })
    }
}
