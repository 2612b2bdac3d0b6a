//! Import of an open_clip model folder (`flipstream train --init open_clip:DIR`): its
//! architecture as a [`ModelConfig`] and its weights under flipstream's names, exactly.
//!
//! The folder is what open_clip's `local-dir:` loader reads (and what `flipstream export
//! --format open_clip` writes): `open_clip_config.json` (`{"model_cfg": …}`, or a bare model
//! config as in open_clip's `model_configs/`), the weights as safetensors
//! (`open_clip_model.safetensors`, `open_clip_pytorch_model.safetensors` or `model.safetensors`;
//! pickled `.bin` files are not read: convert them first), and optionally `tokenizer.json`.
//!
//! Supported: open_clip's own ViT and text Transformer (`CLIP`, not `CustomTextCLIP`), with CLS
//! pooling (`pool_type = "tok"`), with or without `ln_pre`, GELU or quick GELU, the text pooled at
//! its end token (`argmax` or `eos`), causal. The mapping is exact ([`super::open_clip`] holds the
//! names): open_clip's learned position table becomes `visual.pos_embed`
//! (`vision_pos_embed = "learned"`), its CLS row is added to the class embedding (flipstream's
//! CLS token has no position embedding; its input is the same constant), the patch embedding's
//! bias is zero (open_clip's convolution has none). Everything else is refused with every reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::{Kind, Tensor};

use super::open_clip::{BLOCK_TENSORS, CONFIG_FILE, Tower, block_prefixes};
use crate::checkpoint::read_safetensors;
use crate::config::{Activation, ModelConfig, PatchEmbed, PosEmbed, TextPool, VisionPool};
use crate::error::{Result, TorchContext, TrainError};
use flipstream_loader::TextTokenizer;

/// How a command line or config names an open_clip folder: `open_clip:DIR`.
pub const OPEN_CLIP_PREFIX: &str = "open_clip:";

/// Weights files tried, in order (open_clip's own preference, safetensors only).
pub const WEIGHTS_FILES: [&str; 3] = [
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "model.safetensors",
];

/// How the imported text tower finds its pooled token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPooling {
    /// At the highest id of the row (OpenAI's rule: the end token has the highest id).
    Argmax,
    /// At the first occurrence of this id.
    Eos(u32),
}

/// An open_clip model as flipstream's.
#[derive(Debug)]
pub struct ImportedModel {
    /// The folder.
    pub dir: PathBuf,
    /// The architecture. `pad_id` and `eot_id` are set by [`ImportedModel::adopt_tokenizer`].
    pub config: ModelConfig,
    /// Float32 CPU tensors under flipstream's parameter names (both towers, the logit scale).
    pub weights: HashMap<String, Tensor>,
    /// The folder's `tokenizer.json`, if it has one.
    pub tokenizer: Option<PathBuf>,
    /// Where open_clip pools the text.
    pub text_pooling: TextPooling,
}

/// A problem list for one config section.
struct Section<'a> {
    name: &'static str,
    map: &'a Map<String, Value>,
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl Section<'_> {
    fn usize(&self, key: &str, default: usize, why: &mut Vec<String>) -> usize {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => v.as_u64().map(|n| n as usize).unwrap_or_else(|| {
                why.push(format!(
                    "{}.{key} = {v}: only a single integer is supported",
                    self.name
                ));
                default
            }),
        }
    }

    fn f64(&self, key: &str, default: f64) -> f64 {
        self.map.get(key).and_then(Value::as_f64).unwrap_or(default)
    }

    fn str<'s>(&'s self, key: &str, default: &'s str) -> &'s str {
        self.map.get(key).and_then(Value::as_str).unwrap_or(default)
    }

    fn flag(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(is_set)
    }

    /// Reasons for every key of `keys` that is set (they have no flipstream counterpart).
    fn refuse_set(&self, keys: &[&str], why: &mut Vec<String>) {
        for key in keys {
            if let Some(v) = self.map.get(*key).filter(|v| is_set(v)) {
                why.push(format!(
                    "{}.{key} = {v} has no flipstream counterpart",
                    self.name
                ));
            }
        }
    }
}

/// Options of open_clip's custom attention blocks and layer scale, none supported.
const CUSTOM_BLOCK_KEYS: [&str; 9] = [
    "ls_init_value",
    "act_kwargs",
    "norm_kwargs",
    "qk_norm",
    "scaled_cosine_attn",
    "scale_heads",
    "scale_attn_inner",
    "scale_attn",
    "scale_fc",
];

