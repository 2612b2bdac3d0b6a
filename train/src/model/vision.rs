//! The image tower: a ViT that reads u8 images, keeps only the unmasked patches, and pools.
//!
//! Order of operations (FLIP / MAE): patch embedding (linear, or the convolutional stem of
//! [`super::stem`] with `patch_embed = "conv"`), + fixed 2-D sin-cos position embedding (or a
//! learned one, `vision_pos_embed = "learned"`),
//! masking, CLS token appended (only with `cls` and `avg_cls` pooling), the optional `ln_pre`
//! LayerNorm (`vision_ln_pre`), pre-norm blocks, final LayerNorm, pooling, projection. Two equivalent rewrites make masking cheaper:
//!
//! - The patch embedding is a convolution with kernel = stride = patch; it is computed as a matmul
//!   over the patches that are kept, so removed patches cost nothing (the weight keeps the
//!   convolution's `[width, 3, p, p]` layout).
//! - The position embedding of each kept patch is gathered with the same indices and added after
//!   the gather: the same values as adding before masking.
//!
//! Images arrive as `[B, H, W, 3]` u8 (HWC, RGB). Patches are cut from the u8 tensor (a quarter of the
//! bytes of float), and only kept patches are converted to float and normalised with CLIP's
//! mean/std, on the device.

use tch::{Device, Kind, TchError, Tensor};

use super::layers::{AttnMask, BlockShape, Compute, LayerNorm, Linear, Transformer};
use super::masking::PatchMask;
use super::params::Initializer;
use super::posembed::sincos_2d;
use super::stem::ConvStem;
use crate::config::{ModelConfig, PatchEmbed, PosEmbed, VisionPool};

/// CLIP's per-channel pixel mean (RGB, on the 0–1 scale).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel pixel standard deviation (RGB, on the 0–1 scale).
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How patches become tokens: ViT's linear projection or a convolutional stem.
#[derive(Debug)]
enum Embedding {
    /// `[width, 3, patch, patch]`, used flattened to `[width, 3·patch²]` as a linear layer. The
    /// flat view is taken in every forward, never kept: a view made once goes stale in autograd
    /// when the optimizer updates the parameter in place, and the parameter stops receiving
    /// gradients.
    Linear { weight: Tensor, bias: Tensor },
    /// The hybrid ViT's stem ([`ConvStem`]).
    Conv(ConvStem),
}

/// What the image encoder computes for a batch.
#[derive(Debug)]
pub struct VisionOutput {
    /// `[B, T, width]` float32 after the final LayerNorm: the CLS token first (when the tower has
    /// one), then the kept patch tokens in the mask's order (every patch, row-major, without one).
    pub tokens: Tensor,
    /// `[B, width]` float32: the pooled tokens (the features a linear probe reads).
    pub pooled: Tensor,
    /// `[B, embed_dim]` float32: the pooled tokens projected, not normalised.
    pub embedding: Tensor,
}

/// The ViT image encoder.
#[derive(Debug)]
pub struct VisionTower {
    embedding: Embedding,
    pos_embed: Tensor,
    cls_token: Option<Tensor>,
    ln_pre: Option<LayerNorm>,
    transformer: Transformer,
    norm: LayerNorm,
    proj: Linear,
    pixel_scale: Tensor,
    pixel_shift: Tensor,
    patch: i64,
    grid: i64,
    width: i64,
    pool: VisionPool,
}

