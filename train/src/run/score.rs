//! CLIP scores of a dataset (`flipstream score`): for every accepted row, the cosine similarity
//! of its image and caption embeddings under a checkpoint, written to a score sidecar beside the
//! dataset ([`flipstream_shard::scores`]), never into its shards.
//!
//! Rows are read unit by unit with the loader in evaluation mode (shortest-side resize and centre
//! crop at the model's image size, every patch, captions tokenized with the run's tokenizer),
//! encoded in batches on the trainer's device, and each unit's scores (with `embeddings`, also
//! each row's normalised image and caption embeddings, for retrieval indexes and semantic dedup)
//! are uploaded in one file once the unit is done. That file is the unit's commit: a stopped
//! scoring resumes with the units that have none, and refuses a sidecar of the same name made
//! with other weights.
//!
//! The loader replaces a sample it cannot decode by another of the same batch; such a row gets no
//! score (its key is missing from the file) and is counted as `rows_unscored`. A unit with a row
//! group the loader could not read at all (the store kept failing, the shard vanished, its bytes
//! are damaged) gets no file: it is listed in `units_failed`, and a re-run scores it again.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use flipstream_loader::{Loader, LoaderConfig, Mode, Rank, SplitSelection, Start};
use flipstream_schemas::{CommitRecord, ScoreManifest, ScoreModel};
use flipstream_shard::progress::Progress;
use flipstream_shard::scores::{ScoreColumn, ScoreSidecar, UnitEmbeddings};
use flipstream_shard::{Dataset, ShardError};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{Result, TorchContext, TrainError};
use crate::step::TrainStep;

/// What to score, and how.
#[derive(Debug, Clone)]
pub struct ScoreRequest<'a> {
    /// The dataset (path or URL).
    pub dataset: &'a str,
    /// The sidecar's name (its folder under `scores/`).
    pub name: &'a str,
    /// The checkpoint the trainer holds.
    pub model: ScoreModel,
    /// The run's `tokenizer.json`.
    pub tokenizer: &'a Path,
    /// Rows encoded at once.
    pub batch_size: usize,
    /// Decode threads of the loader (0: one per core).
    pub decode_threads: usize,
    /// Also store each row's normalised image and caption embeddings in the sidecar.
    pub embeddings: bool,
}

/// Quantiles of a sidecar's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreQuantiles {
    /// Mean score.
    pub mean: f64,
    /// 5th percentile.
    pub p05: f32,
    /// 25th percentile.
    pub p25: f32,
    /// Median.
    pub p50: f32,
    /// 75th percentile.
    pub p75: f32,
    /// 95th percentile.
    pub p95: f32,
}

impl ScoreQuantiles {
    /// Nearest-rank quantiles of `scores`; `None` when there are none.
    pub fn of(scores: &[f32]) -> Option<Self> {
        if scores.is_empty() {
            return None;
        }
        let mut sorted = scores.to_vec();
        sorted.sort_by(f32::total_cmp);
        let at = |q: f64| {
            sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
        };
        let mean = sorted.iter().map(|&s| f64::from(s)).sum::<f64>() / sorted.len() as f64;
        Some(Self {
            mean,
            p05: at(0.05),
            p25: at(0.25),
            p50: at(0.5),
            p75: at(0.75),
            p95: at(0.95),
        })
    }
}

/// A unit that could not be scored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailedUnit {
    /// The unit id.
    pub unit: String,
    /// What the loader reported.
    pub reason: String,
}

/// What a scoring run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    /// The dataset.
    pub dataset: String,
    /// The sidecar's folder, relative to the dataset root.
    pub scores: String,
    /// The scoring checkpoint.
    pub model: ScoreModel,
    /// Width of the stored embeddings (`--embeddings`), if the sidecar has them.
    pub embedding_dim: Option<u32>,
    /// Committed units of the dataset.
    pub units_planned: usize,
    /// Of those, scored before this run.
    pub units_skipped: usize,
    /// Scored by this run.
    pub units_scored: usize,
    /// Units this run could not score (a row group could not be read): no file is written for
    /// them, so a re-run scores them again.
    pub units_failed: Vec<FailedUnit>,
    /// Rows scored by this run.
    pub rows_scored: u64,
    /// Rows in the whole sidecar.
    pub rows_total: u64,
    /// Accepted rows of the scored units without a score (images that could not be decoded).
    pub rows_unscored: u64,
    /// Rows per second of this run.
    pub rows_per_s: f64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Quantiles of every score in the sidecar.
    pub quantiles: Option<ScoreQuantiles>,
    /// What the loaders reported (row groups lost, samples substituted), one line each; the
    /// caller shows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loader_notices: Vec<String>,
}