fn object<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a Map<String, Value>> {
    v.and_then(Value::as_object)
        .ok_or_else(|| TrainError::Request(format!("{what} is missing or not an object")))
}

/// `mlp_ratio` as flipstream's ratio for open_clip's `int(width · mlp_ratio)`.
fn mlp_ratio(width: usize, ratio: f64) -> f64 {
    ((width as f64 * ratio) as usize) as f64 / width as f64
}

/// The architecture of an open_clip model config, or every reason it has none in flipstream.
fn model_config(cfg: &Map<String, Value>, origin: &str) -> Result<(ModelConfig, TextPooling)> {
    let mut why = Vec::new();
    let top = Section {
        name: "model_cfg",
        map: cfg,
    };
    top.refuse_set(
        &[
            "custom_text",
            "multimodal_cfg",
            "init_logit_bias",
            "nonscalar_logit_scale",
        ],
        &mut why,
    );
    let v = Section {
        name: "vision_cfg",
        map: object(cfg.get("vision_cfg"), "vision_cfg")?,
    };
    let t = Section {
        name: "text_cfg",
        map: object(cfg.get("text_cfg"), "text_cfg")?,
    };
    v.refuse_set(
        &["timm_model_name", "attentional_pool", "final_ln_after_pool"],
        &mut why,
    );
    v.refuse_set(&CUSTOM_BLOCK_KEYS, &mut why);
    t.refuse_set(
        &[
            "hf_model_name",
            "embed_cls",
            "no_causal_mask",
            "final_ln_after_pool",
            "proj_bias",
        ],
        &mut why,
    );
    t.refuse_set(&CUSTOM_BLOCK_KEYS, &mut why);
    for s in [&v, &t] {
        let block = s.str("block_type", "default");
        if block != "default" {
            why.push(format!(
                "{}.block_type = {block:?}: only open_clip's default block",
                s.name
            ));
        }
    }
    if v.str("pool_type", "tok") != "tok" {
        why.push(format!(
            "vision_cfg.pool_type = {:?}: only \"tok\" (the CLS token) maps exactly (open_clip's \
             other poolings leave the CLS token in attention but out of the pooled mean)",
            v.str("pool_type", "tok")
        ));
    }
    if t.str("proj_type", "linear") != "linear" {
        why.push("text_cfg.proj_type: only a linear projection without bias".into());
    }
    let pooling = match t.str("pool_type", "argmax") {
        "argmax" => TextPooling::Argmax,
        "eos" => TextPooling::Eos(t.usize("eos_id", 2, &mut why) as u32),
        other => {
            why.push(format!(
                "text_cfg.pool_type = {other:?}: only \"argmax\" and \"eos\" (the end token)"
            ));
            TextPooling::Argmax
        }
    };
    let vision_width = v.usize("width", 768, &mut why);
    let head_width = v.usize("head_width", 64, &mut why).max(1);
    let text_width = t.usize("width", 512, &mut why);
    let config = ModelConfig {
        image_size: v.usize("image_size", 224, &mut why),
        patch_size: v.usize("patch_size", 16, &mut why),
        patch_embed: PatchEmbed::Linear,
        stem_depth: 1,
        vision_width,
        vision_depth: v.usize("layers", 12, &mut why),
        vision_heads: vision_width / head_width,
        vision_mlp_ratio: mlp_ratio(vision_width, v.f64("mlp_ratio", 4.0)),
        vision_pool: VisionPool::Cls,
        vision_ln_pre: !v.flag("no_ln_pre"),
        vision_pos_embed: PosEmbed::Learned,
        activation: if top.flag("quick_gelu") {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        },
        vocab_size: t.usize("vocab_size", 49408, &mut why),
        context_length: t.usize("context_length", 77, &mut why),
        pad_id: t.usize("pad_id", 0, &mut why),
        eot_id: None,
        text_width,
        text_depth: t.usize("layers", 12, &mut why),
        text_heads: t.usize("heads", 8, &mut why),
        text_mlp_ratio: mlp_ratio(text_width, t.f64("mlp_ratio", 4.0)),
        text_causal: true,
        text_pool: TextPool::Eot,
        embed_dim: top.usize("embed_dim", 512, &mut why),
        logit_scale_init: (1.0f64 / 0.07).ln(),
        logit_scale_max: 100.0f64.ln(),
    };
    if !vision_width.is_multiple_of(head_width) {
        why.push(format!(
            "vision_cfg.width {vision_width} is not a multiple of head_width {head_width}"
        ));
    }
    if !why.is_empty() {
        return Err(TrainError::Request(format!(
            "{origin} cannot be imported exactly: {}",
            why.join("; ")
        )));
    }
    Ok((config, pooling))
}

