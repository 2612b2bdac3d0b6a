//! Synthetic web image-text pairs with ground truth: the data every test, demo and benchmark
//! runs on.
//!
//! Each item is a compositional scene (one main object plus 0–3 distractors, see [`Shape`],
//! [`Color`], [`SizeClass`], [`Position`], [`Background`]) rendered at a web-like size, encoded
//! mostly as JPEG (some PNG, WebP, GIF), with a varied, noisy caption and its [`Labels`].
//! Optional dirt ([`DirtKind`], mixed by a [`DirtMix`]) plants the defects real scraped data has:
//! broken files, HTML saved as `.jpg`, tiny or extreme images, duplicates, bad captions, exotic
//! pixel formats, decompression bombs, missing URLs.
//!
//! - [`generate`] writes a dataset in one of four [`Layout`]s plus the sidecars `synth.jsonl`
//!   (one [`SidecarRecord`] per item) and `synth.json` ([`SynthSummary`]), all-or-nothing.
//! - [`render_pair`] / [`SynthPlan::render_pair`] give one [`SynthPair`] in memory
//!   ([`SynthPlan::render_pair_timed`] also the time of each stage, for `flipstream bench synth`).
//!
//! Same [`SynthConfig`] ⇒ byte-identical output, whatever the number of threads: every item is
//! drawn from RNG streams keyed by `(seed, index)`.

mod caption;
mod config;
mod dirt;
mod encode;
mod error;
mod output;
mod pair;
mod plan;
mod raster;
mod rng;
mod scene;
mod sidecar;

use std::path::Path;
use std::sync::mpsc::sync_channel;

use flipstream_shard::progress::Progress;
use rayon::prelude::*;

pub use config::{DirtMix, Layout, MAX_COUNT, SizeMix, SynthConfig};
pub use dirt::{DirtKind, IngestOutcome, UnknownDirtKind};
pub use error::SynthError;
pub use output::{Overwrite, URL_LIST_FILE};
pub use pair::{FileFormat, StageTimes, SynthPair};
pub use plan::SynthPlan;
pub use scene::{Background, Color, Labels, Position, Shape, SizeClass};
pub use sidecar::{
    Location, SIDECAR_FILE, SUMMARY_FILE, SUMMARY_FORMAT, SidecarRecord, SynthSummary,
};

use output::{LayoutWriter, Staging};
use sidecar::{SidecarWriter, Tally};

/// Items rendered per parallel batch (the writer works on one batch while the next renders).
const BATCH: u64 = 128;

/// Renders item `index` of the dataset `config` describes, in memory.
///
/// Builds a [`SynthPlan`] first (cost grows with the number of dirty items); to render many items
/// of one configuration, build the plan once and call [`SynthPlan::render_pair`].
pub fn render_pair(config: &SynthConfig, index: u64) -> Result<SynthPair, SynthError> {
    SynthPlan::new(config)?.render_pair(index)
}

/// Generates the dataset into the folder `out`.
///
/// `out` must not exist or be empty, unless `overwrite` is [`Overwrite::Replace`]. Everything is
/// written into a temporary sibling folder that replaces `out` only at the end, so a failed run
/// leaves `out` as it was. `progress` counts the items written.
pub fn generate(
    config: &SynthConfig,
    out: &Path,
    overwrite: Overwrite,
    progress: &dyn Progress,
) -> Result<SynthSummary, SynthError> {
    let plan = SynthPlan::new(config)?;
    let staging = Staging::begin(out, overwrite)?;
    let summary = write_all(&plan, staging.path(), progress);
    progress.finish();
    let summary = summary?;
    staging.commit()?;
    Ok(summary)
}

fn write_all(
    plan: &SynthPlan,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<SynthSummary, SynthError> {
    let config = plan.config();
    let mut writer = LayoutWriter::new(config, dir)?;
    let mut sidecar = SidecarWriter::create(dir)?;
    let mut tally = Tally::default();
    progress.set_total(config.count);
    let (tx, rx) = sync_channel::<Vec<SynthPair>>(2);
    // Rendering stays on the calling thread, so it uses the caller's rayon pool; a helper thread
    // writes batches in order while the next one renders.
    std::thread::scope(|scope| -> Result<(), SynthError> {
        let writing = scope.spawn(|| -> Result<(), SynthError> {
            for batch in rx {
                for pair in batch {
                    let location = writer.write(&pair)?;
                    sidecar.write(&SidecarRecord::new(&pair, location))?;
                    tally.add(&pair);
                    progress.advance(1);
                }
            }
            Ok(())
        });
        let mut rendered = Ok(());
        let mut start = 0;
        while start < config.count {
            let end = (start + BATCH).min(config.count);
            match (start..end)
                .into_par_iter()
                .map(|i| plan.render_pair(i))
                .collect()
            {
                Ok(batch) => {
                    if tx.send(batch).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    rendered = Err(e);
                    break;
                }
            }
            start = end;
        }
        drop(tx);
        let wrote = writing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        wrote.and(rendered)
    })?;
    let written = writer.finish()?;
    let sidecar_bytes = sidecar.finish()?;
    let summary = SynthSummary {
        format: SUMMARY_FORMAT.to_string(),
        flipstream_version: env!("CARGO_PKG_VERSION").to_string(),
        seed: config.seed,
        config: config.clone(),
        items: tally.items,
        clean: tally.clean,
        dirt: tally.dirt,
        dirt_skipped: tally.dirt_skipped,
        formats: tally.formats,
        data_files: written.data_files,
        loose_files: written.loose_files,
        image_bytes: tally.image_bytes,
        caption_bytes: tally.caption_bytes,
        total_bytes: written.bytes + sidecar_bytes,
    };
    let path = dir.join(SUMMARY_FILE);
    let mut json = serde_json::to_vec_pretty(&summary).map_err(|source| SynthError::Json {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    std::fs::write(&path, json).map_err(SynthError::io(&path))?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
