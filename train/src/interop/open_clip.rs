//! The open_clip target: open_clip's `CLIP` with its own ViT and text Transformer
//! (`open_clip/model.py`, `transformer.py`, checked against open-clip-torch 3.3.0).
//!
//! | flipstream                        | open_clip                                      |
//! |-----------------------------------|------------------------------------------------|
//! | `visual.patch_embed.weight`       | `visual.conv1.weight` (no bias)                |
//! | bias + sin-cos table, CLS row 0   | `visual.positional_embedding`                  |
//! | `visual.cls_token`                | `visual.class_embedding`                       |
//! | `visual.ln_pre` (or none)         | `visual.ln_pre` (or `no_ln_pre`)               |
//! | `{tower}.blocks.i.norm1/norm2`    | `{prefix}transformer.resblocks.i.ln_1/ln_2`    |
//! | `….attn.qkv` / `….attn.proj`      | `….attn.in_proj_*` / `….attn.out_proj`         |
//! | `….mlp.fc1` / `….mlp.fc2`         | `….mlp.c_fc` / `….mlp.c_proj`                  |
//! | `visual.norm`, `visual.proj`ᵀ     | `visual.ln_post`, `visual.proj`                |
//! | `text.token_embed`, `text.pos_embed` | `token_embedding`, `positional_embedding`   |
//! | `text.norm`, `text.proj`ᵀ         | `ln_final`, `text_projection`                  |
//!
//! Pooling: vision `pool_type = "tok"`, text `pool_type = "eos"` at the tokenizer's end id (the
//! first end token, as flipstream pools). `quick_gelu` follows `model.activation`.

use std::path::Path;

use serde_json::{Value, json};
use tch::Tensor;

use super::tokenizer::TokenIds;
use super::weights::{Renamer, token_embedding, vision_embedding};
use crate::config::{Activation, ModelConfig};
use crate::error::Result;
use crate::model::ClipModel;
use crate::model::vision::{CLIP_MEAN, CLIP_STD};

/// The weights file open_clip's `local-dir:` loader looks for first.
pub const WEIGHTS_FILE: &str = "open_clip_model.safetensors";
/// The config file of a `local-dir:` folder.
pub const CONFIG_FILE: &str = "open_clip_config.json";

