//! The `[objective]` table: which objective trains the model ([`ObjectiveKind`]) and its settings
//! ([`ObjectiveConfig`]).
//!
//! ```toml
//! [objective]
//! kind = "mae_clip"          # clip (default) | mae_clip
//! reconstruction_weight = 1.0
//! decoder_depth = 2
//! ```
//!
//! The table is optional: a config without it (every config written before objectives existed)
//! trains CLIP/FLIP. Keys left out take the kind's defaults for the model (decoder sizes scale with
//! the image tower's width). A key that belongs to another objective is an error that names the
//! objective it belongs to; an unknown key is an error that lists the known ones.

use std::fmt;
use std::str::FromStr;

use flipstream_shard::problems::Problem;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

/// The objectives the trainer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// CLIP's symmetric InfoNCE; FLIP when `train.mask_ratio > 0`.
    #[default]
    Clip,
    /// CLIP plus MAE's pixel reconstruction of the masked patches (Weers et al.; FLIP Table 1f).
    MaeClip,
    /// CAE v2: the masked image tower regresses a frozen CLIP teacher's token features.
    CaeV2,
    /// MUG: from one masked encoding, reconstruct the pixels and generate the caption.
    Mug,
}

impl ObjectiveKind {
    /// Every kind, in the order of [`ObjectiveKind::NAMES`].
    pub const ALL: [ObjectiveKind; 4] = [
        ObjectiveKind::Clip,
        ObjectiveKind::MaeClip,
        ObjectiveKind::CaeV2,
        ObjectiveKind::Mug,
    ];
    /// The accepted names.
    pub const NAMES: [&'static str; 4] = ["clip", "mae_clip", "cae_v2", "mug"];

    /// The name as written in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ObjectiveKind::Clip => "clip",
            ObjectiveKind::MaeClip => "mae_clip",
            ObjectiveKind::CaeV2 => "cae_v2",
            ObjectiveKind::Mug => "mug",
        }
    }

    /// Whether the objective trains the text tower into the image embedding's space (zero-shot
    /// and retrieval evaluate it); otherwise only the linear probe does.
    pub fn aligns_text(self) -> bool {
        !matches!(self, ObjectiveKind::CaeV2 | ObjectiveKind::Mug)
    }

    /// The mask ratio this objective trains at by default for `model`, when it has its own (CAE v2:
    /// the best ratio grows with the model, Tiny 15 %, Small 25 %, Base 50 %; MUG: MAE's 75 %).
    pub fn default_mask_ratio(self, model: &ModelConfig) -> Option<f64> {
        match self {
            ObjectiveKind::CaeV2 => Some(match model.vision_width {
                0..=256 => 0.15,
                257..=512 => 0.25,
                _ => 0.5,
            }),
            ObjectiveKind::Mug => Some(0.75),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ObjectiveKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown objective {s:?}: expected one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}

/// CLIP has no settings of its own: the model and `[train]` describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSettings {}

/// Which view of the image the contrastive term of MAE+CLIP encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContrastiveView {
    /// The masked image: one encoder pass feeds both losses (FLIP Table 1f).
    #[default]
    Masked,
    /// The whole image, in a second encoder pass; the decoder reads the masked pass.
    Full,
}

/// The MAE pixel decoder's size (its own width, depth and heads; MAE: 512 × 8, 16 heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderShape {
    /// Residual width; a multiple of 4 (2-D sin-cos position embeddings).
    pub decoder_width: usize,
    /// Transformer blocks.
    pub decoder_depth: usize,
    /// Attention heads; must divide `decoder_width`.
    pub decoder_heads: usize,
}

impl DecoderShape {
    /// MAE's 512 × 8 decoder at ViT-B width and above, scaled down with the image tower below it.
    pub fn for_model(model: &ModelConfig) -> Self {
        let (decoder_width, decoder_depth, decoder_heads) = match model.vision_width {
            0..=256 => (128, 2, 4),
            257..=512 => (256, 4, 8),
            _ => (512, 8, 16),
        };
        DecoderShape {
            decoder_width,
            decoder_depth,
            decoder_heads,
        }
    }

    /// What is wrong with this shape, each naming the key.
    fn problems(&self, p: &mut Vec<Problem>) {
        for (key, value) in [
            ("decoder_width", self.decoder_width),
            ("decoder_depth", self.decoder_depth),
            ("decoder_heads", self.decoder_heads),
        ] {
            if value == 0 {
                p.push(Problem::new(
                    format!("objective.{key}"),
                    "is 0: it must be at least 1",
                ));
            }
        }
        if !self.decoder_width.is_multiple_of(4) {
            p.push(Problem::new(
                "objective.decoder_width",
                format!(
                    "= {} is not a multiple of 4, which the decoder's 2-D \
                 sin-cos position embedding needs",
                    self.decoder_width
                ),
            ));
        }
        if self.decoder_heads > 0 && !self.decoder_width.is_multiple_of(self.decoder_heads) {
            p.push(Problem::new(
                "objective.decoder_heads",
                format!(
                    "= {} does not divide objective.decoder_width = {}",
                    self.decoder_heads, self.decoder_width
                ),
            ));
        }
    }
}

