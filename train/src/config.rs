//! Model and training configuration: [`ModelConfig`], [`TrainConfig`], the [`RunConfig`] pair that a
//! run is described by, the named [`Preset`]s, TOML loading and [`RunConfig::validate`].
//!
//! A config file names a preset and overrides single keys:
//!
//! ```toml
//! preset = "small"          # tiny | small | b16 | l16 (default: tiny)
//!
//! [model]
//! vision_depth = 8
//!
//! [train]
//! batch_size = 64
//! mask_ratio = 0.75
//! [train.unmasked_tune]
//! steps = 200
//! base_lr = 1e-5
//! ```
//!
//! Unknown keys are errors that name the key. The resolved config (preset plus overrides) serialises
//! back to TOML with every key spelled out, so that a run directory records exactly what ran, and
//! that file loads again to the same config.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use flipstream_shard::problems::Problem;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::objective::ObjectiveConfig;

/// How the image tower turns its tokens into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisionPool {
    /// Mean over the (kept) patch tokens, as FLIP does. No CLS token is created.
    Avg,
    /// A learned CLS token, appended after masking; its output is the image embedding.
    Cls,
    /// A learned CLS token, appended after masking, and the mean over it and the kept patch
    /// tokens: what FLIP's official code computes (its global average includes the CLS token).
    #[serde(rename = "avg_cls")]
    AvgCls,
}

impl VisionPool {
    /// True when the tower has a CLS token.
    pub fn has_cls_token(self) -> bool {
        matches!(self, VisionPool::Cls | VisionPool::AvgCls)
    }
}

/// How image patches become tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchEmbed {
    /// ViT's linear projection of each patch's pixels (FLIP, MAE, CLIP).
    #[default]
    Linear,
    /// A convolutional stem (stride-2 3×3 convolutions, GroupNorm, ReLU, then 1×1), the hybrid
    /// ViT of Xiao et al. 2021: far faster to train on small data. Needs a power-of-two patch
    /// size dividing `vision_width`.
    Conv,
}

impl PatchEmbed {
    /// True for the default (kept out of serialised configs, so that older fingerprints hold).
    pub fn is_linear(&self) -> bool {
        *self == PatchEmbed::Linear
    }
}

/// Where the image tower's position embeddings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosEmbed {
    /// MAE's fixed 2-D sin-cos table (FLIP, MAE): not a parameter.
    #[default]
    Sincos,
    /// A learned table `visual.pos_embed` (CLIP, open_clip's default): what a model imported
    /// with `train --init open_clip:DIR` has.
    Learned,
}

impl PosEmbed {
    /// True for the default (kept out of serialised configs, so that older fingerprints hold).
    pub fn is_sincos(&self) -> bool {
        *self == PosEmbed::Sincos
    }
}

/// The nonlinearity of the towers' MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact (erf) GELU.
    #[default]
    Gelu,
    /// OpenAI CLIP's `x · sigmoid(1.702 x)` (open_clip's `quick_gelu`): what OpenAI's weights
    /// were trained with.
    QuickGelu,
}

impl Activation {
    /// True for the default (kept out of serialised configs).
    pub fn is_gelu(&self) -> bool {
        *self == Activation::Gelu
    }
}

/// Which text token's output becomes the text embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextPool {
    /// The end-of-text token (`model.eot_id`), as CLIP does.
    Eot,
    /// The first token (the start token), as FLIP's non-causal text tower does. Needs
    /// `text_causal = false`: under causal attention the first token sees only itself, and every
    /// caption would get the same embedding.
    First,
    /// The mean over the caption's tokens (pads excluded): every word reaches the embedding
    /// directly from the first step, without attention having to learn to route it to one
    /// position (see docs/training.md for when this matters).
    Mean,
}

/// Numeric precision of the matrix multiplications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    Fp32,
    /// Matmuls and attention in bfloat16 with float32 master weights, residual stream, norms and
    /// loss (what autocast does; implemented explicitly so that it works on every device).
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision {other:?}: expected fp32 or bf16"
            )),
        }
    }
}