impl VisionTower {
    /// Creates the tower's parameters under `visual.`.
    pub fn new(
        init: &mut Initializer,
        cfg: &ModelConfig,
        device: Device,
    ) -> Result<Self, TchError> {
        let width = cfg.vision_width as i64;
        let patch = cfg.patch_size as i64;
        let grid = cfg.grid_size() as i64;
        let embedding = match cfg.patch_embed {
            // MAE initialises the patch projection like a linear layer (xavier on the flattened
            // weight).
            PatchEmbed::Linear => Embedding::Linear {
                weight: init
                    .xavier_uniform("visual.patch_embed.weight", &[width, 3, patch, patch])?,
                bias: init.constant("visual.patch_embed.bias", &[width], 0.0)?,
            },
            PatchEmbed::Conv => Embedding::Conv(ConvStem::new(init, width, patch, cfg.stem_depth)?),
        };
        let cls_token = if cfg.vision_pool.has_cls_token() {
            Some(init.normal("visual.cls_token", &[1, 1, width], 0.02)?)
        } else {
            None
        };
        let ln_pre = if cfg.vision_ln_pre {
            Some(LayerNorm::new(init, "visual.ln_pre", width)?)
        } else {
            None
        };
        let shape = BlockShape {
            width,
            heads: cfg.vision_heads as i64,
            mlp_width: cfg.vision_mlp_width() as i64,
            depth: cfg.vision_depth as i64,
            activation: cfg.activation,
        };
        let transformer = Transformer::new(init, "visual.blocks", shape)?;
        let norm = LayerNorm::new(init, "visual.norm", width)?;
        let proj = Linear::normal(
            init,
            "visual.proj",
            width,
            cfg.embed_dim as i64,
            (width as f64).powf(-0.5),
            false,
        )?;
        let pos_embed = match cfg.vision_pos_embed {
            PosEmbed::Sincos => {
                Tensor::f_from_slice(&sincos_2d(cfg.grid_size(), cfg.vision_width))?
                    .f_view([grid * grid, width])?
                    .f_to_device(device)?
            }
            // ViT's and CLIP's initialisation scale.
            PosEmbed::Learned => init.normal("visual.pos_embed", &[grid * grid, width], 0.02)?,
        };
        // Normalisation folded into one multiply-add per value, laid out like a patch (c, y, x)
        // for the linear embedding, per channel `[1, 3, 1, 1]` for the stem.
        let repeat = match cfg.patch_embed {
            PatchEmbed::Linear => (patch * patch) as usize,
            PatchEmbed::Conv => 1,
        };
        let per_value = |f: &dyn Fn(usize) -> f64| -> Vec<f32> {
            (0..3)
                .flat_map(|c| std::iter::repeat_n(f(c) as f32, repeat))
                .collect()
        };
        let layout = |t: Tensor| match cfg.patch_embed {
            PatchEmbed::Linear => Ok(t),
            PatchEmbed::Conv => t.f_view([1, 3, 1, 1]),
        };
        let pixel_scale = layout(Tensor::f_from_slice(&per_value(&|c| {
            1.0 / (255.0 * CLIP_STD[c])
        }))?)?
        .f_to_device(device)?;
        let pixel_shift = layout(Tensor::f_from_slice(&per_value(&|c| {
            -CLIP_MEAN[c] / CLIP_STD[c]
        }))?)?
        .f_to_device(device)?;
        Ok(VisionTower {
            embedding,
            pos_embed,
            cls_token,
            ln_pre,
            transformer,
            norm,
            proj,
            pixel_scale,
            pixel_shift,
            patch,
            grid,
            width,
            pool: cfg.vision_pool,
        })
    }

    /// The position embedding table `[L, width]` (float32): fixed sin-cos, or the learned
    /// parameter.
    pub fn position_embedding(&self) -> &Tensor {
        &self.pos_embed
    }

    /// `[B, H, W, 3]` u8 → `[B, L, 3·p²]` u8, patches row-major, values in (c, y, x) order.
    pub fn patchify(&self, images: &Tensor) -> Result<Tensor, TchError> {
        let b = images.size().first().copied().unwrap_or(0);
        let (g, p) = (self.grid, self.patch);
        images
            .f_view([b, g, p, g, p, 3])?
            .f_permute([0, 1, 3, 5, 2, 4])?
            .f_reshape([b, g * g, 3 * p * p])
    }

    /// Unnormalised image embeddings `[B, embed_dim]` (float32). `images` is u8 `[B, H, W, 3]` on
    /// the model's device; `mask` (on the same device) selects the kept patches, `None` uses all.
    pub fn forward(
        &self,
        images: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        Ok(self.encode(images, mask, compute)?.embedding)
    }

