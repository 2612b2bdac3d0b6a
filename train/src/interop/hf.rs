//! The transformers target: `CLIPModel` (`transformers/models/clip/modeling_clip.py`, checked
//! against transformers 5.25.0).
//!
//! | flipstream                      | transformers                                          |
//! |---------------------------------|-------------------------------------------------------|
//! | `visual.patch_embed.weight`     | `vision_model.embeddings.patch_embedding.weight`      |
//! | bias + sin-cos table, CLS row 0 | `vision_model.embeddings.position_embedding.weight`   |
//! | `visual.cls_token`              | `vision_model.embeddings.class_embedding`             |
//! | `visual.ln_pre`                 | `vision_model.pre_layrnorm` (always applied)          |
//! | `{tower}.blocks.i.norm1/norm2`  | `{model}.encoder.layers.i.layer_norm1/layer_norm2`    |
//! | `….attn.qkv` (fused)            | `….self_attn.q_proj`, `k_proj`, `v_proj`              |
//! | `….attn.proj`, `….mlp.fc1/fc2`  | `….self_attn.out_proj`, `….mlp.fc1/fc2`               |
//! | `visual.norm`, `visual.proj`    | `vision_model.post_layernorm`, `visual_projection`    |
//! | `text.token_embed`, `pos_embed` | `text_model.embeddings.token_embedding`, `position_embedding` |
//! | `text.norm`, `text.proj`        | `text_model.final_layer_norm`, `text_projection`      |
//!
//! `hidden_act` follows `model.activation` (`gelu` is the exact one), LayerNorm ε 1e-5, the text pooled at the first
//! `eos_token_id` (never 2: see the module docs of [`super`]).

use serde_json::{Value, json};
use tch::Tensor;

use super::tokenizer::TokenIds;
use super::weights::{Renamer, token_embedding, vision_embedding};
use crate::config::{Activation, ModelConfig};
use crate::error::{Result, TorchContext};
use crate::model::ClipModel;
use crate::model::vision::{CLIP_MEAN, CLIP_STD};

/// The weights file of a transformers folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// One encoder layer, flipstream's `ours` as transformers' `theirs`.
fn layer(r: &mut Renamer<'_>, ours: &str, theirs: &str) -> Result<()> {
    for (a, b) in [
        ("norm1", "layer_norm1"),
        ("attn.proj", "self_attn.out_proj"),
        ("norm2", "layer_norm2"),
        ("mlp.fc1", "mlp.fc1"),
        ("mlp.fc2", "mlp.fc2"),
    ] {
        r.copy_affine(&format!("{ours}.{a}"), &format!("{theirs}.{b}"))?;
    }
    // The fused projection's rows are q, then k, then v (each head-major, as transformers' are).
    for part in ["weight", "bias"] {
        let fused = r.get(&format!("{ours}.attn.qkv.{part}"))?;
        let pieces = fused
            .f_chunk(3, 0)
            .context(|| format!("splitting {ours}.attn.qkv.{part}"))?;
        for (name, piece) in ["q_proj", "k_proj", "v_proj"].iter().zip(pieces) {
            let piece = piece.f_contiguous().context(|| format!("{ours} {name}"))?;
            r.put(format!("{theirs}.self_attn.{name}.{part}"), piece);
        }
    }
    Ok(())
}

/// Every tensor of the `CLIPModel` state dict.
pub fn tensors(model: &ClipModel, swap: Option<(u32, u32)>) -> Result<Vec<(String, Tensor)>> {
    let cfg = model.config();
    let mut r = Renamer::new(model);
    let emb = vision_embedding(&r)?;
    let e = "vision_model.embeddings";
    r.put(format!("{e}.patch_embedding.weight"), emb.patch_weight);
    r.put(format!("{e}.class_embedding"), emb.class);
    r.put(format!("{e}.position_embedding.weight"), emb.positions);
    r.copy_affine("visual.ln_pre", "vision_model.pre_layrnorm")?;
    for i in 0..cfg.vision_depth {
        layer(
            &mut r,
            &format!("visual.blocks.{i}"),
            &format!("vision_model.encoder.layers.{i}"),
        )?;
    }
    r.copy_affine("visual.norm", "vision_model.post_layernorm")?;
    r.copy("visual.proj.weight", "visual_projection.weight")?;
    let tokens = token_embedding(&r, swap)?;
    r.put("text_model.embeddings.token_embedding.weight", tokens);
    r.copy(
        "text.pos_embed",
        "text_model.embeddings.position_embedding.weight",
    )?;
    for i in 0..cfg.text_depth {
        layer(
            &mut r,
            &format!("text.blocks.{i}"),
            &format!("text_model.encoder.layers.{i}"),
        )?;
    }
    r.copy_affine("text.norm", "text_model.final_layer_norm")?;
    r.copy("text.proj.weight", "text_projection.weight")?;
    r.copy("logit_scale", "logit_scale")?;
    Ok(r.finish())
}

/// `config.json` (`CLIPConfig`) and `preprocessor_config.json` (`CLIPImageProcessor`) for a model
/// with `cfg` whose exported tokenizer has `ids`.
pub fn configs(cfg: &ModelConfig, ids: TokenIds) -> Vec<(&'static str, Value)> {
    let act = match cfg.activation {
        Activation::Gelu => "gelu",
        Activation::QuickGelu => "quick_gelu",
    };
    let text = json!({
        "model_type": "clip_text_model",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.text_width,
        "intermediate_size": cfg.text_mlp_width(),
        "num_hidden_layers": cfg.text_depth,
        "num_attention_heads": cfg.text_heads,
        "max_position_embeddings": cfg.context_length,
        "hidden_act": act,
        "layer_norm_eps": crate::model::layers::LAYER_NORM_EPS,
        "projection_dim": cfg.embed_dim,
        "bos_token_id": ids.start,
        "eos_token_id": ids.end,
        "pad_token_id": ids.pad,
    });
    let vision = json!({
        "model_type": "clip_vision_model",
        "hidden_size": cfg.vision_width,
        "intermediate_size": cfg.vision_mlp_width(),
        "num_hidden_layers": cfg.vision_depth,
        "num_attention_heads": cfg.vision_heads,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": 3,
        "hidden_act": act,
        "layer_norm_eps": crate::model::layers::LAYER_NORM_EPS,
        "projection_dim": cfg.embed_dim,
    });
    let config = json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": cfg.logit_scale_init,
        "dtype": "float32",
        "text_config": text,
        "vision_config": vision,
    });
    let preprocessor = json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": true,
        "do_resize": true,
        "size": {"shortest_edge": cfg.image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": cfg.image_size, "width": cfg.image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    });
    vec![
        ("config.json", config),
        ("preprocessor_config.json", preprocessor),
    ]
}
