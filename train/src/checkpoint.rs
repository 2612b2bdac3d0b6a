//! Checkpoints: a folder with the model weights and the optimizer moments as `.safetensors`, and a
//! JSON sidecar ([`CheckpointMeta`]) with the step, schedule, seed, the resolved config and its
//! fingerprint, and the training loop's progress (epoch, opaque loader state).
//!
//! ```text
//! <dir>/model.safetensors       parameters by name (float32), metadata: step, model fingerprint
//! <dir>/optimizer.safetensors   exp_avg/<param>, exp_avg_sq/<param>, metadata: step, AdamW steps
//! <dir>/checkpoint.json         CheckpointMeta, written last
//! ```
//!
//! Each file is written to a temporary name, synced and renamed, and the sidecar goes last: a
//! crash leaves either the previous checkpoint or the new one. Both tensor files carry the step in
//! their metadata, and loading checks it against the sidecar, so files from two different saves are
//! never mixed. Loading checks the model config and every tensor's name and shape before changing
//! anything, and names each difference when they do not match.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, TchError, Tensor};

use crate::config::{ModelConfig, RunConfig};
use crate::error::{Result, TorchContext, TrainError};
use crate::model::{ClipModel, HEADS_PREFIX};
use crate::objective::ObjectiveConfig;
use crate::optim::{AdamW, shape_differences};
use crate::schedule::ScheduleValue;

/// Version of the checkpoint layout.
pub const FORMAT_VERSION: u32 = 1;
/// The weights file in a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer-state file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The sidecar in a checkpoint folder.
pub const META_FILE: &str = "checkpoint.json";

const META_STEP: &str = "step";
const META_FINGERPRINT: &str = "model_fingerprint";
const META_ADAMW_STEPS: &str = "adamw_steps";

/// What the training loop records besides the trainer's own state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainProgress {
    /// Epoch the loader is in.
    pub epoch: u64,
    /// Samples consumed so far.
    pub samples_seen: u64,
    /// The loader's resumable state, opaque to the trainer.
    pub loader_state: serde_json::Value,
}

/// The JSON sidecar of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Optimizer steps completed: the step a resumed run takes next.
    pub step: u64,
    /// The schedule's value at `step` (what the next step will use).
    pub schedule: ScheduleValue,
    /// Steps of the whole schedule (both phases).
    pub total_steps: u64,
    /// The run's seed (weights and masks).
    pub seed: u64,
    /// [`ModelConfig::fingerprint`] of the model.
    pub model_fingerprint: String,
    /// The resolved config of the run.
    pub config: RunConfig,
    /// Epoch, samples, loader state.
    #[serde(flatten)]
    pub progress: TrainProgress,
    /// When it was written (RFC 3339, UTC).
    pub created_at: String,
    /// The flipstream version that wrote it.
    pub flipstream_version: String,
    /// BLAKE3 (hex) of each tensor file, checked before loading: a damaged file is refused, never
    /// loaded. Absent in checkpoints written before checksums were recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

/// Writes `model`, `optim` and `meta` into `dir` (created if needed), atomically per file, the
/// sidecar last; returns the sidecar as written (`meta` with the files' checksums).
pub fn save(
    dir: &Path,
    model: &ClipModel,
    optim: &AdamW,
    meta: &CheckpointMeta,
) -> Result<CheckpointMeta> {
    Snapshot::take(model, optim, meta)?.write(dir)
}

/// A checkpoint in host memory: the weights and the optimizer moments copied off the device at
/// one step, and the sidecar. Taking it is the only part of a save that must happen between two
/// optimizer steps; [`Snapshot::write`] touches no tensor and may run on another thread while
/// training goes on (the run loop's background saves). It holds a copy of the weights and both
/// moments: three times the parameters' size in host memory.
pub struct Snapshot {
    meta: CheckpointMeta,
    model: Vec<(String, HostTensor)>,
    optim: Vec<(String, HostTensor)>,
    adamw_steps: u64,
}

impl Snapshot {
    /// Copies `model` and `optim` to host memory.
    pub fn take(model: &ClipModel, optim: &AdamW, meta: &CheckpointMeta) -> Result<Self> {
        let weights: Vec<(String, &Tensor)> = model
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.tensor()))
            .collect();
        Ok(Self {
            meta: meta.clone(),
            model: host_copies(&weights)?,
            optim: host_copies(&optim.state_tensors())?,
            adamw_steps: optim.steps(),
        })
    }

    /// Optimizer steps completed at the snapshot.
    pub fn step(&self) -> u64 {
        self.meta.step
    }

    /// Writes the tensor files and then the sidecar into `dir` (created if needed), each
    /// atomically; returns the sidecar as written (with the files' checksums).
    pub fn write(self, dir: &Path) -> Result<CheckpointMeta> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut info = HashMap::from([
            (META_STEP.to_string(), self.meta.step.to_string()),
            (
                META_FINGERPRINT.to_string(),
                self.meta.model_fingerprint.clone(),
            ),
        ]);
        let mut meta = self.meta;
        let model_hash = write_safetensors(&dir.join(MODEL_FILE), &self.model, info.clone())?;
        info.insert(META_ADAMW_STEPS.to_string(), self.adamw_steps.to_string());
        let optim_hash = write_safetensors(&dir.join(OPTIMIZER_FILE), &self.optim, info)?;
        meta.checksums = BTreeMap::from([
            (MODEL_FILE.to_string(), model_hash),
            (OPTIMIZER_FILE.to_string(), optim_hash),
        ]);
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| TrainError::Checkpoint {
            path: dir.join(META_FILE),
            detail: format!("serialising: {e}"),
        })?;
        atomic_write(&dir.join(META_FILE), &json)?;
        Ok(meta)
    }
}