/// The architecture: a ViT image tower and a Transformer text tower projected into one space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Side of the square input image in pixels.
    pub image_size: usize,
    /// Side of a square patch in pixels; must divide `image_size`.
    pub patch_size: usize,
    /// `linear` (ViT's patch projection) or `conv` (a convolutional stem, hybrid ViT).
    #[serde(default, skip_serializing_if = "PatchEmbed::is_linear")]
    pub patch_embed: PatchEmbed,
    /// Convolutions per resolution of the conv stem (`patch_embed = "conv"`): 1 is Xiao et al.'s
    /// stem (one stride-2 3×3 convolution per halving); each more adds a stride-1 3×3
    /// convolution at that resolution (a deeper, more CNN-like stem; see docs/training.md).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub stem_depth: usize,
    /// Width of the image Transformer; a multiple of 4 (2-D sin-cos position embeddings).
    pub vision_width: usize,
    /// Number of image Transformer blocks.
    pub vision_depth: usize,
    /// Attention heads of the image Transformer; must divide `vision_width`.
    pub vision_heads: usize,
    /// MLP hidden width as a multiple of `vision_width`.
    pub vision_mlp_ratio: f64,
    /// `avg` (mean of the patch tokens), `avg_cls` (mean including a CLS token, FLIP's code) or
    /// `cls`.
    pub vision_pool: VisionPool,
    /// A LayerNorm on the image tokens before the first block (`ln_pre` of OpenAI's CLIP and
    /// open_clip; FLIP and MAE have none). Transformers' `CLIPVisionModel` always applies one, so
    /// a model exports to `--format hf` only with it (docs/export.md).
    #[serde(default, skip_serializing_if = "is_false")]
    pub vision_ln_pre: bool,
    /// `sincos` (fixed, MAE's) or `learned` position embeddings of the image patches.
    #[serde(default, skip_serializing_if = "PosEmbed::is_sincos")]
    pub vision_pos_embed: PosEmbed,
    /// The MLP nonlinearity of both towers: `gelu` or `quick_gelu` (OpenAI CLIP's).
    #[serde(default, skip_serializing_if = "Activation::is_gelu")]
    pub activation: Activation,
    /// Token vocabulary size (49408 for CLIP's BPE).
    pub vocab_size: usize,
    /// Maximum number of tokens per caption.
    pub context_length: usize,
    /// The padding token id (right padding).
    pub pad_id: usize,
    /// The end-of-text token id, where `text_pool = "eot"` pools (set from the run's tokenizer).
    /// Absent (configs written before 2026-12-07): the last non-pad token, which is the end token
    /// only when the tokenizer has a pad token of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eot_id: Option<usize>,
    /// Width of the text Transformer.
    pub text_width: usize,
    /// Number of text Transformer blocks.
    pub text_depth: usize,
    /// Attention heads of the text Transformer; must divide `text_width`.
    pub text_heads: usize,
    /// MLP hidden width as a multiple of `text_width`.
    pub text_mlp_ratio: f64,
    /// Causal self-attention in the text tower (CLIP); otherwise pads are masked out as keys.
    pub text_causal: bool,
    /// `eot` (the end-of-text token, CLIP) or `first` (the start token, FLIP; non-causal only).
    pub text_pool: TextPool,
    /// Dimension of the joint image-text embedding space.
    pub embed_dim: usize,
    /// Initial value of the learnable log logit scale: ln(1/0.07).
    pub logit_scale_init: f64,
    /// The log logit scale is clamped to at most this: ln(100).
    pub logit_scale_max: f64,
}

/// The optional unmasked tuning phase at the end of training (FLIP §3: a short phase at mask 0
/// closes the train/eval distribution gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmaskedTune {
    /// Optimizer steps of the phase, after `total_steps` masked steps.
    pub steps: u64,
    /// Its own base learning rate per 256 samples (scaled like `base_lr`).
    pub base_lr: f64,
    /// Linear warmup steps at the start of the phase (then cosine to 0).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Micro-batches per step in this phase (default `train.accum_steps`). Whole images cost two
    /// to four times the activation memory of masked ones; more micro-batches keep the batch, and
    /// the contrastive loss over it, unchanged (see [`crate::step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accum_steps: Option<usize>,
}

