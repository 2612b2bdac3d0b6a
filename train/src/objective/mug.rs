//! MUG (Zhao et al., "Vision Learners Meet Web Image-Text Pairs"): purely generative — from one
//! masked encoding of the image, MAE's [`PixelDecoder`] reconstructs the removed patches and a
//! [`CaptionDecoder`] generates the caption (next-token cross entropy, teacher forcing,
//! cross-attending to the encoder's visible tokens). Loss = reconstruction + λ · caption.
//!
//! There is no contrastive term: the text tower, logit scale and output projection take no part
//! and are frozen; the caption decoder has its own token embeddings. Evaluation reports the
//! caption loss on the validation samples (whole images) beside the linear probe. A step
//! without a mask (mask ratio 0) trains the caption term alone.

use tch::{Device, TchError};

use super::{Batch, MugSettings, Objective, ObjectiveKind, ObjectiveOutput, Term};
use crate::config::ModelConfig;
use crate::error::{Result, TorchContext};
use crate::model::caption::{CaptionDecoder, CaptionShape};
use crate::model::decoder::{PixelDecoder, pixel_targets, reconstruction_loss};
use crate::model::{ClipModel, Compute, Initializer};

/// What MUG freezes: the contrastive parts it never trains.
pub const FROZEN: [&str; 3] = ["text.", "logit_scale", "visual.proj."];

/// MUG with its two decoders.
#[derive(Debug)]
pub struct Mug {
    settings: MugSettings,
    pixels: PixelDecoder,
    caption: CaptionDecoder,
}

impl Mug {
    /// The objective and its decoders' parameters (under `heads.pixel_decoder` and
    /// `heads.caption_decoder`).
    pub fn new(
        init: &mut Initializer,
        settings: &MugSettings,
        model: &ModelConfig,
        device: Device,
    ) -> std::result::Result<Self, TchError> {
        let pixels = PixelDecoder::new(
            init,
            "heads.pixel_decoder",
            settings.decoder(),
            model,
            device,
        )?;
        let caption = CaptionDecoder::new(
            init,
            "heads.caption_decoder",
            CaptionShape {
                width: settings.caption_width,
                depth: settings.caption_depth,
                heads: settings.caption_heads,
            },
            model,
        )?;
        Ok(Mug {
            settings: settings.clone(),
            pixels,
            caption,
        })
    }

    /// The caption term from the encoder `tokens`.
    fn caption_term(&self, tokens: &tch::Tensor, batch: &Batch, compute: Compute) -> Result<Term> {
        Ok(Term {
            name: "caption",
            weight: self.settings.caption_weight,
            value: self
                .caption
                .loss(tokens, &batch.tokens, compute)
                .context(|| "caption loss".into())?,
        })
    }
}

impl Objective for Mug {
    fn kind(&self) -> ObjectiveKind {
        ObjectiveKind::Mug
    }

    fn contrastive_weight(&self) -> Option<f64> {
        None
    }

    fn forward(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<ObjectiveOutput> {
        let encoded = model.encode_image(&batch.images, batch.mask.as_ref(), compute)?;
        let mut terms = Vec::new();
        if let Some(mask) = &batch.mask {
            let run = || -> std::result::Result<tch::Tensor, TchError> {
                let pred = self.pixels.forward(&encoded.tokens, mask, compute)?;
                let target = pixel_targets(
                    &model.vision().patchify(&batch.images)?,
                    self.settings.norm_pix_loss,
                )?;
                reconstruction_loss(&pred, &target, mask)
            };
            terms.push(Term {
                name: "reconstruction",
                weight: self.settings.reconstruction_weight,
                value: run().context(|| "pixel reconstruction".into())?,
            });
        }
        terms.push(self.caption_term(&encoded.tokens, batch, compute)?);
        Ok(ObjectiveOutput {
            embeddings: None,
            terms,
        })
    }

    fn validation_terms(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<Vec<Term>> {
        let encoded = model.encode_image(&batch.images, None, compute)?;
        Ok(vec![self.caption_term(&encoded.tokens, batch, compute)?])
    }
}
