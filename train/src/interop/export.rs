//! Export of a trained model to the libraries people load CLIP models with (`flipstream export`).
//!
//! - [`ExportFormat::OpenClip`]: a folder that `open_clip.create_model_and_transforms(
//!   "local-dir:DIR")` and `open_clip.get_tokenizer("local-dir:DIR")` load (open_clip ≥ 3.0):
//!   `open_clip_config.json`, `open_clip_model.safetensors` with open_clip's tensor names, and the
//!   tokenizer ([`open_clip`]).
//! - [`ExportFormat::Hf`]: a folder that transformers' `CLIPModel.from_pretrained(DIR)`,
//!   `AutoTokenizer` and `CLIPImageProcessor` load: `config.json` (`CLIPConfig`),
//!   `model.safetensors`, `preprocessor_config.json` and the tokenizer ([`hf`]).
//!
//! Only exact mappings are written: the exported model computes flipstream's embeddings (the
//! interop test checks them with open_clip and transformers from PyPI). What a target cannot
//! express is refused before anything is written, every reason at once ([`refusals`]):
//! average pooling (both targets put a CLS token into attention, which changes every patch
//! token), the convolutional stem, a non-causal or mean-pooled text tower, and for
//! transformers a tower without `ln_pre` (its vision model always normalises first).
//!
//! The rewrites that keep the function exact ([`weights`]): the fixed sin-cos table plus the
//! patch embedding's bias become the targets' learned position table (the CLS row is zero), the
//! fused qkv projection is split for transformers, projections are transposed for open_clip.
//! Transformers pools the text at the first end token except when `eos_token_id` is 2, where it
//! keeps a legacy argmax over the ids; the tokenizers `flipstream train` learns have their end
//! token at id 2, so a transformers export swaps ids 2 and the last id in the tokenizer and the
//! embedding table ([`tokenizer`]).
//!
//! The folder is written beside `--out` under a hidden name and renamed into place when complete,
//! so that an interrupted export leaves nothing that looks like a model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Tensor;

use super::tokenizer::{self, TokenIds};
use super::{hf, open_clip};
use crate::checkpoint::save_tensors;
use crate::config::{ModelConfig, PatchEmbed, TextPool, VisionPool};
use crate::error::{Result, TrainError};
use crate::model::ClipModel;
use crate::objective::ObjectiveKind;
use flipstream_loader::TextTokenizer;
use flipstream_schemas::ScoreModel;

/// Where an export is meant to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// open_clip's `local-dir:` folder.
    OpenClip,
    /// transformers' `CLIPModel` folder.
    Hf,
}

impl ExportFormat {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::OpenClip => "open_clip",
            ExportFormat::Hf => "hf",
        }
    }

    /// Python that loads the folder `dir`.
    pub fn load_snippet(self, dir: &str) -> String {
        match self {
            ExportFormat::OpenClip => format!(
                "model, _, preprocess = open_clip.create_model_and_transforms('local-dir:{dir}'); \
                 tokenizer = open_clip.get_tokenizer('local-dir:{dir}')"
            ),
            ExportFormat::Hf => format!(
                "model = CLIPModel.from_pretrained('{dir}'); \
                 tokenizer = AutoTokenizer.from_pretrained('{dir}'); \
                 processor = CLIPImageProcessor.from_pretrained('{dir}')"
            ),
        }
    }
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportRequest<'a> {
    /// The target.
    pub format: ExportFormat,
    /// The folder to create (absent, or an empty folder).
    pub out: &'a Path,
    /// The run's `tokenizer.json`.
    pub tokenizer: &'a Path,
    /// The checkpoint exported (recorded in `flipstream_export.json`).
    pub source: ScoreModel,
}

/// One written file.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedFile {
    /// Its name in the folder.
    pub name: String,
    /// Its size.
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The target.
    pub format: ExportFormat,
    /// The folder.
    pub out: String,
    /// The checkpoint exported.
    pub source: ScoreModel,
    /// The files of the folder.
    pub files: Vec<ExportedFile>,
    /// Tensors in the weights file.
    pub tensors: usize,
    /// Parameters exported (the objective's training heads, such as MAE's decoder, are not).
    pub parameters: i64,
    /// Token ids swapped in the exported tokenizer and embedding table (see the module docs).
    pub swapped_token_ids: Option<[u32; 2]>,
    /// The exported tokenizer's start, end and pad ids.
    pub token_ids: TokenIds,
    /// Python that loads the folder.
    pub load_with: String,
}

/// Name of the provenance file of an export.
pub const PROVENANCE_FILE: &str = "flipstream_export.json";