/// Optimization: batch, learning-rate schedule, AdamW, masking, precision, seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Samples per optimizer step (over all accumulation micro-batches).
    pub batch_size: usize,
    /// Learning rate per 256 samples; the peak lr is `base_lr * batch_size / 256` (FLIP's linear
    /// scaling rule; FLIP uses 4e-6).
    pub base_lr: f64,
    /// Lowest learning rate of the cosine decay as a fraction of the peak (0: decay to zero).
    pub min_lr_ratio: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Optimizer steps of the masked phase (the unmasked tuning phase comes after).
    pub total_steps: u64,
    /// Decoupled weight decay (not applied to biases, norms, CLS token, position embeddings and
    /// the logit scale).
    pub weight_decay: f64,
    /// AdamW (β1, β2).
    pub betas: [f64; 2],
    /// AdamW ε.
    pub eps: f64,
    /// Clip gradients to this global L2 norm; absent: no clipping (the norm is still reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip_norm: Option<f64>,
    /// Micro-batches per optimizer step. The contrastive loss still sees the whole batch: features
    /// of the other micro-batches are computed once without gradients and reused.
    pub accum_steps: usize,
    /// Fraction of image patches removed during the masked phase, in [0, 1).
    pub mask_ratio: f64,
    /// Optional unmasked tuning phase after `total_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmasked_tune: Option<UnmaskedTune>,
    /// Seed of the initial weights and of the per-step patch masks.
    pub seed: u64,
    /// `fp32` or `bf16`.
    pub precision: Precision,
}

impl TrainConfig {
    /// Peak learning rate of the masked phase: `base_lr * batch_size / 256`.
    pub fn peak_lr(&self) -> f64 {
        self.base_lr * self.batch_size as f64 / 256.0
    }
}

/// A whole run: model plus training. This is what a config file resolves to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The architecture.
    pub model: ModelConfig,
    /// The optimization.
    pub train: TrainConfig,
    /// The objective (`[objective]`; absent: CLIP).
    #[serde(default)]
    pub objective: ObjectiveConfig,
}

/// Named starting points; see `docs/training.md` for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// 64 px, patch 8, ViT 192×4; text 128×2: trains in minutes on 2 CPU cores. The default,
    /// for `flipstream train` without `--preset` and for config files without `preset`.
    #[default]
    Tiny,
    /// The anchor model: ViT 384×6 (6 heads), patch 16 @ 224; text 256×4, ctx 32; embed 256.
    Small,
    /// ViT-B/16 with CLIP's text encoder (512×12, 8 heads, ctx 77); embed 512.
    B16,
    /// ViT-L/16 with a 768×12 text encoder (12 heads, ctx 77); embed 768.
    L16,
}

