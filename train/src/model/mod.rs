//! The FLIP/CLIP model: [`ClipModel`] = a masked ViT image tower ([`vision`]) and a Transformer
//! text tower ([`text`]) projected into one space, L2-normalised, with a learnable logit scale.
//!
//! - [`params`]: named parameters, seeded initialisation, the weight-decay rule.
//! - [`layers`]: linear, LayerNorm, attention (`scaled_dot_product_attention`), blocks, precision.
//! - [`masking`]: per-sample random patch masking reproducible from `(seed, step)`.
//! - [`posembed`]: fixed 2-D sin-cos position embeddings.
//! - [`stem`]: the convolutional stem of a hybrid ViT (`patch_embed = "conv"`).
//! - [`decoder`]: MAE's pixel decoder, a head that objectives add ([`crate::objective`]).
//! - [`caption`]: MUG's caption decoder (causal, cross-attending to the image tokens).
//! - [`regressor`]: CAE's latent regressor (cross-attention from removed to visible patches).
//! - [`flops`]: FLOP estimates for MFU.
//!
//! Training passes a [`PatchMask`]; inference and evaluation pass `None` and encode every patch.

pub mod caption;
pub mod decoder;
pub mod flops;
pub mod layers;
pub mod masking;
pub mod params;
pub mod posembed;
pub mod regressor;
pub mod stem;
pub mod text;
pub mod vision;

use tch::{Device, Kind, Tensor};

pub use flops::flops_per_sample;
pub use layers::Compute;
pub use masking::PatchMask;
pub use params::{Initializer, Param, ParamStore, applies_weight_decay};

use crate::config::{ModelConfig, Precision};
use crate::error::{Result, TorchContext, TrainError};
use text::TextTower;
use vision::VisionTower;

/// The name prefix of every parameter an objective adds beside the towers (decoders,
/// regressors): `heads.pixel_decoder.…`.
pub const HEADS_PREFIX: &str = "heads.";

/// What one forward pass gives the loss.
#[derive(Debug)]
pub struct ClipOutput {
    /// `[B, embed_dim]` float32, unit L2 norm per row.
    pub image_embeds: Tensor,
    /// `[B, embed_dim]` float32, unit L2 norm per row.
    pub text_embeds: Tensor,
    /// Scalar float32: exp of the (clamped) log logit scale.
    pub logit_scale: Tensor,
}

/// What the image tower gives an objective: its tokens, pooled features and embedding.
#[derive(Debug)]
pub struct ImageOutput {
    /// `[B, T, vision_width]` float32 encoder tokens after the final LayerNorm (CLS first when the
    /// tower has one, then the kept patches in the mask's order).
    pub tokens: Tensor,
    /// `[B, vision_width]` float32 pooled tokens, before the projection (linear-probe features).
    pub pooled: Tensor,
    /// `[B, embed_dim]` float32, unit L2 norm per row.
    pub embeds: Tensor,
}

/// The two towers and the logit scale. An objective's heads (decoders, regressors) are built
/// beside them by [`ClipModel::with_heads`], and their parameters join the same [`ParamStore`].
#[derive(Debug)]
pub struct ClipModel {
    config: ModelConfig,
    params: ParamStore,
    visual: VisionTower,
    text: TextTower,
    logit_scale: Tensor,
    device: Device,
}

impl Compute {
    /// The compute kind for a configured precision.
    pub fn for_precision(precision: Precision) -> Compute {
        match precision {
            Precision::Fp32 => Compute::FP32,
            Precision::Bf16 => Compute::BF16,
        }
    }
}

impl ClipModel {
    /// A freshly initialised model on `device`; equal seeds give equal weights on every device.
    pub fn new(config: &ModelConfig, seed: u64, device: Device) -> Result<Self> {
        Ok(Self::with_heads(config, seed, device, |_| Ok(()))?.0)
    }

