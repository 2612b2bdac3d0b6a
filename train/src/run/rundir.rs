//! [`RunDir`]: the folder of a training run, on the local disk or in an object store.
//!
//! ```text
//! <run>/config.toml                      the resolved RunSpec (model, train, run)
//! <run>/tokenizer.json                   the caption tokenizer (given, or trained on the captions)
//! <run>/metrics.jsonl                    one JSON object per step, evaluation and checkpoint
//! <run>/checkpoints/step-00000040/       model.safetensors, optimizer.safetensors, checkpoint.json
//! <run>/checkpoints/latest.json          {"step": 40, "dir": "checkpoints/step-00000040"}
//! ```
//!
//! A local run directory is used in place. For an object-store URL (`s3://…`, `memory://…`) files
//! are written to a local staging folder first and uploaded (a checkpoint's sidecar and
//! `latest.json` last, so a reader never sees a half-uploaded checkpoint); resuming downloads
//! the latest checkpoint into the staging folder.

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use flipstream_shard::StoreRoot;

use crate::checkpoint::{META_FILE, MODEL_FILE, OPTIMIZER_FILE};
use crate::error::{Result, TrainError};

/// The resolved run config.
pub const CONFIG_FILE: &str = "config.toml";
/// The caption tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Metrics, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Folder of the checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Pointer to the newest complete checkpoint.
pub const LATEST_FILE: &str = "checkpoints/latest.json";

/// Contents of `checkpoints/latest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestCheckpoint {
    /// Optimizer steps completed at the checkpoint.
    pub step: u64,
    /// The checkpoint folder, relative to the run directory.
    pub dir: String,
}

/// A run directory (see the module docs).
#[derive(Debug)]
pub struct RunDir {
    url: String,
    /// Where files are written and read: the folder itself, or the staging folder of a remote one.
    local: PathBuf,
    /// The object store of a remote run directory.
    remote: Option<Remote>,
}

#[derive(Debug)]
struct Remote {
    root: StoreRoot,
    runtime: tokio::runtime::Runtime,
    /// Keeps the staging folder alive (and removes it) with the `RunDir`.
    _staging: tempfile::TempDir,
}

/// The folder name of the checkpoint after `step` optimizer steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

impl RunDir {
    /// Opens (without creating anything yet) the run directory at a local path or URL.
    pub fn open(url: &str) -> Result<Self> {
        let bad = |detail: String| TrainError::RunDir {
            url: url.to_string(),
            detail,
        };
        if url.trim().is_empty() {
            return Err(bad("empty path".into()));
        }
        let is_remote = url.contains("://") && !url.starts_with("file://");
        if !is_remote {
            let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            if path.exists() && !path.is_dir() {
                return Err(bad("exists and is not a folder".into()));
            }
            return Ok(Self {
                url: url.to_string(),
                local: path,
                remote: None,
            });
        }
        let root = StoreRoot::parse(url).map_err(|e| bad(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the I/O runtime: {e}")))?;
        let staging = tempfile::Builder::new()
            .prefix("flipstream-run-")
            .tempdir()
            .map_err(|e| bad(format!("creating a local staging folder: {e}")))?;
        Ok(Self {
            url: url.to_string(),
            local: staging.path().to_path_buf(),
            remote: Some(Remote {
                root,
                runtime,
                _staging: staging,
            }),
        })
    }

    /// The path or URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The local path of `rel` (the file itself for a local run directory, its staged copy for a
    /// remote one).
    pub fn local_path(&self, rel: &str) -> PathBuf {
        self.local.join(rel)
    }

    /// Where `rel` lives, for messages (a path or a URL).
    pub fn display(&self, rel: &str) -> String {
        match &self.remote {
            None => self.local.join(rel).display().to_string(),
            Some(r) => r.root.location(rel),
        }
    }

    fn io(&self, path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Creates the local folder (and the staging folder's subfolders).
    pub fn create(&self) -> Result<()> {
        let dir = self.local.join(CHECKPOINTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e))
    }

    /// Reads a whole file, `None` when it does not exist.
    pub fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match &self.remote {
            None => {
                let path = self.local.join(rel);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.io(&path, e)),
                }
            }
            Some(r) => r
                .runtime
                .block_on(r.root.get_opt(rel))
                .map(|b| b.map(|b| b.to_vec()))
                .map_err(|e| TrainError::RunDir {
                    url: self.url.clone(),
                    detail: format!("reading {rel}: {e}"),
                }),
        }
    }