/// Why a model with `cfg`, trained with `objective`, cannot be exported to `format` exactly (empty
/// when it can). `end_id` is the run tokenizer's end token (see [`tokenizer::special_ids`]).
pub fn refusals(
    cfg: &ModelConfig,
    objective: ObjectiveKind,
    format: ExportFormat,
    end_id: Option<u32>,
) -> Vec<String> {
    let mut why = Vec::new();
    if !objective.aligns_text() {
        why.push(format!(
            "the {} objective trains no text tower into the image space (a CLIP model needs one)",
            objective.name()
        ));
    }
    if cfg.patch_embed == PatchEmbed::Conv {
        why.push(
            "model.patch_embed = \"conv\": the targets embed patches with one strided \
             convolution, not a convolutional stem"
                .into(),
        );
    }
    match cfg.vision_pool {
        VisionPool::Cls => {}
        pool => why.push(format!(
            "model.vision_pool = \"{}\": the targets' ViT always puts a CLS token into attention \
             and pools it (or the patches without it), so only vision_pool = \"cls\" maps exactly",
            serde_plain(pool)
        )),
    }
    if format == ExportFormat::Hf && !cfg.vision_ln_pre {
        why.push(
            "model.vision_ln_pre = false: transformers' CLIPVisionModel always applies a \
             LayerNorm before its first block; train with vision_ln_pre = true, or export to \
             open_clip (which can leave it out)"
                .into(),
        );
    }
    if !cfg.text_causal {
        why.push(
            "model.text_causal = false: the targets' text towers attend causally (open_clip's \
             non-causal mode also attends to padding, flipstream's does not)"
                .into(),
        );
    }
    if cfg.text_pool != TextPool::Eot {
        why.push(format!(
            "model.text_pool = \"{}\": the targets pool the text at its end token only",
            serde_plain(cfg.text_pool)
        ));
    } else if end_id.is_none() {
        why.push(
            "the text pools at the last non-pad token, and the run's tokenizer pads with its end \
             token, so that is the last word: no target pools there"
                .into(),
        );
    }
    why
}

/// A setting's serialised name (`avg_cls`, `mean`, ...).
fn serde_plain<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes `model` as `request.format` into `request.out` (see the module docs).
pub fn export_model(
    model: &ClipModel,
    objective: ObjectiveKind,
    request: &ExportRequest<'_>,
) -> Result<ExportSummary> {
    let cfg = model.config();
    let text = TextTokenizer::from_file(request.tokenizer, cfg.context_length).map_err(|e| {
        TrainError::Tokenizer {
            context: format!("loading {}", request.tokenizer.display()),
            source: Box::new(e),
        }
    })?;
    let ids = tokenizer::special_ids(cfg, &text);
    let why = refusals(cfg, objective, request.format, ids.map(|i| i.end));
    if !why.is_empty() {
        return Err(TrainError::Request(format!(
            "this model cannot be exported to {} exactly: {}",
            request.format.name(),
            why.join("; ")
        )));
    }
    let ids = ids.ok_or_else(|| TrainError::Request("the tokenizer has no end token".into()))?;
    let swap = match request.format {
        ExportFormat::Hf => tokenizer::hf_swap(cfg, &text, ids)?,
        ExportFormat::OpenClip => None,
    };
    let staging = Staging::begin(request.out)?;
    let token_ids = tokenizer::write(request.tokenizer, staging.path(), &text, swap)?;
    let named = match request.format {
        ExportFormat::OpenClip => open_clip::tensors(model, swap)?,
        ExportFormat::Hf => hf::tensors(model, swap)?,
    };
    let weights_file = match request.format {
        ExportFormat::OpenClip => open_clip::WEIGHTS_FILE,
        ExportFormat::Hf => hf::WEIGHTS_FILE,
    };
    let refs: Vec<(String, &Tensor)> = named.iter().map(|(n, t)| (n.clone(), t)).collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_tensors(&staging.path().join(weights_file), &refs, metadata)?;
    let out = absolute(request.out);
    let configs = match request.format {
        ExportFormat::OpenClip => open_clip::configs(cfg, token_ids, &out),
        ExportFormat::Hf => hf::configs(cfg, token_ids),
    };
    for (name, value) in configs {
        write_json(&staging.path().join(name), &value)?;
    }
    let provenance = serde_json::json!({
        "format": request.format.name(),
        "source": request.source,
        "swapped_token_ids": swap,
        "exported_by": format!("flipstream {}", env!("CARGO_PKG_VERSION")),
    });
    write_json(&staging.path().join(PROVENANCE_FILE), &provenance)?;
    let files = staging.files()?;
    staging.commit()?;
    let out = out.display().to_string();
    Ok(ExportSummary {
        format: request.format,
        load_with: request.format.load_snippet(&out),
        out,
        source: request.source.clone(),
        files,
        tensors: named.len(),
        parameters: named.iter().map(|(_, t)| t.numel() as i64).sum(),
        swapped_token_ids: swap.map(|(a, b)| [a, b]),
        token_ids,
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Request(format!("serialising {}: {e}", path.display())))?;
    text.push('\n');
    std::fs::write(path, text).map_err(io_error(path))
}

/// The hidden sibling folder an export is written into, renamed to `out` by
/// [`Staging::commit`] and removed when dropped before that.
struct Staging {
    tmp: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl Staging {
    /// Refuses an `out` that exists and is not an empty folder; creates the sibling.
    fn begin(out: &Path) -> Result<Self> {
        let out = absolute(out);
        if out.exists() {
            let empty = std::fs::read_dir(&out)
                .map(|mut entries| entries.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(TrainError::Request(format!(
                    "--out {}: exists and is not an empty folder; export into a new one",
                    out.display()
                )));
            }
        }
        let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "export".into());
        let tmp = parent.join(format!(".{name}.export-tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
        Ok(Self {
            tmp,
            out,
            committed: false,
        })
    }

    fn path(&self) -> &Path {
        &self.tmp
    }

    /// The files written so far, by name.
    fn files(&self) -> Result<Vec<ExportedFile>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.tmp).map_err(io_error(&self.tmp))? {
            let entry = entry.map_err(io_error(&self.tmp))?;
            let bytes = entry.metadata().map_err(io_error(&entry.path()))?.len();
            files.push(ExportedFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                bytes,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    fn commit(mut self) -> Result<()> {
        if self.out.exists() {
            std::fs::remove_dir(&self.out).map_err(io_error(&self.out))?;
        }
        std::fs::rename(&self.tmp, &self.out).map_err(io_error(&self.out))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