fn dataset_error(context: String) -> impl FnOnce(ShardError) -> TrainError {
    move |source| TrainError::Dataset {
        context,
        source: Box::new(source),
    }
}

/// Scores every committed unit of `request.dataset` that the sidecar lacks (see the module docs).
pub fn score_dataset(
    trainer: &TrainStep,
    request: &ScoreRequest<'_>,
    progress: &dyn Progress,
) -> Result<ScoreSummary> {
    let started = Instant::now();
    if !trainer.config().objective.kind().aligns_text() {
        return Err(TrainError::Request(format!(
            "the run's objective ({}) trains no text tower into the image space, so it has no \
             image-caption similarity to score with; use a CLIP, FLIP or MAE+CLIP run",
            trainer.config().objective.kind().name()
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Request(format!("starting the I/O runtime: {e}")))?;
    let url = request.dataset;
    let ds = runtime
        .block_on(Dataset::open(url))
        .map_err(dataset_error(format!("opening {url}")))?;
    let mut manifest = ScoreManifest::new(
        request.name,
        &ds.manifest().config_fingerprint,
        request.model.clone(),
        trainer.config().model.image_size as u32,
    );
    if request.embeddings {
        manifest = manifest.with_embeddings(trainer.config().model.embed_dim as u32);
    }
    let sidecar = runtime
        .block_on(ScoreSidecar::create_or_resume(&ds, manifest))
        .map_err(dataset_error(format!(
            "preparing scores/{} of {url}",
            request.name
        )))?;
    let done = runtime
        .block_on(sidecar.scored_units())
        .map_err(dataset_error(format!("listing {}", sidecar.dir())))?;
    let todo: Vec<&CommitRecord> = ds
        .commits()
        .iter()
        .filter(|c| !done.contains(&c.unit.id))
        .collect();
    progress.set_total(todo.iter().map(|c| c.counts.accepted).sum());
    let mut rows_scored = 0;
    let mut units_failed = Vec::new();
    let mut loader_notices = Vec::new();
    for record in &todo {
        let (keys, scores, embeddings) = match score_unit(trainer, &ds, record, request, progress)?
        {
            UnitScores::Scored(rows) => {
                loader_notices.extend(rows.notices);
                (rows.keys, rows.scores, rows.embeddings)
            }
            UnitScores::Failed(reason) => {
                units_failed.push(FailedUnit {
                    unit: record.unit.id.clone(),
                    reason,
                });
                continue;
            }
        };
        rows_scored += keys.len() as u64;
        runtime
            .block_on(sidecar.write_unit(&record.unit.id, keys, scores, embeddings))
            .map_err(dataset_error(format!(
                "writing the scores of unit {}",
                record.unit.id
            )))?;
    }
    progress.finish();
    let all: ScoreColumn = runtime
        .block_on(sidecar.read_all(&ds))
        .map_err(dataset_error(format!("reading {}", sidecar.dir())))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(ScoreSummary {
        dataset: ds.root().url().to_string(),
        scores: sidecar.dir(),
        model: request.model.clone(),
        embedding_dim: sidecar.manifest().embedding_dim,
        units_planned: ds.commits().len(),
        units_skipped: ds.commits().len() - todo.len(),
        units_scored: todo.len() - units_failed.len(),
        units_failed,
        rows_scored,
        rows_total: all.scores.len() as u64,
        rows_unscored: all.rows_unscored,
        rows_per_s: rows_scored as f64 / elapsed_s.max(1e-9),
        elapsed_s,
        quantiles: ScoreQuantiles::of(&all.scores),
        loader_notices,
    })
}

/// The scored rows of a unit, in the loader's evaluation order, each key once.
#[derive(Default)]
struct ScoredRows {
    keys: Vec<String>,
    scores: Vec<f32>,
    /// With [`ScoreRequest::embeddings`].
    embeddings: Option<UnitEmbeddings>,
    /// What the unit's loader reported (samples substituted).
    notices: Vec<String>,
}

/// What scoring one unit gave.
enum UnitScores {
    /// Its rows.
    Scored(ScoredRows),
    /// A row group could not be read (the store kept failing, the shard vanished or its bytes
    /// are damaged): nothing is written for the unit, so a re-run scores it again.
    Failed(String),
}

/// Scores one unit's rows (see [`UnitScores`]).
fn score_unit(
    trainer: &TrainStep,
    ds: &Dataset,
    record: &CommitRecord,
    request: &ScoreRequest<'_>,
    progress: &dyn Progress,
) -> Result<UnitScores> {
    let mut rows = ScoredRows {
        embeddings: request.embeddings.then(UnitEmbeddings::default),
        ..ScoredRows::default()
    };
    if record.counts.accepted == 0 {
        return Ok(UnitScores::Scored(rows));
    }
    let view = Dataset::from_parts(
        ds.root().clone(),
        ds.manifest().clone(),
        vec![record.clone()],
    );
    let model = &trainer.config().model;
    let config = LoaderConfig {
        mode: Mode::Eval,
        split: SplitSelection::All,
        batch_size: request.batch_size,
        image_size: model.image_size as u32,
        tokenizer: Some(request.tokenizer.to_path_buf()),
        context_length: model.context_length,
        decode_threads: request.decode_threads,
        io_threads: 1,
        ..LoaderConfig::default()
    };
    let mut loader = Loader::from_dataset(&view, None, config, Rank::SINGLE, Start::Epoch(0))
        .map_err(|source| TrainError::Loader {
            context: format!("unit {} of {}", record.unit.id, request.dataset),
            source: Box::new(source),
        })?;
    let mut seen = HashSet::new();
    for batch in loader.by_ref() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => return Ok(UnitScores::Failed(e.to_string())),
        };
        let n = batch.len() as u64;
        let encoded = encode_batch(trainer, &batch)?;
        let scores = cosine(&encoded.0, &encoded.1)?;
        let vectors = rows
            .embeddings
            .is_some()
            .then(|| Ok::<_, TrainError>((host_rows(&encoded.0)?, host_rows(&encoded.1)?)))
            .transpose()?;
        for (i, (key, score)) in batch.keys.into_iter().zip(scores).enumerate() {
            // a substituted slot repeats its substitute's key: score each row once
            if !seen.insert(key.clone()) {
                continue;
            }
            rows.keys.push(key);
            rows.scores.push(score);
            if let (Some(e), Some((image, text))) = (rows.embeddings.as_mut(), &vectors) {
                e.image.extend_from_slice(&image[i]);
                e.text.extend_from_slice(&text[i]);
            }
        }
        progress.advance(n);
    }
    rows.notices = loader.take_notices();
    let lost = loader.stats().units_lost;
    if lost > 0 {
        return Ok(UnitScores::Failed(format!(
            "{lost} row groups could not be read: {}",
            rows.notices.join("; ")
        )));
    }
    Ok(UnitScores::Scored(rows))
}

/// The normalised image and caption embeddings `[B, E]` of every sample of a loader batch.
fn encode_batch(trainer: &TrainStep, batch: &flipstream_loader::Batch) -> Result<(Tensor, Tensor)> {
    let n = batch.len() as i64;
    let (h, w) = (i64::from(batch.height), i64::from(batch.width));
    let images = Tensor::from_slice(&batch.images)
        .f_view([n, h, w, 3])
        .context(|| "score images".into())?;
    let tokens = batch
        .tokens
        .as_deref()
        .ok_or_else(|| TrainError::Request("the score loader returned no tokens".into()))?;
    let tokens = Tensor::from_slice(tokens)
        .f_view([n, batch.context_length as i64])
        .context(|| "score tokens".into())?;
    Ok((
        trainer.encode_images(&images)?,
        trainer.encode_texts(&tokens)?,
    ))
}

/// The rows of `[B, E]` embeddings on the CPU.
fn host_rows(embeddings: &Tensor) -> Result<Vec<Vec<f32>>> {
    let host = embeddings
        .f_to_device(tch::Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .context(|| "copying embeddings to the host".into())?;
    Vec::<Vec<f32>>::try_from(&host).context(|| "reading embeddings".into())
}

/// Row-wise cosine similarity of two batches of L2-normalised embeddings, on the CPU.
fn cosine(images: &Tensor, texts: &Tensor) -> Result<Vec<f32>> {
    let sims = (images * texts)
        .f_sum_dim_intlist(1, false, Kind::Float)
        .and_then(|t| t.f_to_device(tch::Device::Cpu))
        .context(|| "image-caption similarities".into())?;
    Vec::<f32>::try_from(&sims).context(|| "reading similarities".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let q = ScoreQuantiles::of(&scores).unwrap();
        assert_eq!((q.p05, q.p50, q.p95), (0.05, 0.5, 0.95));
        assert!((q.mean - 0.5).abs() < 1e-9);
        assert!(ScoreQuantiles::of(&[]).is_none());
    }
}