/// The tensors of one Transformer block: flipstream's name and open_clip's, after the block's
/// prefix (`visual.blocks.3.` ↔ `visual.transformer.resblocks.3.`, `text.blocks.3.` ↔
/// `transformer.resblocks.3.`).
pub const BLOCK_TENSORS: [(&str, &str); 12] = [
    ("norm1.weight", "ln_1.weight"),
    ("norm1.bias", "ln_1.bias"),
    ("attn.qkv.weight", "attn.in_proj_weight"),
    ("attn.qkv.bias", "attn.in_proj_bias"),
    ("attn.proj.weight", "attn.out_proj.weight"),
    ("attn.proj.bias", "attn.out_proj.bias"),
    ("norm2.weight", "ln_2.weight"),
    ("norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
];

/// Block prefixes of a tower with `depth` blocks: `(flipstream's, open_clip's)` for each block.
pub fn block_prefixes(tower: Tower, depth: usize) -> Vec<(String, String)> {
    let (ours, theirs) = match tower {
        Tower::Vision => ("visual.blocks", "visual.transformer.resblocks"),
        Tower::Text => ("text.blocks", "transformer.resblocks"),
    };
    (0..depth)
        .map(|i| (format!("{ours}.{i}."), format!("{theirs}.{i}.")))
        .collect()
}

/// Which tower.
#[derive(Debug, Clone, Copy)]
pub enum Tower {
    /// The image tower.
    Vision,
    /// The text tower.
    Text,
}

/// Every block of `tower`, flipstream's names as open_clip's.
fn blocks(r: &mut Renamer<'_>, tower: Tower, depth: usize) -> Result<()> {
    for (ours, theirs) in block_prefixes(tower, depth) {
        for (a, b) in BLOCK_TENSORS {
            r.copy(&format!("{ours}{a}"), &format!("{theirs}{b}"))?;
        }
    }
    Ok(())
}

/// Every tensor of the open_clip state dict.
pub fn tensors(model: &ClipModel, swap: Option<(u32, u32)>) -> Result<Vec<(String, Tensor)>> {
    let cfg = model.config();
    let mut r = Renamer::new(model);
    let emb = vision_embedding(&r)?;
    r.put("visual.conv1.weight", emb.patch_weight);
    r.put("visual.class_embedding", emb.class);
    r.put("visual.positional_embedding", emb.positions);
    if cfg.vision_ln_pre {
        r.copy_affine("visual.ln_pre", "visual.ln_pre")?;
    }
    blocks(&mut r, Tower::Vision, cfg.vision_depth)?;
    r.copy_affine("visual.norm", "visual.ln_post")?;
    r.copy_transposed("visual.proj.weight", "visual.proj")?;
    let tokens = token_embedding(&r, swap)?;
    r.put("token_embedding.weight", tokens);
    r.copy("text.pos_embed", "positional_embedding")?;
    blocks(&mut r, Tower::Text, cfg.text_depth)?;
    r.copy_affine("text.norm", "ln_final")?;
    r.copy_transposed("text.proj.weight", "text_projection")?;
    r.copy("logit_scale", "logit_scale")?;
    Ok(r.finish())
}

/// An `mlp_ratio` that open_clip's `int(width * mlp_ratio)` turns back into `mlp_width`.
fn mlp_ratio(width: usize, mlp_width: usize) -> f64 {
    let exact = mlp_width as f64 / width as f64;
    if (width as f64 * exact) as usize == mlp_width {
        exact
    } else {
        (mlp_width as f64 + 0.5) / width as f64
    }
}

/// `open_clip_config.json` for a model with `cfg` whose tokenizer has `ids`; `out` is the
/// folder's final path (open_clip's tokenizer loader reads `hf_tokenizer_name` when the config is
/// registered by name instead of loaded with `local-dir:`, which uses the folder itself).
pub fn configs(cfg: &ModelConfig, ids: TokenIds, out: &Path) -> Vec<(&'static str, Value)> {
    let vision = json!({
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "width": cfg.vision_width,
        "layers": cfg.vision_depth,
        "head_width": cfg.vision_width / cfg.vision_heads,
        "mlp_ratio": mlp_ratio(cfg.vision_width, cfg.vision_mlp_width()),
        "no_ln_pre": !cfg.vision_ln_pre,
        "pos_embed_type": "learnable",
        "pool_type": "tok",
    });
    let text = json!({
        "context_length": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "width": cfg.text_width,
        "heads": cfg.text_heads,
        "layers": cfg.text_depth,
        "mlp_ratio": mlp_ratio(cfg.text_width, cfg.text_mlp_width()),
        "no_causal_mask": false,
        "pool_type": "eos",
        "eos_id": ids.end,
        "pad_id": ids.pad,
        "proj_bias": false,
        "hf_tokenizer_name": out.display().to_string(),
    });
    let config = json!({
        "model_cfg": {
            "embed_dim": cfg.embed_dim,
            "quick_gelu": cfg.activation == Activation::QuickGelu,
            "vision_cfg": vision,
            "text_cfg": text,
        },
        "preprocess_cfg": {
            "size": cfg.image_size,
            "mode": "RGB",
            "mean": CLIP_MEAN,
            "std": CLIP_STD,
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    });
    vec![(CONFIG_FILE, config)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_ratio_survives_open_clips_truncation() {
        for (w, m) in [(192, 768), (100, 333), (384, 1536), (7, 10)] {
            assert_eq!((w as f64 * mlp_ratio(w, m)) as usize, m, "{w} {m}");
        }
    }
}
