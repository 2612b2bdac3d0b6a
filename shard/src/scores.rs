//! Score sidecars: per-row model scores stored *beside* a dataset, never in its shards.
//!
//! `flipstream score` writes, for every committed unit, `scores/<name>/<unit>.parquet` with the
//! columns `key` and `clip_score` ([`flipstream_schemas::score_schema`]; with `--embeddings` also
//! each row's normalised `image_embedding` and `text_embedding`), and once
//! `scores/<name>/_score.json` ([`ScoreManifest`]: which run, checkpoint and weights scored which
//! dataset). A unit's file is written in one upload after all its rows are scored, so its
//! presence is its commit: a scoring run that stops is resumed by scoring the units without a
//! file. Any tool reads the sidecar with a join on `key`:
//!
//! ```sql
//! SELECT s.*, c.clip_score FROM 'ds/shards/*.parquet' s JOIN 'ds/scores/clip/*.parquet' c USING (key)
//! ```
//!
//! [`ScoreSidecar`] is both sides: [`ScoreSidecar::create_or_resume`] and
//! [`ScoreSidecar::write_unit`] for the scorer; [`ScoreSidecar::find`],
//! [`ScoreSidecar::read_unit`] and [`ScoreSidecar::read_all`] for `shard filter` and the stats
//! report.

use std::collections::{BTreeSet, HashMap};

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray,
};
use arrow::datatypes::Float32Type;
use bytes::Bytes;
use flipstream_schemas::records::SCORE_FORMAT;
use flipstream_schemas::{
    CLIP_SCORE_COLUMN, FileEntry, FileKind, SCHEMA_VERSION, ScoreManifest, columns, layout,
    score_schema, score_schema_with_embeddings,
};
use std::sync::Arc;

use crate::dataset::{Dataset, parse_json};
use crate::error::{Result, ShardError};
use crate::reader::ShardReader;
use crate::store::StoreRoot;
use crate::writer::{ParquetFile, WriterSettings};

/// Each row's L2-normalised embeddings, row-major (`dim` values per row), for a sidecar made
/// with [`ScoreManifest::with_embeddings`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitEmbeddings {
    /// Image embeddings.
    pub image: Vec<f32>,
    /// Caption embeddings.
    pub text: Vec<f32>,
}

/// The name `flipstream score` gives a sidecar unless told otherwise.
pub const DEFAULT_NAME: &str = "clip";

/// One score sidecar of a dataset.
#[derive(Debug, Clone)]
pub struct ScoreSidecar {
    root: StoreRoot,
    manifest: ScoreManifest,
}

/// Every score of a sidecar over a dataset's committed units.
#[derive(Debug, Clone, Default)]
pub struct ScoreColumn {
    /// The scores, unit by unit in canonical order.
    pub scores: Vec<f32>,
    /// Committed units without a score file (scoring not finished).
    pub units_missing: Vec<String>,
    /// Accepted rows of the units that have a file but no score (images the scorer could not
    /// decode).
    pub rows_unscored: u64,
}

/// A sidecar name must be a path-safe folder name.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "score name {name:?} must be 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
        ))
    }
}

/// A request about scores that this dataset cannot satisfy (no sidecar, several, another
/// dataset's, another model's).
fn request(root: &StoreRoot, detail: String) -> ShardError {
    ShardError::ScoresRequest {
        url: root.url().to_string(),
        detail,
    }
}