/// BLAKE3 (hex) of a checkpoint's weights file: the identity of the weights, whatever the run
/// directory or checkpoint is called.
pub fn weights_fingerprint(dir: &Path) -> Result<String> {
    let path = dir.join(MODEL_FILE);
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(io)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Reads a checkpoint's sidecar.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    let meta: CheckpointMeta =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            detail: format!("not a flipstream checkpoint sidecar: {e}"),
        })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(TrainError::Checkpoint {
            path,
            detail: format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                meta.format_version
            ),
        });
    }
    Ok(meta)
}

/// Loads the checkpoint in `dir` into `model` and, when given, `optim`. Refuses (changing nothing)
/// a checkpoint of another model config or with other tensors, naming every difference.
pub fn load(dir: &Path, model: &ClipModel, optim: Option<&mut AdamW>) -> Result<CheckpointMeta> {
    let meta = read_meta(dir)?;
    verify_checksums(dir, &meta)?;
    let differences = config_differences(&meta.config.model, model.config());
    if !differences.is_empty() {
        return Err(TrainError::CheckpointMismatch {
            path: dir.to_path_buf(),
            differences,
        });
    }
    let device = model.device();
    let weights_path = dir.join(MODEL_FILE);
    let (weights, info) = read_safetensors(&weights_path, device)?;
    check_step(&weights_path, &info, meta.step)?;
    let expected: Vec<(String, Vec<i64>)> = model
        .params()
        .iter()
        .map(|p| (p.name().to_string(), p.tensor().size()))
        .collect();
    let differences = shape_differences(&expected, &weights);
    if !differences.is_empty() {
        return Err(TrainError::CheckpointMismatch {
            path: weights_path,
            differences,
        });
    }
    // Read and check the optimizer state before touching the model.
    let optim_state = match optim {
        Some(optim) => {
            let path = dir.join(OPTIMIZER_FILE);
            let (tensors, info) = read_safetensors(&path, device)?;
            check_step(&path, &info, meta.step)?;
            let steps = info
                .get(META_ADAMW_STEPS)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| TrainError::Checkpoint {
                    path: path.clone(),
                    detail: format!("metadata lacks `{META_ADAMW_STEPS}`"),
                })?;
            let expected: Vec<(String, Vec<i64>)> = optim
                .state_tensors()
                .into_iter()
                .map(|(n, t)| (n, t.size()))
                .collect();
            let differences = shape_differences(&expected, &tensors);
            if !differences.is_empty() {
                return Err(TrainError::CheckpointMismatch { path, differences });
            }
            Some((optim, steps, tensors, path))
        }
        None => None,
    };
    copy_params(model, &weights, &weights_path)?;
    if let Some((optim, steps, tensors, path)) = optim_state {
        optim
            .load_state(steps, &tensors)
            .map_err(|differences| TrainError::CheckpointMismatch { path, differences })?;
    }
    Ok(meta)
}

/// Loads `weights` (flipstream's names: an import, see [`crate::interop::import`]) into every
/// parameter of `model` outside its objective's heads ([`HEADS_PREFIX`]), which keep their
/// initialisation. Refuses, changing nothing, a missing, extra or misshapen tensor, naming each.
pub fn load_towers(
    model: &ClipModel,
    weights: &HashMap<String, Tensor>,
    origin: &Path,
) -> Result<()> {
    let expected: Vec<(String, Vec<i64>)> = model
        .params()
        .iter()
        .filter(|p| !p.name().starts_with(HEADS_PREFIX))
        .map(|p| (p.name().to_string(), p.tensor().size()))
        .collect();
    let differences = shape_differences(&expected, weights);
    if !differences.is_empty() {
        return Err(TrainError::CheckpointMismatch {
            path: origin.to_path_buf(),
            differences,
        });
    }
    copy_params(model, weights, origin)
}