/// The open_clip tensors renamed to flipstream's, with the rewrites of the module docs. Refuses
/// a file with a tensor missing or one left over.
fn rename(
    cfg: &ModelConfig,
    mut theirs: HashMap<String, Tensor>,
    origin: &Path,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    let mut take = |name: &str| -> Option<Tensor> {
        let t = theirs.remove(name);
        if t.is_none() {
            missing.push(name.to_string());
        }
        t
    };
    let mut pairs: Vec<(String, String)> = vec![
        (
            "visual.patch_embed.weight".into(),
            "visual.conv1.weight".into(),
        ),
        ("visual.norm.weight".into(), "visual.ln_post.weight".into()),
        ("visual.norm.bias".into(), "visual.ln_post.bias".into()),
        (
            "text.token_embed.weight".into(),
            "token_embedding.weight".into(),
        ),
        ("text.pos_embed".into(), "positional_embedding".into()),
        ("text.norm.weight".into(), "ln_final.weight".into()),
        ("text.norm.bias".into(), "ln_final.bias".into()),
        ("logit_scale".into(), "logit_scale".into()),
    ];
    if cfg.vision_ln_pre {
        for p in ["weight", "bias"] {
            pairs.push((format!("visual.ln_pre.{p}"), format!("visual.ln_pre.{p}")));
        }
    }
    for (tower, depth) in [
        (Tower::Vision, cfg.vision_depth),
        (Tower::Text, cfg.text_depth),
    ] {
        for (ours, theirs_prefix) in block_prefixes(tower, depth) {
            for (a, b) in BLOCK_TENSORS {
                pairs.push((format!("{ours}{a}"), format!("{theirs_prefix}{b}")));
            }
        }
    }
    for (ours, name) in &pairs {
        if let Some(t) = take(name) {
            out.insert(ours.clone(), t);
        }
    }
    let transposed = [
        ("visual.proj.weight", "visual.proj"),
        ("text.proj.weight", "text_projection"),
    ];
    for (ours, name) in transposed {
        if let Some(t) = take(name) {
            out.insert(
                ours.to_string(),
                t.f_tr().context(|| format!("transposing {name}"))?,
            );
        }
    }
    let class = take("visual.class_embedding");
    let positions = take("visual.positional_embedding");
    // open_clip's attention mask is a buffer; newer versions keep it out of the state dict
    theirs.remove("attn_mask");
    let mut problems: Vec<String> = missing.iter().map(|n| format!("missing {n}")).collect();
    let mut left: Vec<&String> = theirs.keys().collect();
    left.sort();
    problems.extend(
        left.iter()
            .map(|n| format!("{n} has no flipstream counterpart")),
    );
    let (Some(class), Some(positions), true) = (class, positions, problems.is_empty()) else {
        return Err(TrainError::CheckpointMismatch {
            path: origin.to_path_buf(),
            differences: problems,
        });
    };
    let width = cfg.vision_width as i64;
    let split = || -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        let cls = class
            .f_add(&positions.f_select(0, 0)?)?
            .f_reshape([1, 1, width])?;
        let rest = positions.f_narrow(0, 1, positions.size()[0] - 1)?;
        Ok((cls, rest))
    };
    let (cls, rest) = split().context(|| "splitting the CLS row off the position table".into())?;
    out.insert("visual.cls_token".into(), cls);
    out.insert("visual.pos_embed".into(), rest);
    out.insert(
        "visual.patch_embed.bias".into(),
        Tensor::f_zeros([width], (Kind::Float, tch::Device::Cpu))
            .context(|| "patch embedding bias".into())?,
    );
    out.into_iter()
        .map(|(name, t)| {
            let t = t
                .f_to_kind(Kind::Float)
                .and_then(|t| t.f_contiguous())
                .context(|| format!("converting {name} to float32"))?;
            Ok((name, t))
        })
        .collect()
}