impl Preset {
    /// The accepted names, in order.
    pub const NAMES: [&'static str; 4] = ["tiny", "small", "b16", "l16"];

    /// The preset's name as written in config files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::B16 => "b16",
            Preset::L16 => "l16",
        }
    }

    /// The preset's full configuration.
    pub fn config(self) -> RunConfig {
        RunConfig {
            model: self.model(),
            train: self.train(),
            objective: ObjectiveConfig::default(),
        }
    }

    /// The preset's architecture.
    pub fn model(self) -> ModelConfig {
        let clip_text = |width, depth, heads, context_length| ModelConfig {
            image_size: 224,
            patch_size: 16,
            patch_embed: PatchEmbed::Linear,
            stem_depth: 1,
            vision_width: 768,
            vision_depth: 12,
            vision_heads: 12,
            vision_mlp_ratio: 4.0,
            vision_pool: VisionPool::Avg,
            vision_ln_pre: false,
            vision_pos_embed: PosEmbed::Sincos,
            activation: Activation::Gelu,
            vocab_size: 49408,
            context_length,
            pad_id: 0,
            // CLIP's BPE: `<|endoftext|>`; a run sets both ids from its own tokenizer.
            eot_id: Some(49407),
            text_width: width,
            text_depth: depth,
            text_heads: heads,
            text_mlp_ratio: 4.0,
            text_causal: true,
            text_pool: TextPool::Eot,
            embed_dim: 512,
            logit_scale_init: (1.0f64 / 0.07).ln(),
            logit_scale_max: 100.0f64.ln(),
        };
        match self {
            Preset::Tiny => ModelConfig {
                image_size: 64,
                patch_size: 8,
                vision_width: 192,
                vision_depth: 4,
                vision_heads: 3,
                embed_dim: 128,
                ..clip_text(128, 2, 2, 32)
            },
            Preset::Small => ModelConfig {
                vision_width: 384,
                vision_depth: 6,
                vision_heads: 6,
                embed_dim: 256,
                ..clip_text(256, 4, 4, 32)
            },
            Preset::B16 => clip_text(512, 12, 8, 77),
            Preset::L16 => ModelConfig {
                vision_width: 1024,
                vision_depth: 24,
                vision_heads: 16,
                embed_dim: 768,
                ..clip_text(768, 12, 12, 77)
            },
        }
    }

    /// The preset's optimization settings.
    pub fn train(self) -> TrainConfig {
        // FLIP's recipe (Table 8 of the paper): AdamW (0.9, 0.95), wd 0.2, lr 4e-6 per 256 samples
        // at batch 32k, cosine decay, 50 % masking.
        let flip = TrainConfig {
            batch_size: 32768,
            base_lr: 4e-6,
            min_lr_ratio: 0.0,
            warmup_steps: 4000,
            total_steps: 78125,
            weight_decay: 0.2,
            betas: [0.9, 0.95],
            eps: 1e-8,
            grad_clip_norm: None,
            accum_steps: 1,
            mask_ratio: 0.5,
            unmasked_tune: None,
            seed: 0,
            precision: Precision::Bf16,
        };
        match self {
            // Small batches need a far larger lr per 256 samples than FLIP's 32k batches (linear
            // scaling does not hold that far down); these are tuned for the synthetic demo data.
            Preset::Tiny => TrainConfig {
                batch_size: 64,
                base_lr: 4e-3,
                warmup_steps: 20,
                total_steps: 500,
                grad_clip_norm: Some(1.0),
                precision: Precision::Fp32,
                ..flip
            },
            Preset::Small => TrainConfig {
                batch_size: 256,
                base_lr: 5e-4,
                warmup_steps: 500,
                total_steps: 20000,
                grad_clip_norm: Some(1.0),
                precision: Precision::Fp32,
                ..flip
            },
            Preset::B16 | Preset::L16 => flip,
        }
    }
}

impl FromStr for Preset {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            "b16" | "vit-b/16" | "vit-b-16" => Ok(Preset::B16),
            "l16" | "vit-l/16" | "vit-l-16" => Ok(Preset::L16),
            _ => Err(TrainError::UnknownPreset {
                name: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Preset::default().model()
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Preset::default().train()
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Preset::default().config()
    }
}

impl ModelConfig {
    /// Patches along one side of the image.
    pub fn grid_size(&self) -> usize {
        self.image_size.checked_div(self.patch_size).unwrap_or(0)
    }

    /// Patch tokens per image (before masking).
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Values per patch: 3 channels × patch².
    pub fn patch_dim(&self) -> usize {
        3 * self.patch_size * self.patch_size
    }

    /// Hidden width of the image MLPs.
    pub fn vision_mlp_width(&self) -> usize {
        mlp_width(self.vision_width, self.vision_mlp_ratio)
    }

    /// Hidden width of the text MLPs.
    pub fn text_mlp_width(&self) -> usize {
        mlp_width(self.text_width, self.text_mlp_ratio)
    }

    /// Every problem of this config, each naming the key and what to change. Empty when valid.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        self.size_problems(&mut p);
        self.stem_problems(&mut p);
        self.width_problems(&mut p);
        self.token_problems(&mut p);
        self.logit_scale_problems(&mut p);
        p
    }