/// Copies each tensor of `weights` into the parameter of `model` with its name (shapes checked
/// by the caller).
fn copy_params(model: &ClipModel, weights: &HashMap<String, Tensor>, origin: &Path) -> Result<()> {
    for p in model.params().iter() {
        let Some(src) = weights.get(p.name()) else {
            continue;
        };
        let mut dst = p.tensor().shallow_clone();
        tch::no_grad(|| dst.f_copy_(src).map(|_| ()))
            .context(|| format!("loading {} from {}", p.name(), origin.display()))?;
    }
    Ok(())
}

/// Field-by-field differences between the model config a checkpoint was made with and `current`.
pub fn config_differences(saved: &ModelConfig, current: &ModelConfig) -> Vec<String> {
    field_differences("model", saved, current)
}

/// Differences between the objective a checkpoint was trained with and `current` (a checkpoint
/// written before objectives existed was trained with CLIP).
pub fn objective_differences(saved: &ObjectiveConfig, current: &ObjectiveConfig) -> Vec<String> {
    field_differences("objective", saved, current)
}

/// `{section}.{key} is A in the checkpoint but B here` for every top-level field that differs.
fn field_differences<T: Serialize>(section: &str, saved: &T, current: &T) -> Vec<String> {
    let as_map = |c: &T| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (saved, current) = (as_map(saved), as_map(current));
    let mut keys: Vec<&String> = saved.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (saved.get(k), current.get(k));
            (a != b).then(|| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "(absent)".to_string(), |v| v.to_string())
                };
                format!(
                    "{section}.{k} is {} in the checkpoint but {} here",
                    show(a),
                    show(b)
                )
            })
        })
        .collect()
}

fn check_step(path: &Path, info: &HashMap<String, String>, step: u64) -> Result<()> {
    match info.get(META_STEP).map(|s| s.parse::<u64>()) {
        Some(Ok(s)) if s == step => Ok(()),
        Some(Ok(s)) => Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!(
                "holds step {s} but the sidecar says step {step}: files of two different saves"
            ),
        }),
        _ => Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("metadata lacks `{META_STEP}`"),
        }),
    }
}

/// A tensor copied to host memory, ready for safetensors.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_host(t: &Tensor) -> std::result::Result<HostTensor, TchError> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let kind = t.f_kind()?;
    let dtype =
        dtype_of(kind).ok_or_else(|| TchError::Kind(format!("cannot store {kind:?} tensors")))?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(HostTensor {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Host copies of named tensors.
fn host_copies(tensors: &[(String, &Tensor)]) -> Result<Vec<(String, HostTensor)>> {
    tensors
        .iter()
        .map(|(name, t)| {
            to_host(t)
                .map(|h| (name.clone(), h))
                .context(|| format!("copying {name} to host memory"))
        })
        .collect()
}

/// Writes named tensors (any device, contiguous or not) to a safetensors file with `info` as its
/// metadata, atomically; returns the file's BLAKE3 (hex).
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, &Tensor)],
    info: HashMap<String, String>,
) -> Result<String> {
    write_safetensors(path, &host_copies(tensors)?, info)
}

/// Writes the file and returns its BLAKE3 (hex).
fn write_safetensors(
    path: &Path,
    tensors: &[(String, HostTensor)],
    info: HashMap<String, String>,
) -> Result<String> {
    let bytes = safetensors::serialize(tensors.iter().map(|(n, h)| (n.as_str(), h)), Some(info))
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("serialising: {e}"),
        })?;
    atomic_write(path, &bytes)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Checks every file of `dir` that `meta` has a checksum for.
pub fn verify_checksums(dir: &Path, meta: &CheckpointMeta) -> Result<()> {
    for (file, want) in &meta.checksums {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let got = blake3::hash(&bytes).to_hex().to_string();
        if &got != want {
            return Err(TrainError::Checkpoint {
                path,
                detail: format!(
                    "damaged: its BLAKE3 is {got}, the sidecar recorded {want} when it was written"
                ),
            });
        }
    }
    Ok(())
}

/// The safetensors dtype of a libtorch kind (those a checkpoint can hold).
fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// The libtorch kind of a safetensors dtype (inverse of [`dtype_of`]).
fn kind_of(dtype: Dtype) -> Option<Kind> {
    [
        Kind::Float,
        Kind::Double,
        Kind::BFloat16,
        Kind::Half,
        Kind::Int64,
        Kind::Int,
        Kind::Uint8,
        Kind::Bool,
    ]
    .into_iter()
    .find(|k| dtype_of(*k) == Some(dtype))
}

/// All tensors of a safetensors file on `device`, and the file's metadata.
pub fn read_safetensors(
    path: &Path,
    device: Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail,
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let info = metadata.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in file.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            bad(format!(
                "tensor {name}: unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .and_then(|t| t.f_to_device(device))
            .map_err(|e| bad(format!("tensor {name}: {e}")))?;
        out.insert(name, tensor);
    }
    Ok((out, info))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced, then renamed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |path: PathBuf| move |source| TrainError::Io { path, source };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(io_err(path.to_path_buf()))?;
    // Make the rename durable where the platform allows syncing a folder.
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}
