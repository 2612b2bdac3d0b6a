//! Checkpoints saved in the background while training goes on.
//!
//! A save has two parts. Copying the weights and the AdamW moments off the device
//! ([`Snapshot::take`]) must happen between two optimizer steps, and is all the training loop
//! waits for. Serialising, hashing, syncing to disk, uploading to an object store, pointing
//! `checkpoints/latest.json` at the new checkpoint and pruning old ones (`--keep-checkpoints`)
//! touch no tensor: a thread does them while the next steps run.
//!
//! Safety: one save at a time (a new one first waits for the one in flight), so pruning never
//! races a write; `latest.json` moves only once a checkpoint is complete, so a crash at any moment
//! resumes from the newest complete one; an error of a background save stops training at the next
//! step with that error. The loop waits for the save in flight before it returns.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::checkpoint::Snapshot;
use crate::error::{Result, TrainError};
use crate::run::rundir::RunDir;

/// A finished save.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// Optimizer steps completed at the checkpoint.
    pub step: u64,
    /// Where it is (path or URL).
    pub path: String,
    /// Seconds training waited: the copy off the device.
    pub stall_s: f64,
    /// Seconds the background part took (write, upload, pruning).
    pub write_s: f64,
}

/// A save in flight.
struct Pending {
    step: u64,
    stall_s: f64,
    handle: JoinHandle<Result<(String, f64)>>,
}

/// Saves checkpoints into a run directory on a background thread, one at a time.
pub struct BackgroundSaver {
    dir: Arc<RunDir>,
    keep: Option<usize>,
    pending: Option<Pending>,
}

impl BackgroundSaver {
    /// A saver into `dir` that keeps the newest `keep` checkpoints (all when `None`).
    pub fn new(dir: Arc<RunDir>, keep: Option<usize>) -> Self {
        Self {
            dir,
            keep,
            pending: None,
        }
    }

    /// Starts saving `snapshot` (`stall_s`: what taking it cost). The save in flight, if any, is
    /// waited for first and returned.
    pub fn start(&mut self, snapshot: Snapshot, stall_s: f64) -> Result<Option<Saved>> {
        let previous = self.finish()?;
        let (dir, keep, step) = (self.dir.clone(), self.keep, snapshot.step());
        let handle = std::thread::Builder::new()
            .name(format!("checkpoint-{step}"))
            .spawn(move || {
                let started = Instant::now();
                let path = write_and_publish(&dir, snapshot, keep)?;
                Ok((path, started.elapsed().as_secs_f64()))
            })
            .map_err(|e| TrainError::Checkpoint {
                path: self.dir.checkpoint_dir(step),
                detail: format!("starting the background save: {e}"),
            })?;
        self.pending = Some(Pending {
            step,
            stall_s,
            handle,
        });
        Ok(previous)
    }

    /// The save in flight, if it has finished (its error, if it failed).
    pub fn poll(&mut self) -> Result<Option<Saved>> {
        match &self.pending {
            Some(p) if p.handle.is_finished() => self.finish(),
            _ => Ok(None),
        }
    }

    /// Waits for the save in flight, if any.
    pub fn finish(&mut self) -> Result<Option<Saved>> {
        let Some(p) = self.pending.take() else {
            return Ok(None);
        };
        let (path, write_s) = p.handle.join().map_err(|_| TrainError::Checkpoint {
            path: self.dir.checkpoint_dir(p.step),
            detail: "the background save panicked".into(),
        })??;
        Ok(Some(Saved {
            step: p.step,
            path,
            stall_s: p.stall_s,
            write_s,
        }))
    }
}

/// Writes `snapshot` into `checkpoints/step-N`, publishes it (upload, `latest.json`), then
/// deletes all but the newest `keep` checkpoints; returns where it is.
fn write_and_publish(dir: &RunDir, snapshot: Snapshot, keep: Option<usize>) -> Result<String> {
    let step = snapshot.step();
    snapshot.write(&dir.checkpoint_dir(step))?;
    let latest = dir.publish_checkpoint(step)?;
    if let Some(keep) = keep {
        // Newest first; the first is the one just published.
        for old in dir.checkpoint_steps()?.into_iter().skip(keep.max(1)) {
            dir.remove_checkpoint(old)?;
        }
    }
    Ok(dir.display(&latest.dir))
}