    /// A fresh model and the heads that `heads` creates after the towers (so the towers' initial
    /// weights do not depend on the heads); the heads' parameters are in [`ClipModel::params`].
    pub fn with_heads<H>(
        config: &ModelConfig,
        seed: u64,
        device: Device,
        heads: impl FnOnce(&mut Initializer) -> std::result::Result<H, tch::TchError>,
    ) -> Result<(Self, H)> {
        config.validate()?;
        let build = || -> std::result::Result<(Self, H), tch::TchError> {
            let mut init = Initializer::new(seed, device);
            let visual = VisionTower::new(&mut init, config, device)?;
            let text = TextTower::new(&mut init, config)?;
            let logit_scale = init.constant("logit_scale", &[], config.logit_scale_init as f32)?;
            let heads = heads(&mut init)?;
            let model = ClipModel {
                config: config.clone(),
                params: init.finish(),
                visual,
                text,
                logit_scale,
                device,
            };
            Ok((model, heads))
        };
        build().context(|| format!("creating the model on {device:?}"))
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// All trainable tensors, in a fixed order.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Freezes the parameters whose names start with one of `prefixes` (see
    /// [`ParamStore::freeze`]); returns how many.
    pub fn freeze(&mut self, prefixes: &[&str]) -> Result<usize> {
        self.params
            .freeze(prefixes)
            .context(|| format!("freezing {prefixes:?}"))
    }

    /// Where the parameters live.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The image tower's position embedding `[L, vision_width]` (fixed sin-cos, or learned).
    pub fn position_embedding(&self) -> &Tensor {
        self.visual.position_embedding()
    }

    /// The text tower (for its `pool_positions` and direct use).
    pub fn text(&self) -> &TextTower {
        &self.text
    }

    /// The image tower (for its `patchify` and direct use).
    pub fn vision(&self) -> &VisionTower {
        &self.visual
    }

    /// L2-normalised image embeddings `[B, embed_dim]` for u8 `[B, H, W, 3]` images (any device:
    /// moved to the model's). `mask` keeps a subset of patches; `None` encodes every patch.
    pub fn image_features(
        &self,
        images: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<Tensor> {
        Ok(self.encode_image(images, mask, compute)?.embeds)
    }

    /// The image tower's tokens, pooled features and normalised embedding ([`ImageOutput`]) for
    /// u8 `[B, H, W, 3]` images; `mask` as in [`ClipModel::image_features`].
    pub fn encode_image(
        &self,
        images: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<ImageOutput> {
        check_images(images, &self.config)?;
        if let Some(m) = mask {
            check_mask(m, images.size().first().copied().unwrap_or(0), &self.config)?;
        }
        let run = || {
            let images = images.f_to_device(self.device)?;
            let mask = mask.map(|m| m.to_device(self.device)).transpose()?;
            let out = self.visual.encode(&images, mask.as_ref(), compute)?;
            Ok(ImageOutput {
                embeds: l2_normalize(&out.embedding)?,
                tokens: out.tokens,
                pooled: out.pooled,
            })
        };
        run().context(|| "image tower forward".to_string())
    }

    /// L2-normalised text embeddings `[B, embed_dim]` for int64 token ids `[B, n]`, `n ≤
    /// context_length` (any device: moved to the model's).
    pub fn text_features(&self, tokens: &Tensor, compute: Compute) -> Result<Tensor> {
        check_tokens(tokens, &self.config)?;
        let run = || {
            l2_normalize(
                &self
                    .text
                    .forward(&tokens.f_to_device(self.device)?, compute)?,
            )
        };
        run().context(|| "text tower forward".to_string())
    }

    /// exp of the log logit scale, clamped at `logit_scale_max` (scalar, differentiable).
    pub fn logit_scale(&self) -> Result<Tensor> {
        self.logit_scale
            .f_clamp_max(self.config.logit_scale_max)
            .and_then(|s| s.f_exp())
            .context(|| "logit scale".to_string())
    }

    /// The stored log logit scale parameter.
    pub fn log_logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    /// Both towers and the logit scale: what the contrastive loss needs.
    pub fn forward(
        &self,
        images: &Tensor,
        tokens: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<ClipOutput> {
        let b_img = images.size().first().copied().unwrap_or(0);
        let b_txt = tokens.size().first().copied().unwrap_or(0);
        if b_img != b_txt {
            return Err(TrainError::Input {
                what: "batch",
                detail: format!(
                    "{b_img} images but {b_txt} token rows: every image needs its caption"
                ),
            });
        }
        Ok(ClipOutput {
            image_embeds: self.image_features(images, mask, compute)?,
            text_embeds: self.text_features(tokens, compute)?,
            logit_scale: self.logit_scale()?,
        })
    }

    /// Clamps the stored log logit scale into `[0, logit_scale_max]` in place (after an optimizer
    /// step, as CLIP does), so that it cannot drift beyond the clamp where its gradient is zero.
    pub fn clamp_logit_scale_(&self) -> Result<()> {
        let mut p = self.logit_scale.shallow_clone();
        tch::no_grad(|| p.f_clamp_(0.0, self.config.logit_scale_max).map(|_| ()))
            .context(|| "clamping the logit scale".to_string())
    }
}

/// Each row of `x` (last dimension) scaled to unit L2 norm (norms clamped at 1e-12).
pub fn l2_normalize(x: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
    x.f_div(
        &x.f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)?
            .f_clamp_min(1e-12)?,
    )
}

/// Checks that `images` is a u8 `[B, image_size, image_size, 3]` tensor.
pub fn check_images(images: &Tensor, cfg: &ModelConfig) -> Result<()> {
    let bad = |detail: String| {
        Err(TrainError::Input {
            what: "images",
            detail,
        })
    };
    if !images.defined() {
        return bad("undefined tensor".into());
    }
    let size = images.size();
    let side = cfg.image_size as i64;
    if size.len() != 4 || size[1] != side || size[2] != side || size[3] != 3 {
        return bad(format!(
            "shape {size:?}, expected [batch, {side}, {side}, 3] (HWC RGB at model.image_size)"
        ));
    }
    if size[0] == 0 {
        return bad("empty batch".into());
    }
    let kind = images.f_kind().context(|| "images kind".to_string())?;
    if kind != Kind::Uint8 {
        return bad(format!(
            "kind {kind:?}, expected Uint8 (pixel values 0–255)"
        ));
    }
    Ok(())
}

/// Checks that `tokens` is an int64 `[B, n]` tensor, `1 ≤ n ≤ context_length`, ids below
/// `vocab_size` (an out-of-range id would be a device-side assert on CUDA).
pub fn check_tokens(tokens: &Tensor, cfg: &ModelConfig) -> Result<()> {
    let bad = |detail: String| {
        Err(TrainError::Input {
            what: "tokens",
            detail,
        })
    };
    if !tokens.defined() {
        return bad("undefined tensor".into());
    }
    let size = tokens.size();
    if size.len() != 2 || size[0] == 0 || size[1] == 0 || size[1] > cfg.context_length as i64 {
        return bad(format!(
            "shape {size:?}, expected [batch, n] with 1 ≤ n ≤ model.context_length = {}",
            cfg.context_length
        ));
    }
    let kind = tokens.f_kind().context(|| "tokens kind".to_string())?;
    if kind != Kind::Int64 {
        return bad(format!("kind {kind:?}, expected Int64 token ids"));
    }
    let range = || -> std::result::Result<(i64, i64), tch::TchError> {
        Ok((
            tokens.f_min()?.f_int64_value(&[])?,
            tokens.f_max()?.f_int64_value(&[])?,
        ))
    };
    let (lo, hi) = range().context(|| "token id range".to_string())?;
    if lo < 0 || hi >= cfg.vocab_size as i64 {
        return bad(format!(
            "ids range {lo}..={hi}, outside 0..{} (model.vocab_size)",
            cfg.vocab_size
        ));
    }
    Ok(())
}

fn check_mask(mask: &PatchMask, batch: i64, cfg: &ModelConfig) -> Result<()> {
    let size = mask.ids_keep.size();
    if size.len() != 2 || size[0] != batch || size[1] < 1 || size[1] > cfg.num_patches() as i64 {
        return Err(TrainError::Input {
            what: "patch mask",
            detail: format!(
                "ids_keep shape {size:?}, expected [{batch}, K] with 1 ≤ K ≤ {}",
                cfg.num_patches()
            ),
        });
    }
    Ok(())
}