    /// Sizes that must be positive, and the patch grid and attention heads they must divide.
    fn size_problems(&self, p: &mut Vec<Problem>) {
        let positive = [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("vision_width", self.vision_width),
            ("vision_depth", self.vision_depth),
            ("vision_heads", self.vision_heads),
            ("vocab_size", self.vocab_size),
            ("context_length", self.context_length),
            ("text_width", self.text_width),
            ("text_depth", self.text_depth),
            ("text_heads", self.text_heads),
            ("embed_dim", self.embed_dim),
        ];
        for (key, value) in positive {
            if value == 0 {
                p.push(Problem::new(
                    format!("model.{key}"),
                    "is 0: it must be at least 1",
                ));
            }
        }
        if self.patch_size > 0 && self.image_size > 0 {
            if !self.image_size.is_multiple_of(self.patch_size) {
                let lower = self.image_size / self.patch_size * self.patch_size;
                let upper = lower + self.patch_size;
                let suggestion = if lower > 0 {
                    format!("{lower} or {upper}")
                } else {
                    upper.to_string()
                };
                p.push(Problem::new(
                    "model.patch_size",
                    format!(
                        "= {} does not divide model.image_size = {}: use an image size that is a \
                         multiple of the patch size (e.g. {suggestion}) or another patch size",
                        self.patch_size, self.image_size
                    ),
                ));
            } else if self.image_size < self.patch_size {
                p.push(Problem::new(
                    "model.patch_size",
                    format!(
                        "= {} is larger than model.image_size = {}",
                        self.patch_size, self.image_size
                    ),
                ));
            }
        }
        for (tower, width, heads) in [
            ("vision", self.vision_width, self.vision_heads),
            ("text", self.text_width, self.text_heads),
        ] {
            if heads > 0 && width > 0 && !width.is_multiple_of(heads) {
                p.push(Problem::new(
                    format!("model.{tower}_heads"),
                    format!(
                        "= {heads} does not divide model.{tower}_width = {width}: choose \
                     heads among the divisors of the width (e.g. {}) or change the width",
                        divisors_near(width, heads)
                    ),
                ));
            }
        }
    }

    /// The convolutional stem (`patch_embed = "conv"`, `stem_depth`).
    fn stem_problems(&self, p: &mut Vec<Problem>) {
        if self.patch_embed == PatchEmbed::Conv
            && self.patch_size > 0
            && (!self.patch_size.is_power_of_two()
                || self.patch_size < 2
                || !self.vision_width.is_multiple_of(self.patch_size))
        {
            p.push(Problem::new(
                "model.patch_embed",
                format!(
                    "= \"conv\" needs a power-of-two patch_size of at least 2 that \
                 divides vision_width (the stem halves the resolution log2(patch) times and its \
                 channels are vision_width · 2^i / patch_size): patch_size = {}, vision_width = {}",
                    self.patch_size, self.vision_width
                ),
            ));
        }
        if !(1..=MAX_STEM_DEPTH).contains(&self.stem_depth) {
            p.push(Problem::new(
                "model.stem_depth",
                format!(
                    "= {} is out of range: 1 (one convolution per stem stage) to \
                 {MAX_STEM_DEPTH}",
                    self.stem_depth
                ),
            ));
        } else if self.stem_depth > 1 && self.patch_embed != PatchEmbed::Conv {
            p.push(Problem::new(
                "model.stem_depth",
                format!(
                    "= {} needs model.patch_embed = \"conv\" (linear patchify has no \
                 stem)",
                    self.stem_depth
                ),
            ));
        }
    }

    /// Widths the position embedding and the MLPs need.
    fn width_problems(&self, p: &mut Vec<Problem>) {
        if self.vision_width > 0 && !self.vision_width.is_multiple_of(4) {
            p.push(Problem::new(
                "model.vision_width",
                format!(
                    "= {} is not a multiple of 4, which the 2-D sin-cos position \
                 embedding needs: use {} or {}",
                    self.vision_width,
                    self.vision_width / 4 * 4,
                    self.vision_width / 4 * 4 + 4
                ),
            ));
        }
        for (key, ratio) in [
            ("vision_mlp_ratio", self.vision_mlp_ratio),
            ("text_mlp_ratio", self.text_mlp_ratio),
        ] {
            if !(ratio.is_finite() && ratio > 0.0) {
                p.push(Problem::new(
                    format!("model.{key}"),
                    format!("= {ratio} must be a positive number (4.0 is usual)"),
                ));
            }
        }
    }