    /// The encoder's outputs (see [`VisionOutput`]) for u8 `images` on the model's device.
    pub fn encode(
        &self,
        images: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<VisionOutput, TchError> {
        let b = images.size().first().copied().unwrap_or(0);
        let mut x = match &self.embedding {
            Embedding::Linear { weight, bias } => {
                self.embed_linear(images, weight, bias, mask, compute)?
            }
            Embedding::Conv(stem) => self.embed_conv(images, stem, mask)?,
        };
        if let Some(cls) = &self.cls_token {
            x = Tensor::f_cat(&[cls.f_expand([b, 1, self.width], false)?, x], 1)?;
        }
        if let Some(ln) = &self.ln_pre {
            x = ln.forward(&x)?;
        }
        let tokens =
            self.norm
                .forward(&self.transformer.forward(&x, &AttnMask::Full, compute)?)?;
        let pooled = match self.pool {
            // With `avg_cls` the CLS token is among the tokens averaged (FLIP's code).
            VisionPool::Avg | VisionPool::AvgCls => {
                tokens.f_mean_dim([1i64].as_slice(), false, Kind::Float)?
            }
            VisionPool::Cls => tokens.f_select(1, 0)?,
        };
        let embedding = Compute::to_float(&self.proj.forward(&pooled, compute)?)?;
        Ok(VisionOutput {
            tokens,
            pooled,
            embedding,
        })
    }

    /// Each token of `tokens` (`[B, T, width]`, as in [`VisionOutput`]) through the output
    /// projection: `[B, T, embed_dim]` float32, not normalised (a CLIP teacher's token features).
    pub fn project_tokens(&self, tokens: &Tensor, compute: Compute) -> Result<Tensor, TchError> {
        Compute::to_float(&self.proj.forward(tokens, compute)?)
    }

    /// True when the tokens of [`VisionOutput`] start with a CLS token.
    pub fn has_cls_token(&self) -> bool {
        self.cls_token.is_some()
    }

    /// Tokens `[B, K, width]` + position embeddings of the kept patches, embedded linearly: only
    /// kept patches are cut out, converted and projected.
    fn embed_linear(
        &self,
        images: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        mask: Option<&PatchMask>,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let patches = self.patchify(images)?;
        let (b, _, patch_dim) = patches.size3()?;
        let (patches, pos) = match mask {
            Some(m) => {
                let index = m
                    .ids_keep
                    .f_unsqueeze(-1)?
                    .f_expand([b, m.kept(), patch_dim], false)?;
                (patches.f_gather(1, &index, false)?, self.kept_positions(m)?)
            }
            None => (patches, self.pos_embed.f_unsqueeze(0)?),
        };
        let pixels = self
            .pixel_shift
            .f_addcmul(&patches.f_to_kind(Kind::Float)?, &self.pixel_scale)?;
        let projection =
            Linear::from_parts(weight.f_view([self.width, -1])?, Some(bias.shallow_clone()));
        Compute::to_float(&projection.forward(&pixels, compute)?)?.f_add(&pos)
    }

    /// Tokens `[B, K, width]` + position embeddings of the kept patches, through the stem (which
    /// sees the whole image; the mask then selects tokens).
    fn embed_conv(
        &self,
        images: &Tensor,
        stem: &ConvStem,
        mask: Option<&PatchMask>,
    ) -> Result<Tensor, TchError> {
        let pixels = self.pixel_shift.f_addcmul(
            &images.f_permute([0, 3, 1, 2])?.f_to_kind(Kind::Float)?,
            &self.pixel_scale,
        )?;
        let tokens = stem
            .forward(&pixels)?
            .f_add(&self.pos_embed.f_unsqueeze(0)?)?;
        match mask {
            Some(m) => {
                let (b, _, w) = tokens.size3()?;
                let index = m
                    .ids_keep
                    .f_unsqueeze(-1)?
                    .f_expand([b, m.kept(), w], false)?;
                tokens.f_gather(1, &index, false)
            }
            None => Ok(tokens),
        }
    }

    /// Position embeddings `[B, K, width]` of each sample's kept patches.
    fn kept_positions(&self, m: &PatchMask) -> Result<Tensor, TchError> {
        let b = m.ids_keep.size().first().copied().unwrap_or(0);
        self.pos_embed
            .f_index_select(0, &m.ids_keep.f_reshape([-1])?)?
            .f_view([b, m.kept(), self.width])
    }
}