/// MAE+CLIP: contrastive + λ · MSE of the masked patches' pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaeClipSettings {
    /// Weight of the contrastive term.
    pub contrastive_weight: f64,
    /// λ, the weight of the reconstruction term (FLIP Table 1f: 1).
    pub reconstruction_weight: f64,
    /// Normalise each target patch by its own mean and variance (MAE's `norm_pix_loss`).
    pub norm_pix_loss: bool,
    /// `masked` (one encoder pass feeds both terms) or `full` (the contrastive term encodes the
    /// whole image in a second pass).
    pub contrastive_view: ContrastiveView,
    /// The pixel decoder's width (a multiple of 4).
    pub decoder_width: usize,
    /// The pixel decoder's blocks.
    pub decoder_depth: usize,
    /// The pixel decoder's heads (dividing its width).
    pub decoder_heads: usize,
}

impl MaeClipSettings {
    /// The defaults for `model`: weight 1 for both terms, normalised pixels, one masked pass.
    pub fn for_model(model: &ModelConfig) -> Self {
        let decoder = DecoderShape::for_model(model);
        MaeClipSettings {
            contrastive_weight: 1.0,
            reconstruction_weight: 1.0,
            norm_pix_loss: true,
            contrastive_view: ContrastiveView::Masked,
            decoder_width: decoder.decoder_width,
            decoder_depth: decoder.decoder_depth,
            decoder_heads: decoder.decoder_heads,
        }
    }

    /// The pixel decoder's shape.
    pub fn decoder(&self) -> DecoderShape {
        DecoderShape {
            decoder_width: self.decoder_width,
            decoder_depth: self.decoder_depth,
            decoder_heads: self.decoder_heads,
        }
    }
}

/// Which of the student's tokens CAE v2 supervises with the teacher's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Supervise {
    /// The visible (kept) patch tokens of the encoder: the paper's finding is that this alone
    /// works as well as or better than the masked ones.
    #[default]
    Visible,
    /// The removed patches, predicted by the latent regressor from the visible ones.
    Masked,
    /// Both.
    Both,
}

impl Supervise {
    /// Whether the latent regressor (for the removed patches) is needed.
    pub fn masked(self) -> bool {
        matches!(self, Supervise::Masked | Supervise::Both)
    }

    /// Whether the visible tokens are supervised.
    pub fn visible(self) -> bool {
        matches!(self, Supervise::Visible | Supervise::Both)
    }
}

/// CAE v2: 1 − cosine between the student's tokens and a frozen teacher's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaeV2Settings {
    /// The teacher: a flipstream run directory (its latest checkpoint) or checkpoint folder of a
    /// CLIP/FLIP model, or an open_clip folder (`open_clip:DIR`), with the student's image and
    /// patch size (`--teacher`).
    pub teacher: String,
    /// `visible` (default), `masked` or `both`.
    pub supervise: Supervise,
    /// Blocks of the latent regressor that predicts the removed patches' features (CAE v2: 1 for
    /// Tiny and Small, 4 for Base); used with `supervise = "masked"` or `"both"`.
    pub regressor_depth: usize,
}

impl CaeV2Settings {
    /// The defaults for `model` (no teacher yet).
    pub fn for_model(model: &ModelConfig) -> Self {
        CaeV2Settings {
            teacher: String::new(),
            supervise: Supervise::Visible,
            regressor_depth: if model.vision_width > 512 { 4 } else { 1 },
        }
    }
}

/// MUG: λ_pixels · MSE of the removed patches + λ_caption · next-token cross entropy of the
/// caption, both from one masked encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MugSettings {
    /// Weight of the pixel reconstruction term.
    pub reconstruction_weight: f64,
    /// λ, the weight of the caption term (1 in the paper's spirit; open there).
    pub caption_weight: f64,
    /// Normalise each target patch by its own mean and variance (MAE's `norm_pix_loss`).
    pub norm_pix_loss: bool,
    /// The pixel decoder's width (a multiple of 4).
    pub decoder_width: usize,
    /// The pixel decoder's blocks.
    pub decoder_depth: usize,
    /// The pixel decoder's heads.
    pub decoder_heads: usize,
    /// The caption decoder's width.
    pub caption_width: usize,
    /// The caption decoder's layers (each a causal self-attention and a cross-attention block).
    pub caption_depth: usize,
    /// The caption decoder's heads.
    pub caption_heads: usize,
}