    /// Token ids within the vocabulary, and a text pooling that can tell captions apart.
    fn token_problems(&self, p: &mut Vec<Problem>) {
        if self.vocab_size > 0 && self.pad_id >= self.vocab_size {
            p.push(Problem::new(
                "model.pad_id",
                format!(
                    "= {} is not a token id: it must be below model.vocab_size = {}",
                    self.pad_id, self.vocab_size
                ),
            ));
        }
        if let Some(eot) = self.eot_id
            && self.vocab_size > 0
            && eot >= self.vocab_size
        {
            p.push(Problem::new(
                "model.eot_id",
                format!(
                    "= {eot} is not a token id: it must be below model.vocab_size = {}",
                    self.vocab_size
                ),
            ));
        }
        if self.text_pool == TextPool::First && self.text_causal {
            p.push(Problem::new(
                "model.text_pool",
                "= \"first\" with model.text_causal = true gives every caption the \
                 same embedding (under causal attention the first token sees only itself): set \
                 text_causal = false (FLIP's text tower) or text_pool = \"eot\" (CLIP's)",
            ));
        }
    }

    /// The contrastive temperature's start and cap.
    fn logit_scale_problems(&self, p: &mut Vec<Problem>) {
        if !self.logit_scale_init.is_finite() || !self.logit_scale_max.is_finite() {
            p.push(Problem::new(
                "model.logit_scale_init",
                "and model.logit_scale_max must be finite numbers",
            ));
        } else if self.logit_scale_init > self.logit_scale_max {
            p.push(Problem::new(
                "model.logit_scale_init",
                format!(
                    "= {} exceeds model.logit_scale_max = {}: lower the initial value \
                 (ln(1/0.07) ≈ 2.659 is usual) or raise the maximum (ln(100) ≈ 4.605)",
                    self.logit_scale_init, self.logit_scale_max
                ),
            ));
        }
    }

    /// `Ok` when [`ModelConfig::problems`] is empty.
    pub fn validate(&self) -> Result<()> {
        into_result(self.problems())
    }
}

impl TrainConfig {
    /// Every problem of this training config for `model`, each naming the key and what to change.
    pub fn problems(&self, model: &ModelConfig) -> Vec<Problem> {
        let mut p = Vec::new();
        self.batch_problems(&mut p);
        self.schedule_problems(&mut p);
        self.optimizer_problems(&mut p);
        self.mask_problems(model, &mut p);
        if let Some(tune) = &self.unmasked_tune {
            self.tune_problems(tune, &mut p);
        }
        p
    }

    /// The batch and its micro-batches.
    fn batch_problems(&self, p: &mut Vec<Problem>) {
        if self.batch_size == 0 {
            p.push(Problem::new(
                "train.batch_size",
                "is 0: it must be at least 1 (at least 2 for a contrastive loss)",
            ));
        }
        if self.accum_steps == 0 {
            p.push(Problem::new(
                "train.accum_steps",
                "is 0: use 1 for no gradient accumulation",
            ));
        } else if self.batch_size > 0 && !self.batch_size.is_multiple_of(self.accum_steps) {
            p.push(Problem::new(
                "train.accum_steps",
                format!(
                    "= {} does not divide train.batch_size = {}: each micro-batch must \
                 have the same size",
                    self.accum_steps, self.batch_size
                ),
            ));
        }
    }

    /// The learning-rate schedule and the run length.
    fn schedule_problems(&self, p: &mut Vec<Problem>) {
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            p.push(Problem::new(
                "train.base_lr",
                format!("= {} must be a positive number", self.base_lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            p.push(Problem::new(
                "train.min_lr_ratio",
                format!("= {} must be in [0, 1]", self.min_lr_ratio),
            ));
        }
        if self.total_steps == 0 {
            p.push(Problem::new(
                "train.total_steps",
                "is 0: it must be at least 1",
            ));
        }
        if self.warmup_steps > self.total_steps {
            p.push(Problem::new(
                "train.warmup_steps",
                format!(
                    "= {} exceeds train.total_steps = {}: shorten the warmup",
                    self.warmup_steps, self.total_steps
                ),
            ));
        }
    }

    /// AdamW's settings and gradient clipping.
    fn optimizer_problems(&self, p: &mut Vec<Problem>) {
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            p.push(Problem::new(
                "train.weight_decay",
                format!("= {} must be a number ≥ 0", self.weight_decay),
            ));
        }
        for (i, beta) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                p.push(Problem::new(
                    format!("train.betas[{i}]"),
                    format!("= {beta} must be in [0, 1) (FLIP uses [0.9, 0.95])"),
                ));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            p.push(Problem::new(
                "train.eps",
                format!("= {} must be a positive number (1e-8 is usual)", self.eps),
            ));
        }
        if let Some(clip) = self.grad_clip_norm
            && !(clip.is_finite() && clip > 0.0)
        {
            p.push(Problem::new(
                "train.grad_clip_norm",
                format!(
                    "= {clip} must be a positive number; leave the key out to disable clipping"
                ),
            ));
        }
    }