/// The architecture of the open_clip folder `dir` from its config alone (no weights read), and
/// where its text tower pools.
pub fn open_clip_config(dir: &Path) -> Result<(ModelConfig, TextPooling)> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(TrainError::Request(format!(
            "open_clip:{}: no {CONFIG_FILE} there (an open_clip model folder has it, with the \
             weights as safetensors)",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&config_path).map_err(|source| TrainError::Io {
        path: config_path.clone(),
        source,
    })?;
    let origin = config_path.display().to_string();
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Request(format!("{origin}: not JSON: {e}")))?;
    let model_cfg = object(
        doc.get("model_cfg").or(Some(&doc)),
        &format!("{origin}: model_cfg"),
    )?;
    model_config(model_cfg, &origin)
}

/// Reads the open_clip folder `dir` (see the module docs).
pub fn import_open_clip(dir: &Path) -> Result<ImportedModel> {
    let (config, text_pooling) = open_clip_config(dir)?;
    let Some(weights_path) = WEIGHTS_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        return Err(TrainError::Request(format!(
            "{}: no weights ({}); a pickled open_clip_pytorch_model.bin must be converted to \
             safetensors first",
            dir.display(),
            WEIGHTS_FILES.join(", ")
        )));
    };
    let (tensors, _) = read_safetensors(&weights_path, tch::Device::Cpu)?;
    let weights = rename(&config, tensors, &weights_path)?;
    let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
    Ok(ImportedModel {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
        text_pooling,
    })
}

impl ImportedModel {
    /// Checks that `tok` encodes for this model (its ids fit the embedding table, its end token is
    /// where open_clip pools) and sets the config's pad and end ids from it.
    pub fn adopt_tokenizer(&mut self, tok: &TextTokenizer, origin: &str) -> Result<()> {
        let mut why = Vec::new();
        if tok.vocab_size() > self.config.vocab_size {
            why.push(format!(
                "it has {} tokens, the model's embedding table {}",
                tok.vocab_size(),
                self.config.vocab_size
            ));
        }
        let end = tok.end_id();
        match self.text_pooling {
            TextPooling::Eos(id) if id != end => why.push(format!(
                "its end token has id {end}, the model pools at id {id} (text_cfg.eos_id)"
            )),
            TextPooling::Argmax if end as usize + 1 != tok.vocab_size() => why.push(format!(
                "the model pools at the highest id of a caption (text_cfg.pool_type = \
                 \"argmax\"), but the end token ({end}) is not the tokenizer's highest id"
            )),
            _ => {}
        }
        if !why.is_empty() {
            return Err(TrainError::Request(format!(
                "tokenizer {origin} does not fit the model of {}: {}",
                self.dir.display(),
                why.join("; ")
            )));
        }
        self.config.pad_id = tok.pad_id() as usize;
        self.config.eot_id = Some(end as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_setting_without_a_counterpart_is_named() {
        let cfg = json!({
            "custom_text": true,
            "vision_cfg": {"pool_type": "avg", "ls_init_value": 0.1, "timm_model_name": "vit"},
            "text_cfg": {"no_causal_mask": true, "pool_type": "last", "qk_norm": true},
        });
        let err = model_config(cfg.as_object().unwrap(), "cfg")
            .unwrap_err()
            .to_string();
        for key in [
            "model_cfg.custom_text",
            "vision_cfg.pool_type",
            "vision_cfg.ls_init_value",
            "vision_cfg.timm_model_name",
            "text_cfg.no_causal_mask",
            "text_cfg.pool_type",
            "text_cfg.qk_norm",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
    }

    #[test]
    fn missing_keys_take_open_clips_defaults() {
        let cfg = json!({"vision_cfg": {}, "text_cfg": {}, "quick_gelu": true});
        let (m, pooling) = model_config(cfg.as_object().unwrap(), "cfg").unwrap();
        assert_eq!((m.image_size, m.patch_size, m.vision_width), (224, 16, 768));
        assert_eq!(
            (m.vision_depth, m.vision_heads, m.vision_mlp_width()),
            (12, 12, 3072)
        );
        assert_eq!((m.text_width, m.text_heads, m.context_length), (512, 8, 77));
        assert_eq!((m.vocab_size, m.embed_dim), (49408, 512));
        assert_eq!(m.activation, Activation::QuickGelu);
        assert!(m.vision_ln_pre);
        assert_eq!(pooling, TextPooling::Argmax);
        assert!(m.problems().is_empty(), "{:?}", m.problems());
    }
}