impl MugSettings {
    /// The defaults for `model`: MAE's decoder (scaled like MAE+CLIP's) and a caption decoder
    /// after FLIP's captioning head (3 layers, 384 wide, 6 heads at ViT-B and above), smaller
    /// below.
    pub fn for_model(model: &ModelConfig) -> Self {
        let decoder = DecoderShape::for_model(model);
        let (caption_width, caption_depth, caption_heads) = match model.vision_width {
            0..=256 => (128, 1, 4),
            257..=512 => (256, 2, 8),
            _ => (384, 3, 6),
        };
        MugSettings {
            reconstruction_weight: 1.0,
            caption_weight: 1.0,
            norm_pix_loss: true,
            decoder_width: decoder.decoder_width,
            decoder_depth: decoder.decoder_depth,
            decoder_heads: decoder.decoder_heads,
            caption_width,
            caption_depth,
            caption_heads,
        }
    }

    /// The pixel decoder's shape.
    pub fn decoder(&self) -> DecoderShape {
        DecoderShape {
            decoder_width: self.decoder_width,
            decoder_depth: self.decoder_depth,
            decoder_heads: self.decoder_heads,
        }
    }

    /// What is wrong with these settings at `mask_ratio`, each naming the key.
    fn problems(&self, model: &ModelConfig, mask_ratio: f64, p: &mut Vec<Problem>) {
        for (key, w) in [
            ("reconstruction_weight", self.reconstruction_weight),
            ("caption_weight", self.caption_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                p.push(Problem::new(
                    format!("objective.{key}"),
                    format!("= {w} must be a number ≥ 0"),
                ));
            }
        }
        if self.reconstruction_weight == 0.0 && self.caption_weight == 0.0 {
            p.push(Problem::new(
                "objective.reconstruction_weight",
                "and objective.caption_weight are both 0: nothing \
                 would be learned",
            ));
        }
        self.decoder().problems(p);
        for (key, value) in [
            ("caption_width", self.caption_width),
            ("caption_depth", self.caption_depth),
            ("caption_heads", self.caption_heads),
        ] {
            if value == 0 {
                p.push(Problem::new(
                    format!("objective.{key}"),
                    "is 0: it must be at least 1",
                ));
            }
        }
        if self.caption_heads > 0 && !self.caption_width.is_multiple_of(self.caption_heads) {
            p.push(Problem::new(
                "objective.caption_heads",
                format!(
                    "= {} does not divide objective.caption_width = {}",
                    self.caption_heads, self.caption_width
                ),
            ));
        }
        if model.context_length < 2 {
            p.push(Problem::new(
                "objective.kind",
                "= \"mug\" predicts each next caption token: model.context_length \
                 must be at least 2",
            ));
        }
        if self.reconstruction_weight > 0.0 && mask_ratio <= 0.0 {
            p.push(Problem::new(
                "objective.kind",
                format!(
                    "= \"mug\" reconstructs removed patches, but train.mask_ratio = \
                 {mask_ratio} removes none: set train.mask_ratio above 0 (MUG uses 0.75)"
                ),
            ));
        }
    }
}

/// The objective of a run and its settings (`[objective]`, tagged by `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectiveConfig {
    /// CLIP / FLIP.
    Clip(ClipSettings),
    /// MAE+CLIP.
    MaeClip(MaeClipSettings),
    /// CAE v2.
    CaeV2(CaeV2Settings),
    /// MUG.
    Mug(MugSettings),
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig::Clip(ClipSettings {})
    }
}

impl ObjectiveConfig {
    /// The defaults of `kind` for `model`.
    pub fn for_kind(kind: ObjectiveKind, model: &ModelConfig) -> Self {
        match kind {
            ObjectiveKind::Clip => ObjectiveConfig::Clip(ClipSettings {}),
            ObjectiveKind::MaeClip => ObjectiveConfig::MaeClip(MaeClipSettings::for_model(model)),
            ObjectiveKind::CaeV2 => ObjectiveConfig::CaeV2(CaeV2Settings::for_model(model)),
            ObjectiveKind::Mug => ObjectiveConfig::Mug(MugSettings::for_model(model)),
        }
    }

    /// Which objective this is.
    pub fn kind(&self) -> ObjectiveKind {
        match self {
            ObjectiveConfig::Clip(_) => ObjectiveKind::Clip,
            ObjectiveConfig::MaeClip(_) => ObjectiveKind::MaeClip,
            ObjectiveConfig::CaeV2(_) => ObjectiveKind::CaeV2,
            ObjectiveConfig::Mug(_) => ObjectiveKind::Mug,
        }
    }