    /// The mask ratio, which must keep at least one patch of `model`'s grid.
    fn mask_problems(&self, model: &ModelConfig, p: &mut Vec<Problem>) {
        if !(0.0..1.0).contains(&self.mask_ratio) {
            p.push(Problem::new(
                "train.mask_ratio",
                format!(
                    "= {} is outside [0, 1): use 0 for CLIP, 0.5 or 0.75 for FLIP",
                    self.mask_ratio
                ),
            ));
        } else if model.num_patches() > 0 && kept_patches(model.num_patches(), self.mask_ratio) == 0
        {
            p.push(Problem::new(
                "train.mask_ratio",
                format!(
                    "= {} keeps no patch of the {} per image: lower it",
                    self.mask_ratio,
                    model.num_patches()
                ),
            ));
        }
    }

    /// The unmasked tuning phase `[train.unmasked_tune]`.
    fn tune_problems(&self, tune: &UnmaskedTune, p: &mut Vec<Problem>) {
        if tune.steps == 0 {
            p.push(Problem::new(
                "train.unmasked_tune.steps",
                "is 0: remove [train.unmasked_tune] to skip the phase",
            ));
        }
        if !(tune.base_lr.is_finite() && tune.base_lr > 0.0) {
            p.push(Problem::new(
                "train.unmasked_tune.base_lr",
                format!("= {} must be a positive number", tune.base_lr),
            ));
        }
        if tune.warmup_steps > tune.steps {
            p.push(Problem::new(
                "train.unmasked_tune.warmup_steps",
                format!(
                    "= {} exceeds train.unmasked_tune.steps = {}",
                    tune.warmup_steps, tune.steps
                ),
            ));
        }
        match tune.accum_steps {
            Some(0) => p.push(Problem::new(
                "train.unmasked_tune.accum_steps",
                "is 0: use 1 for no gradient accumulation",
            )),
            Some(k) if self.batch_size > 0 && !self.batch_size.is_multiple_of(k) => {
                p.push(Problem::new(
                    "train.unmasked_tune.accum_steps",
                    format!(
                        "= {k} does not divide train.batch_size = {}",
                        self.batch_size
                    ),
                ));
            }
            _ => {}
        }
    }

    /// Micro-batches per step in `phase`.
    pub fn accum_steps_in(&self, phase: crate::schedule::Phase) -> usize {
        match (&self.unmasked_tune, phase) {
            (
                Some(UnmaskedTune {
                    accum_steps: Some(k),
                    ..
                }),
                crate::schedule::Phase::UnmaskedTune,
            ) => *k,
            _ => self.accum_steps,
        }
    }

    /// The micro-batch counts of the phases: `accum_steps`, then the unmasked phase's own.
    pub fn accum_steps_of_phases(&self) -> Vec<usize> {
        let tune = self.unmasked_tune.as_ref().and_then(|t| t.accum_steps);
        std::iter::once(self.accum_steps).chain(tune).collect()
    }
}

