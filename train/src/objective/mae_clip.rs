//! MAE+CLIP (Weers et al. 2023; FLIP Table 1f): the contrastive loss plus λ times MAE's pixel
//! reconstruction of the removed patches through a [`PixelDecoder`].
//!
//! With `contrastive_view = "masked"` (the default) one encoder pass over the kept patches feeds
//! both terms; with `"full"` the contrastive term encodes the whole image in a second pass (the
//! two-view variant). In a step without a mask (the unmasked tuning phase) there is nothing to
//! reconstruct, and the loss is the contrastive term alone.

use tch::{Device, TchError};

use super::{
    Batch, ContrastiveView, Embeddings, MaeClipSettings, Objective, ObjectiveKind, ObjectiveOutput,
    Term, contrastive_embeddings,
};
use crate::config::ModelConfig;
use crate::error::{Result, TorchContext};
use crate::model::decoder::{PixelDecoder, pixel_targets, reconstruction_loss};
use crate::model::{ClipModel, Compute, Initializer, PatchMask};

/// MAE+CLIP with its decoder.
#[derive(Debug)]
pub struct MaeClip {
    settings: MaeClipSettings,
    decoder: PixelDecoder,
}

impl MaeClip {
    /// The objective and its decoder's parameters (under `heads.pixel_decoder`).
    pub fn new(
        init: &mut Initializer,
        settings: &MaeClipSettings,
        model: &ModelConfig,
        device: Device,
    ) -> std::result::Result<Self, TchError> {
        Ok(MaeClip {
            settings: settings.clone(),
            decoder: PixelDecoder::new(
                init,
                "heads.pixel_decoder",
                settings.decoder(),
                model,
                device,
            )?,
        })
    }

    /// The reconstruction term of the masked encoder `tokens`.
    fn reconstruction(
        &self,
        model: &ClipModel,
        batch: &Batch,
        tokens: &tch::Tensor,
        mask: &PatchMask,
        compute: Compute,
    ) -> Result<Term> {
        let run = || -> std::result::Result<tch::Tensor, TchError> {
            let pred = self.decoder.forward(tokens, mask, compute)?;
            let target = pixel_targets(
                &model.vision().patchify(&batch.images)?,
                self.settings.norm_pix_loss,
            )?;
            reconstruction_loss(&pred, &target, mask)
        };
        Ok(Term {
            name: "reconstruction",
            weight: self.settings.reconstruction_weight,
            value: run().context(|| "pixel reconstruction".into())?,
        })
    }
}

impl Objective for MaeClip {
    fn kind(&self) -> ObjectiveKind {
        ObjectiveKind::MaeClip
    }

    fn contrastive_weight(&self) -> Option<f64> {
        Some(self.settings.contrastive_weight)
    }

    fn embeddings(&self, model: &ClipModel, batch: &Batch, compute: Compute) -> Result<Embeddings> {
        let mask = match self.settings.contrastive_view {
            ContrastiveView::Masked => batch.mask.as_ref(),
            ContrastiveView::Full => None,
        };
        contrastive_embeddings(model, batch, mask, compute)
    }

    fn forward(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<ObjectiveOutput> {
        let Some(mask) = batch.mask.as_ref() else {
            return Ok(ObjectiveOutput {
                embeddings: Some(self.embeddings(model, batch, compute)?),
                terms: Vec::new(),
            });
        };
        let masked = model.encode_image(&batch.images, Some(mask), compute)?;
        let reconstruction = self.reconstruction(model, batch, &masked.tokens, mask, compute)?;
        let images = match self.settings.contrastive_view {
            ContrastiveView::Masked => masked.embeds,
            ContrastiveView::Full => model.image_features(&batch.images, None, compute)?,
        };
        Ok(ObjectiveOutput {
            embeddings: Some(Embeddings {
                images,
                texts: model.text_features(&batch.tokens, compute)?,
            }),
            terms: vec![reconstruction],
        })
    }
}