    /// True for plain CLIP (kept out of written configs' diffs as the default).
    pub fn is_clip(&self) -> bool {
        self.kind() == ObjectiveKind::Clip
    }

    /// Every problem of these settings for `model` trained at `mask_ratio`, each naming the key
    /// and what to change.
    pub fn problems(&self, model: &ModelConfig, mask_ratio: f64) -> Vec<Problem> {
        let mut p = Vec::new();
        match self {
            ObjectiveConfig::Mug(s) => s.problems(model, mask_ratio, &mut p),
            ObjectiveConfig::Clip(_) => {}
            ObjectiveConfig::MaeClip(s) => {
                for (key, w) in [
                    ("contrastive_weight", s.contrastive_weight),
                    ("reconstruction_weight", s.reconstruction_weight),
                ] {
                    if !(w.is_finite() && w >= 0.0) {
                        p.push(Problem::new(
                            format!("objective.{key}"),
                            format!("= {w} must be a number ≥ 0"),
                        ));
                    }
                }
                if s.contrastive_weight == 0.0 && s.reconstruction_weight == 0.0 {
                    p.push(Problem::new(
                        "objective.contrastive_weight",
                        "and objective.reconstruction_weight are both \
                         0: nothing would be learned",
                    ));
                }
                s.decoder().problems(&mut p);
                if mask_ratio <= 0.0 {
                    p.push(Problem::new("objective.kind", format!("= \"mae_clip\" reconstructs removed patches, but \
                         train.mask_ratio = {mask_ratio} removes none: set train.mask_ratio above 0 \
                         (MAE uses 0.75, FLIP 0.5)"
                    )));
                }
            }
            ObjectiveConfig::CaeV2(s) => {
                if s.teacher.trim().is_empty() {
                    p.push(Problem::new(
                        "objective.kind",
                        "= \"cae_v2\" needs a teacher: a CLIP/FLIP run directory or \
                         checkpoint, or open_clip:DIR (--teacher or objective.teacher)",
                    ));
                }
                if s.supervise.masked() && s.regressor_depth == 0 {
                    p.push(Problem::new(
                        "objective.regressor_depth",
                        format!(
                            "is 0 but objective.supervise = \"{}\" needs the \
                         regressor: use at least 1",
                            if s.supervise.visible() {
                                "both"
                            } else {
                                "masked"
                            }
                        ),
                    ));
                }
                if s.supervise.masked() && mask_ratio <= 0.0 {
                    p.push(Problem::new(
                        "objective.supervise",
                        "includes the masked tokens, but train.mask_ratio = 0 \
                         removes none: set train.mask_ratio above 0",
                    ));
                }
            }
        }
        p
    }

    /// The settings from an `[objective]` table resolved against the defaults of its kind for
    /// `model`.
    pub fn from_table(mut table: toml::Table, model: &ModelConfig) -> Result<Self, String> {
        let kind = match table.remove("kind") {
            None => ObjectiveKind::default(),
            Some(toml::Value::String(name)) => name.parse()?,
            Some(other) => {
                return Err(format!(
                    "objective.kind must be a string such as \"clip\", not {other}"
                ));
            }
        };
        let base = Self::for_kind(kind, model);
        let mut merged = settings_table(&base)?;
        for (key, value) in table {
            if !merged.contains_key(&key) {
                return Err(foreign_key_message(&key, kind, &merged, model));
            }
            merged.insert(key, value);
        }
        merged.insert("kind".into(), toml::Value::String(kind.name().into()));
        toml::Value::Table(merged)
            .try_into::<ObjectiveConfig>()
            .map_err(|e| format!("[objective]: {}", e.message()))
    }
}

/// The settings of `config` as a TOML table, without `kind`.
fn settings_table(config: &ObjectiveConfig) -> Result<toml::Table, String> {
    let mut t = toml::Table::try_from(config).map_err(|e| format!("[objective]: {e}"))?;
    t.remove("kind");
    Ok(t)
}

/// Why `key` is not a setting of `kind`: it belongs to another objective, or to none.
fn foreign_key_message(
    key: &str,
    kind: ObjectiveKind,
    known: &toml::Table,
    model: &ModelConfig,
) -> String {
    let owner = ObjectiveKind::ALL.into_iter().find(|k| {
        settings_table(&ObjectiveConfig::for_kind(*k, model)).is_ok_and(|t| t.contains_key(key))
    });
    match owner {
        Some(owner) => format!(
            "objective.{key} is a setting of objective \"{owner}\", but objective.kind is \
             \"{kind}\": set kind = \"{owner}\" or remove the key"
        ),
        None if known.is_empty() => format!(
            "unknown key objective.{key}: objective \"{kind}\" has no settings besides `kind`"
        ),
        None => format!(
            "unknown key objective.{key}: objective \"{kind}\" has {}",
            known.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}