impl RunConfig {
    /// Every problem of the model and training config.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = self.model.problems();
        p.extend(self.train.problems(&self.model));
        p.extend(self.objective.problems(&self.model, self.train.mask_ratio));
        p
    }

    /// Checks the whole config; the error lists every problem with what to change.
    pub fn validate(&self) -> Result<()> {
        into_result(self.problems())
    }

    /// Parses a config file's text (`preset` plus `[model]` / `[train]` overrides) and validates it.
    /// `origin` names the text in error messages (usually the path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<RunConfig> {
        let parse_err = |message: String| TrainError::ConfigParse {
            origin: origin.to_string(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        for key in table.keys() {
            if !matches!(key.as_str(), "preset" | "model" | "train" | "objective") {
                return Err(parse_err(format!(
                    "unknown top-level key `{key}`: expected `preset`, or a [model], [train] or \
                     [objective] table"
                )));
            }
        }
        let preset = match table.remove("preset") {
            None => Preset::default(),
            Some(toml::Value::String(name)) => name.parse()?,
            Some(other) => {
                return Err(parse_err(format!(
                    "`preset` must be a string such as \"small\", not {other}"
                )));
            }
        };
        let base = preset.config();
        let model = overlay(&base.model, table.remove("model"), "model").map_err(parse_err)?;
        let train_table = table.remove("train");
        let explicit_mask =
            matches!(&train_table, Some(toml::Value::Table(t)) if t.contains_key("mask_ratio"));
        let mut train = overlay(&base.train, train_table, "train").map_err(parse_err)?;
        let objective = match table.remove("objective") {
            None => ObjectiveConfig::default(),
            Some(toml::Value::Table(t)) => {
                ObjectiveConfig::from_table(t, &model).map_err(parse_err)?
            }
            Some(other) => {
                return Err(parse_err(format!(
                    "`objective` must be a table ([objective]), not {other}"
                )));
            }
        };
        // An objective with its own default mask ratio (CAE v2) sets it unless [train] does.
        if let Some(r) = objective.kind().default_mask_ratio(&model)
            && !explicit_mask
        {
            train.mask_ratio = r;
        }
        let config = RunConfig {
            model,
            train,
            objective,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file (see [`RunConfig::from_toml_str`]).
    pub fn from_file(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The resolved config as TOML, every key spelled out; loads back to an equal config.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| TrainError::ConfigParse {
            origin: "<resolved config>".into(),
            message: e.to_string(),
        })
    }

    /// A short stable hash of the model config (hex): equal for equal architectures.
    pub fn model_fingerprint(&self) -> String {
        self.model.fingerprint()
    }
}

impl ModelConfig {
    /// A short stable hash of this config (16 hex digits of BLAKE3 over its canonical JSON).
    pub fn fingerprint(&self) -> String {
        // Serialising plain numbers, strings and booleans cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        blake3::hash(&json).to_hex()[..16].to_string()
    }
}

/// Number of patches kept at `mask_ratio`: ⌊L·(1−r)⌋, as FLIP and MAE compute it.
pub fn kept_patches(num_patches: usize, mask_ratio: f64) -> usize {
    let keep = (num_patches as f64 * (1.0 - mask_ratio)).floor();
    if keep <= 0.0 {
        0
    } else {
        (keep as usize).min(num_patches)
    }
}

/// The deepest conv stem accepted (convolutions per stage).
pub const MAX_STEM_DEPTH: usize = 4;

fn one() -> usize {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn mlp_width(width: usize, ratio: f64) -> usize {
    (width as f64 * ratio).round().max(1.0) as usize
}

/// The divisors of `width` nearest to `heads`, for error messages.
fn divisors_near(width: usize, heads: usize) -> String {
    let mut divisors: Vec<usize> = (1..=width.min(64))
        .filter(|d| width.is_multiple_of(*d))
        .collect();
    divisors.sort_by_key(|d| d.abs_diff(heads));
    divisors.truncate(3);
    divisors.sort_unstable();
    divisors
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Ok` when there is no problem, else [`TrainError::InvalidConfig`] with all of them.
pub(crate) fn into_result(problems: Vec<Problem>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TrainError::InvalidConfig { problems })
    }
}

/// `base` with the keys of `overrides` (a TOML table) replaced, deserialised with
/// `deny_unknown_fields` so that an unknown key is an error naming it.
fn overlay<T>(
    base: &T,
    overrides: Option<toml::Value>,
    section: &str,
) -> std::result::Result<T, String>
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let mut merged = toml::Table::try_from(base).map_err(|e| format!("[{section}]: {e}"))?;
    match overrides {
        None => {}
        Some(toml::Value::Table(t)) => merged.extend(t),
        Some(other) => {
            return Err(format!(
                "`{section}` must be a table ([{section}]), not {other}"
            ));
        }
    }
    toml::Value::Table(merged)
        .try_into::<T>()
        .map_err(|e| format!("[{section}]: {}", e.message()))
}