impl ScoreSidecar {
    /// Names of the dataset's sidecars (folders under `scores/` with a `_score.json`), sorted.
    pub async fn names(root: &StoreRoot) -> Result<Vec<String>> {
        let mut names: Vec<String> = root
            .list(layout::SCORES_DIR)
            .await?
            .into_iter()
            .filter_map(|o| {
                let path = o.location.to_string();
                let rest = path.strip_prefix(layout::SCORES_DIR)?.strip_prefix('/')?;
                let (name, file) = rest.split_once('/')?;
                (file == "_score.json").then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The sidecar `name` of `ds`, `None` when there is none. A manifest that is not a score
    /// manifest, or that scored another dataset, is an error.
    pub async fn open(ds: &Dataset, name: &str) -> Result<Option<Self>> {
        check_name(name).map_err(|d| request(ds.root(), d))?;
        let path = layout::score_manifest_path(name);
        let Some(bytes) = ds.root().get_opt(&path).await? else {
            return Ok(None);
        };
        let manifest: ScoreManifest = parse_json(ds.root(), &path, &bytes)?;
        let bad = |detail: String| ShardError::BadRecord {
            path: ds.root().location(&path),
            detail,
        };
        if manifest.format != SCORE_FORMAT || manifest.schema_version != SCHEMA_VERSION {
            return Err(bad(format!(
                "format {:?} version {}, expected {SCORE_FORMAT:?} version {SCHEMA_VERSION}",
                manifest.format, manifest.schema_version
            )));
        }
        if manifest.dataset_fingerprint != ds.manifest().config_fingerprint {
            return Err(request(
                ds.root(),
                format!(
                    "the scores in {} are of another dataset (fingerprint {}, this one {}); \
                     score this dataset again",
                    layout::score_manifest_path(name),
                    manifest.dataset_fingerprint,
                    ds.manifest().config_fingerprint
                ),
            ));
        }
        Ok(Some(Self {
            root: ds.root().clone(),
            manifest,
        }))
    }

    /// The sidecar `name`, or without a name the dataset's only one; a clear error when there
    /// is none or (without a name) several.
    pub async fn find(ds: &Dataset, name: Option<&str>) -> Result<Self> {
        let names = Self::names(ds.root()).await?;
        let chosen = match (name, names.as_slice()) {
            (Some(n), _) => n.to_string(),
            (None, [only]) => only.clone(),
            (None, []) => {
                return Err(request(
                    ds.root(),
                    "it has no scores (nothing under scores/): compute them first with \
                     `flipstream score DATASET --run RUN`"
                        .into(),
                ));
            }
            (None, several) => {
                return Err(request(
                    ds.root(),
                    format!(
                        "it has several score sidecars ({}); choose one with --scores NAME",
                        several.join(", ")
                    ),
                ));
            }
        };
        Self::open(ds, &chosen).await?.ok_or_else(|| {
            request(
                ds.root(),
                format!(
                    "it has no scores named {chosen:?} (it has: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
    }

    /// Opens the sidecar of `manifest.name` for writing: creates its manifest, or checks that the
    /// existing one describes the same scoring (same dataset, weights and image size), so that a
    /// re-run adds only the missing units. Another model's sidecar of the same name is refused.
    pub async fn create_or_resume(ds: &Dataset, manifest: ScoreManifest) -> Result<Self> {
        check_name(&manifest.name).map_err(|d| request(ds.root(), d))?;
        if let Some(existing) = Self::open(ds, &manifest.name).await? {
            if existing.manifest.same_scoring(&manifest) {
                return Ok(existing);
            }
            let had = existing.manifest.embedding_dim;
            if existing.manifest.model.fingerprint == manifest.model.fingerprint
                && had != manifest.embedding_dim
            {
                return Err(request(
                    ds.root(),
                    format!(
                        "scores/{} was made {} --embeddings; give another --name, or the same \
                         flag as before",
                        manifest.name,
                        if had.is_some() { "with" } else { "without" }
                    ),
                ));
            }
            let m = &existing.manifest.model;
            return Err(request(
                ds.root(),
                format!(
                    "scores/{} already holds scores of another model ({} {}, step {}, image size \
                     {}); give another --name, or delete scores/{} to replace them",
                    manifest.name,
                    m.run,
                    m.checkpoint,
                    m.step,
                    existing.manifest.image_size,
                    manifest.name
                ),
            ));
        }
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| request(ds.root(), format!("serialising the score manifest: {e}")))?;
        let path = layout::score_manifest_path(&manifest.name);
        if !ds.root().put_if_absent(&path, Bytes::from(text)).await? {
            // another scoring created it first: theirs decides, as if it had been there before
            return Box::pin(Self::create_or_resume(ds, manifest)).await;
        }
        Ok(Self {
            root: ds.root().clone(),
            manifest,
        })
    }

    /// What the sidecar holds and how it was made.
    pub fn manifest(&self) -> &ScoreManifest {
        &self.manifest
    }

    /// The sidecar's folder, relative to the dataset root.
    pub fn dir(&self) -> String {
        format!("{}/{}", layout::SCORES_DIR, self.manifest.name)
    }

    /// Units that have a score file.
    pub async fn scored_units(&self) -> Result<BTreeSet<String>> {
        let name = &self.manifest.name;
        Ok(self
            .root
            .list(&self.dir())
            .await?
            .into_iter()
            .filter_map(|o| {
                let path = o.location.to_string();
                layout::unit_of_score_path(name, &path).map(str::to_string)
            })
            .collect())
    }

    /// Writes one unit's scores (one row per key, in the given order) as one upload, with the
    /// rows' embeddings when the sidecar stores them (`embeddings` must then be given).
    pub async fn write_unit(
        &self,
        unit: &str,
        keys: Vec<String>,
        scores: Vec<f32>,
        embeddings: Option<UnitEmbeddings>,
    ) -> Result<FileEntry> {
        let path = layout::score_unit_path(&self.manifest.name, unit);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(keys)),
            Arc::new(Float32Array::from(scores)),
        ];
        let schema = match (self.manifest.embedding_dim, embeddings) {
            (None, None) => score_schema(),
            (Some(dim), Some(e)) => {
                let dim = dim as i32;
                for values in [e.image, e.text] {
                    let list = FixedSizeListArray::try_new(
                        columns::embedding_item(),
                        dim,
                        Arc::new(Float32Array::from(values)),
                        None,
                    )
                    .map_err(|e| ShardError::arrow("building an embedding column", e))?;
                    columns.push(Arc::new(list));
                }
                score_schema_with_embeddings(dim)
            }
            (dim, _) => {
                return Err(request(
                    &self.root,
                    format!(
                        "unit {unit}: the sidecar {} embeddings, the scores came {}",
                        if dim.is_some() { "stores" } else { "stores no" },
                        if dim.is_some() { "without" } else { "with" }
                    ),
                ));
            }
        };
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| ShardError::arrow("building a score batch", e))?;
        let settings = WriterSettings {
            row_group_rows: 1 << 20,
            ..WriterSettings::default()
        };
        let mut file =
            ParquetFile::create(&self.root, &path, schema, FileKind::Scores, unit, &settings)?;
        file.write(&batch).await?;
        file.finish_file().await
    }

    /// One unit's scores by key; `None` when the unit has no score file.
    pub async fn read_unit(&self, unit: &str) -> Result<Option<HashMap<String, f32>>> {
        let path = layout::score_unit_path(&self.manifest.name, unit);
        let Some(meta) = self.root.head(&path).await? else {
            return Ok(None);
        };
        let reader = ShardReader::open(&self.root, &path, Some(meta.size)).await?;
        let mut out = HashMap::new();
        for rg in 0..reader.num_row_groups() {
            let batch = reader
                .read_row_group(rg, Some(&[columns::KEY, CLIP_SCORE_COLUMN]))
                .await?;
            let bad = |detail: &str| ShardError::BadRecord {
                path: self.root.location(&path),
                detail: detail.to_string(),
            };
            let keys = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| bad("`key` is not utf8"))?;
            let scores = batch
                .column(1)
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad("`clip_score` is not float32"))?;
            for i in 0..batch.num_rows() {
                if !keys.is_null(i) && !scores.is_null(i) {
                    out.insert(keys.value(i).to_string(), scores.value(i));
                }
            }
        }
        Ok(Some(out))
    }

    /// Committed units of `ds` without a score file, in canonical order (one listing, no file
    /// read).
    pub async fn missing_units(&self, ds: &Dataset) -> Result<Vec<String>> {
        let scored = self.scored_units().await?;
        Ok(ds
            .commits()
            .iter()
            .map(|c| &c.unit.id)
            .filter(|id| !scored.contains(*id))
            .cloned()
            .collect())
    }

    /// Every score over the committed units of `ds` (the dataset this sidecar scored).
    pub async fn read_all(&self, ds: &Dataset) -> Result<ScoreColumn> {
        let missing: BTreeSet<String> = self.missing_units(ds).await?.into_iter().collect();
        let mut out = ScoreColumn::default();
        for record in ds.commits() {
            let id = &record.unit.id;
            if missing.contains(id) {
                out.units_missing.push(id.clone());
                continue;
            }
            let unit = self.read_unit(id).await?.unwrap_or_default();
            out.rows_unscored += record.counts.accepted.saturating_sub(unit.len() as u64);
            out.scores.extend(unit.into_values());
        }
        Ok(out)
    }
}

/// The score at or above which the top `fraction` of `scores` lie (the `1 - fraction` quantile,
/// nearest rank): keeping `score >= threshold` keeps `ceil(fraction · n)` rows, more on ties.
/// `None` for no scores or a fraction outside (0, 1].
pub fn top_fraction_threshold(scores: &[f32], fraction: f64) -> Option<f32> {
    if scores.is_empty() || !(fraction > 0.0 && fraction <= 1.0) {
        return None;
    }
    let mut sorted: Vec<f32> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| b.total_cmp(a));
    // ceil(F·n) without float drift: 0.07 · 100 is 7.000000000000001 in binary
    let keep = ((fraction * sorted.len() as f64 - 1e-9).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[keep - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_safe() {
        for ok in ["clip", "clip-step800", "a.b_c"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_top_fraction_threshold_keeps_that_many_rows() {
        let scores = [0.1, 0.5, 0.3, 0.2, 0.4, 0.6, 0.0, 0.7, 0.9, 0.8];
        assert_eq!(top_fraction_threshold(&scores, 0.3), Some(0.7));
        assert_eq!(top_fraction_threshold(&scores, 1.0), Some(0.0));
        assert_eq!(top_fraction_threshold(&scores, 0.01), Some(0.9));
        let hundred: Vec<f32> = (0..100).map(|i| i as f32).collect();
        assert_eq!(
            top_fraction_threshold(&hundred, 0.07),
            Some(93.0),
            "7 rows, not 8"
        );
        assert_eq!(top_fraction_threshold(&scores, 0.0), None);
        assert_eq!(top_fraction_threshold(&[], 0.5), None);
        let kept = scores.iter().filter(|&&s| s >= 0.7).count();
        assert_eq!(kept, 3);
    }
}