    /// Writes a whole file (atomically on the local disk: temporary name, then rename) and, for a
    /// remote run directory, uploads it.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.local.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(parent, e))?;
        }
        let tmp = path.with_extension("tmp-write");
        std::fs::write(&tmp, bytes).map_err(|e| self.io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| self.io(&path, e))?;
        self.upload(rel)
    }

    /// Uploads the staged file `rel` (nothing to do for a local run directory).
    pub fn upload(&self, rel: &str) -> Result<()> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        let path = self.local.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| self.io(&path, e))?;
        r.runtime
            .block_on(r.root.store().put(&ObjectPath::from(rel), bytes.into()))
            .map(|_| ())
            .map_err(|e| TrainError::RunDir {
                url: self.url.clone(),
                detail: format!("uploading {rel}: {e}"),
            })
    }

    /// Downloads `rel` into the staging folder (nothing to do for a local run directory).
    fn download(&self, rel: &str) -> Result<()> {
        if self.remote.is_none() {
            return Ok(());
        }
        let bytes = self.read_opt(rel)?.ok_or_else(|| TrainError::RunDir {
            url: self.url.clone(),
            detail: format!("{rel} is missing"),
        })?;
        let path = self.local.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| self.io(&path, e))
    }

    /// True when the run directory holds a run (`config.toml`).
    pub fn has_run(&self) -> Result<bool> {
        Ok(self.read_opt(CONFIG_FILE)?.is_some())
    }

    /// The local folder to save the checkpoint after `step` steps into; pass it to
    /// [`RunDir::publish_checkpoint`] once saved.
    pub fn checkpoint_dir(&self, step: u64) -> PathBuf {
        self.local.join(CHECKPOINTS_DIR).join(checkpoint_name(step))
    }

    /// Uploads a saved checkpoint (sidecar last) and points `latest.json` at it.
    pub fn publish_checkpoint(&self, step: u64) -> Result<LatestCheckpoint> {
        let dir = format!("{CHECKPOINTS_DIR}/{}", checkpoint_name(step));
        for file in [MODEL_FILE, OPTIMIZER_FILE, META_FILE] {
            self.upload(&format!("{dir}/{file}"))?;
        }
        let latest = LatestCheckpoint { step, dir };
        let json = serde_json::to_vec_pretty(&latest).map_err(|e| TrainError::RunDir {
            url: self.url.clone(),
            detail: format!("serialising {LATEST_FILE}: {e}"),
        })?;
        self.write(LATEST_FILE, &json)?;
        Ok(latest)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<LatestCheckpoint>> {
        let Some(bytes) = self.read_opt(LATEST_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrainError::RunDir {
                url: self.url.clone(),
                detail: format!("{LATEST_FILE} is not readable: {e}"),
            })
    }

    /// The steps of the checkpoint folders that have a sidecar (complete ones), newest first.
    pub fn checkpoint_steps(&self) -> Result<Vec<u64>> {
        let step_of = |name: &str| {
            name.strip_prefix("step-")
                .and_then(|n| n.parse::<u64>().ok())
        };
        let mut steps: Vec<u64> = match &self.remote {
            None => {
                let dir = self.local.join(CHECKPOINTS_DIR);
                match std::fs::read_dir(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(self.io(&dir, e)),
                    Ok(entries) => entries
                        .flatten()
                        .filter(|e| e.path().join(META_FILE).is_file())
                        .filter_map(|e| step_of(&e.file_name().to_string_lossy()))
                        .collect(),
                }
            }
            Some(r) => {
                use futures::TryStreamExt;
                let prefix = ObjectPath::from(CHECKPOINTS_DIR);
                let objects: Vec<_> = r
                    .runtime
                    .block_on(r.root.store().list(Some(&prefix)).try_collect())
                    .map_err(|e| TrainError::RunDir {
                        url: self.url.clone(),
                        detail: format!("listing {CHECKPOINTS_DIR}/: {e}"),
                    })?;
                objects
                    .iter()
                    .filter_map(|o| {
                        let parts: Vec<_> = o.location.parts().collect();
                        match parts.as_slice() {
                            [_, folder, file] if file.as_ref() == META_FILE => {
                                step_of(folder.as_ref())
                            }
                            _ => None,
                        }
                    })
                    .collect()
            }
        };
        steps.sort_unstable_by(|a, b| b.cmp(a));
        steps.dedup();
        Ok(steps)
    }

    /// Deletes the checkpoint after `step` steps (its files, locally and in the object store).
    /// Refuses the one `latest.json` names.
    pub fn remove_checkpoint(&self, step: u64) -> Result<()> {
        if self.latest_checkpoint()?.is_some_and(|l| l.step == step) {
            return Err(TrainError::RunDir {
                url: self.url.clone(),
                detail: format!(
                    "refusing to delete checkpoint {step}: checkpoints/latest.json names it"
                ),
            });
        }
        let rel = format!("{CHECKPOINTS_DIR}/{}", checkpoint_name(step));
        if let Some(r) = &self.remote {
            // The sidecar first: without it the folder no longer counts as a checkpoint.
            for file in [META_FILE, MODEL_FILE, OPTIMIZER_FILE] {
                let path = ObjectPath::from(format!("{rel}/{file}"));
                match r.runtime.block_on(r.root.store().delete(&path)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(TrainError::RunDir {
                            url: self.url.clone(),
                            detail: format!("deleting {rel}/{file}: {e}"),
                        });
                    }
                }
            }
        }
        let local = self.local.join(&rel);
        if local.exists() {
            let sidecar = local.join(META_FILE);
            if sidecar.exists() {
                std::fs::remove_file(&sidecar).map_err(|e| self.io(&sidecar, e))?;
            }
            std::fs::remove_dir_all(&local).map_err(|e| self.io(&local, e))?;
        }
        Ok(())
    }

    /// A checkpoint folder named by the user (`step-00000040`, `40`, or a path relative to the
    /// run directory) or the latest one, made available locally. Returns its local path.
    pub fn fetch_checkpoint(&self, which: Option<&str>) -> Result<PathBuf> {
        let rel = match which {
            None => {
                self.latest_checkpoint()?
                    .ok_or_else(|| TrainError::RunDir {
                        url: self.url.clone(),
                        detail: "holds no checkpoint yet (checkpoints/latest.json is missing)"
                            .into(),
                    })?
                    .dir
            }
            Some(name) => match name.parse::<u64>() {
                Ok(step) => format!("{CHECKPOINTS_DIR}/{}", checkpoint_name(step)),
                Err(_) if name.contains('/') => name.trim_end_matches('/').to_string(),
                Err(_) => format!("{CHECKPOINTS_DIR}/{name}"),
            },
        };
        if self.read_opt(&format!("{rel}/{META_FILE}"))?.is_none() {
            return Err(TrainError::RunDir {
                url: self.url.clone(),
                detail: format!("has no checkpoint {rel} (no {META_FILE} in it)"),
            });
        }
        for file in [MODEL_FILE, OPTIMIZER_FILE, META_FILE] {
            self.download(&format!("{rel}/{file}"))?;
        }
        Ok(self.local.join(rel))
    }

    /// Makes `rel` available locally and returns its path (for files such as the tokenizer).
    pub fn fetch(&self, rel: &str) -> Result<PathBuf> {
        self.download(rel)?;
        Ok(self.local.join(rel))
    }
}
