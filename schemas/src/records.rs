//! JSON records of a dataset: the manifest, the per-unit commit record and the split view (with
//! its optional compositional hold-out, [`Holdout`] and [`choose_holdout`]).
//!
//! All records carry a `format` tag and the schema version so that a stray JSON file is never
//! mistaken for one of ours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{RejectReason, SCHEMA_VERSION};

/// `format` tag of [`DatasetManifest`].
pub const MANIFEST_FORMAT: &str = "flipstream-dataset";
/// `format` tag of [`CommitRecord`].
pub const COMMIT_FORMAT: &str = "flipstream-commit";
/// `format` tag of [`SplitManifest`].
pub const SPLIT_FORMAT: &str = "flipstream-split";
/// `format` tag of [`ScoreManifest`].
pub const SCORE_FORMAT: &str = "flipstream-scores";
/// The column a score sidecar holds beside `key`.
pub const CLIP_SCORE_COLUMN: &str = "clip_score";
/// A score sidecar's column of normalised image embeddings (`flipstream score --embeddings`).
pub const IMAGE_EMBEDDING_COLUMN: &str = "image_embedding";
/// A score sidecar's column of normalised caption embeddings (`flipstream score --embeddings`).
pub const TEXT_EMBEDDING_COLUMN: &str = "text_embedding";

/// Describes how a dataset was made. Written once, by the first worker to start; every later
/// worker (or re-run) checks that its own configuration has the same fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// Program and version (`flipstream 0.1.0`).
    pub created_by: String,
    /// Hex fingerprint of the resolved configuration that determines the dataset's content.
    pub config_fingerprint: String,
    /// The resolved configuration (ingest options and inputs), for people and for re-runs.
    pub config: serde_json::Value,
}

impl DatasetManifest {
    /// A manifest for `config`, stamped now.
    pub fn new(config_fingerprint: String, config: serde_json::Value) -> Self {
        Self {
            format: MANIFEST_FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            created_at: now_rfc3339(),
            created_by: crate::metadata::writer_id(),
            config_fingerprint,
            config,
        }
    }
}

/// A deterministic unit of work: one input file, or a slice `[start, end)` of its items.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// Path-safe id, unique in the dataset (see [`crate::layout::sanitize_unit_id`]).
    pub id: String,
    /// URI of the input (local path or object store URL).
    pub source: String,
    /// Source kind: `webdataset`, `parquet`, `folder`, `url_list`.
    pub kind: String,
    /// First item (row, file, member) of the slice, when the unit is a slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// One past the last item of the slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

/// A written file with its size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
}

/// A written shard: a [`FileEntry`] plus what readers need to plan without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
    /// Rows in each row group, in order (sums to `rows`).
    pub row_groups: Vec<u64>,
    /// Sum of the encoded image sizes stored in the shard.
    pub image_bytes: u64,
    /// Per row group, the checksum of its `image` values ([`crate::checksum`]): what a reader of
    /// one row group checks its image bytes against. Empty in records written before it existed
    /// (and never written then), so those read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_checksums: Vec<String>,
}

/// What happened to the items of a unit. Invariant: `accepted + rejected == read` and the
/// per-reason counts sum to `rejected` ([`UnitCounts::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitCounts {
    /// Items read from the source.
    pub read: u64,
    /// Items written to shards.
    pub accepted: u64,
    /// Items written to the rejection file.
    pub rejected: u64,
    /// Rejections per reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Bytes of source images read (downloaded or read from files).
    pub input_bytes: u64,
}

impl UnitCounts {
    /// Records one rejection.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejected += 1;
        *self
            .rejected_by_reason
            .entry(reason.code().to_string())
            .or_insert(0) += 1;
    }

    /// Adds another unit's counts.
    pub fn merge(&mut self, other: &UnitCounts) {
        self.read += other.read;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.input_bytes += other.input_bytes;
        for (k, v) in &other.rejected_by_reason {
            *self.rejected_by_reason.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Checks the accounting identity; the error says which side is off.
    pub fn check(&self) -> Result<(), String> {
        if self.accepted + self.rejected != self.read {
            return Err(format!(
                "accepted ({}) + rejected ({}) != read ({})",
                self.accepted, self.rejected, self.read
            ));
        }
        let by_reason: u64 = self.rejected_by_reason.values().sum();
        if by_reason != self.rejected {
            return Err(format!(
                "rejections by reason sum to {by_reason}, rejected is {}",
                self.rejected
            ));
        }
        Ok(())
    }
}

/// Who ran a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerInfo {
    /// `--worker-index`.
    pub index: u32,
    /// `--num-workers`.
    pub count: u32,
    /// Host name, when known.
    #[serde(default)]
    pub host: String,
}

/// Written after all of a unit's files: the unit is part of the dataset if and only if this
/// record exists. It names every file of the unit with size and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRecord {
    /// Always [`COMMIT_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// The unit.
    pub unit: UnitSpec,
    /// Fingerprint of the configuration the unit was made with (matches the manifest's).
    pub config_fingerprint: String,
    /// Shards in order. May be empty when every item was rejected.
    pub shards: Vec<ShardEntry>,
    /// The rejection file, absent when nothing was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejections: Option<FileEntry>,
    /// Item accounting.
    pub counts: UnitCounts,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Wall-clock seconds spent on the unit.
    pub elapsed_s: f64,
    /// The worker that ran it.
    pub worker: WorkerInfo,
    /// Present when the unit re-tried the transient failures of an earlier unit
    /// (`flipstream ingest --retry-failed`); absent for a unit read from its input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryInfo>,
}

/// What a retry unit re-tried. Its items are exactly the rejections of `of` that were transient
/// (`download_error`, HTTP 408/429/5xx), read again from the input and fetched again: each one is
/// now a shard row or a rejection row of the retry unit, and its rejection row in `of` is
/// *superseded*: it no longer counts. A rejection row of `of` is superseded when its key appears
/// in the retry unit (the keys of a unit are unique). Dataset totals ([`dataset_counts`]) subtract
/// the superseded rows, so `accepted + rejected = read` holds for the dataset as for each unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryInfo {
    /// The unit whose rejections were re-tried: the original unit (round 1) or the previous
    /// round's retry unit.
    pub of: String,
    /// The original unit (the input slice), the same for every round.
    pub origin: String,
    /// 1 for the first retry of `origin`, 2 for the retry of that retry, …
    pub round: u32,
    /// The superseded rejections of `of`, per reason (they sum to `counts.read`).
    pub superseded_by_reason: BTreeMap<String, u64>,
}

impl RetryInfo {
    /// Id of the retry unit of `origin` in `round`: `<origin>.retry<round>`.
    pub fn unit_id(origin: &str, round: u32) -> String {
        format!("{origin}.retry{round}")
    }
}

/// Dataset totals over committed units: the sum of their counts, less the rejections that retry
/// units superseded (see [`RetryInfo`]). `accepted + rejected = read` holds for the result.
pub fn dataset_counts<'a>(records: impl IntoIterator<Item = &'a CommitRecord>) -> UnitCounts {
    let mut total = UnitCounts::default();
    let mut superseded = BTreeMap::<String, u64>::new();
    for r in records {
        total.merge(&r.counts);
        if let Some(retry) = &r.retry {
            for (reason, n) in &retry.superseded_by_reason {
                *superseded.entry(reason.clone()).or_insert(0) += n;
            }
        }
    }
    for (reason, n) in superseded {
        total.read = total.read.saturating_sub(n);
        total.rejected = total.rejected.saturating_sub(n);
        if let Some(count) = total.rejected_by_reason.get_mut(&reason) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                total.rejected_by_reason.remove(&reason);
            }
        }
    }
    total
}

/// [`dataset_counts`] per original unit: each unit with its retry units, keyed by the original
/// unit's id (what a per-unit statistic should look at once failures were re-tried).
pub fn chain_counts(records: &[CommitRecord]) -> BTreeMap<&str, UnitCounts> {
    let mut chains = BTreeMap::<&str, Vec<&CommitRecord>>::new();
    for r in records {
        chains.entry(r.origin()).or_default().push(r);
    }
    chains
        .into_iter()
        .map(|(origin, chain)| (origin, dataset_counts(chain)))
        .collect()
}

impl CommitRecord {
    /// The original unit: this one, or for a retry unit the unit its items were first read in.
    pub fn origin(&self) -> &str {
        self.retry.as_ref().map_or(&self.unit.id, |r| &r.origin)
    }

    /// Rows over all shards.
    pub fn shard_rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    /// Checks internal consistency: format tag, version, counts identity, shard rows vs accepted,
    /// rejection rows vs rejected, row groups summing to rows.
    pub fn check(&self) -> Result<(), String> {
        if self.format != COMMIT_FORMAT {
            return Err(format!(
                "format is {:?}, expected {COMMIT_FORMAT:?}",
                self.format
            ));
        }
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema version {} is not supported (this build reads {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        self.counts.check()?;
        if self.shard_rows() != self.counts.accepted {
            return Err(format!(
                "shards hold {} rows but {} items were accepted",
                self.shard_rows(),
                self.counts.accepted
            ));
        }
        let rejection_rows = self.rejections.as_ref().map_or(0, |r| r.rows);
        if rejection_rows != self.counts.rejected {
            return Err(format!(
                "rejection file holds {rejection_rows} rows but {} items were rejected",
                self.counts.rejected
            ));
        }
        for s in &self.shards {
            let sum: u64 = s.row_groups.iter().sum();
            if sum != s.rows {
                return Err(format!(
                    "{}: row groups sum to {sum}, rows is {}",
                    s.path, s.rows
                ));
            }
            if !s.image_checksums.is_empty() && s.image_checksums.len() != s.row_groups.len() {
                return Err(format!(
                    "{}: {} image checksums for {} row groups",
                    s.path,
                    s.image_checksums.len(),
                    s.row_groups.len()
                ));
            }
        }
        if let Some(retry) = &self.retry {
            let superseded: u64 = retry.superseded_by_reason.values().sum();
            if superseded != self.counts.read {
                return Err(format!(
                    "retry of {} supersedes {superseded} rejections but read {} items",
                    retry.of, self.counts.read
                ));
            }
            let expected = RetryInfo::unit_id(&retry.origin, retry.round);
            if retry.round == 0 || self.unit.id != expected {
                return Err(format!(
                    "retry round {} of {} should be unit {expected}, not {}",
                    retry.round, retry.origin, self.unit.id
                ));
            }
        }
        Ok(())
    }
}

/// Which side of a train/validation split a row is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training rows.
    Train,
    /// Held-out rows.
    Val,
}

impl Split {
    /// `train` or `val`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// A train/validation split as a *view*: no data is copied. A row is in `val` when
/// [`SplitManifest::side_of`] says so: its label values form a held-out combination
/// ([`Holdout`]), or else [`split_of`] puts its key there. The per-row-group counts let loaders
/// plan equal shares without scanning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitManifest {
    /// Always [`SPLIT_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// Fraction of rows in validation, in [0, 1].
    pub val_fraction: f64,
    /// Seed of the key hash.
    pub seed: u64,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// Rows in train.
    pub train_rows: u64,
    /// Rows in val.
    pub val_rows: u64,
    /// Per shard and row group: rows on each side (held-out rows count as `val`).
    pub row_groups: Vec<SplitRowGroup>,
    /// Label-value combinations held out of training, when asked for. Absent in files without
    /// one (and never written then), so older files read and write unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<Holdout>,
}

impl SplitManifest {
    /// The side of a row with `key` and, when every holdout column has a value, those values
    /// (`labels`, in the order of [`Holdout::columns`]); see [`side_of`].
    pub fn side_of(&self, key: &str, labels: Option<&[&str]>) -> Split {
        side_of(
            key,
            labels,
            self.seed,
            self.val_fraction,
            self.holdout.as_ref(),
        )
    }

    /// The holdout's columns (none without a holdout): what a reader must read besides `key` to
    /// decide a row's side.
    pub fn holdout_columns(&self) -> &[String] {
        self.holdout.as_ref().map_or(&[], |h| h.columns.as_slice())
    }
}

/// A compositional hold-out: combinations of label values (e.g. `red` × `star`) whose rows are
/// all in validation, so that a model can be scored on combinations it never saw in training.
/// Every single value of a held-out combination still occurs in training, in other
/// combinations ([`choose_holdout`]).
///
/// Values are compared as text (label columns cast to Utf8); a row with a null value in any
/// holdout column is never held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// The label columns, in the order of each combination's values (at least two).
    pub columns: Vec<String>,
    /// Requested share of the distinct combinations to hold out, in (0, 1).
    pub fraction: f64,
    /// Distinct combinations (without nulls) the dataset holds.
    pub distinct_combos: u64,
    /// The held-out combinations, one value per column, sorted.
    pub combos: Vec<Vec<String>>,
    /// Rows with a held-out combination (all of them in validation).
    pub rows: u64,
}

impl Holdout {
    /// True when `values` (one per column, in column order) is a held-out combination.
    /// Relies on [`Holdout::combos`] being sorted, as `flipstream shard split` writes them.
    pub fn contains(&self, values: &[&str]) -> bool {
        self.combos
            .binary_search_by(|c| c.iter().map(String::as_str).cmp(values.iter().copied()))
            .is_ok()
    }
}

/// Why a holdout cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HoldoutError {
    /// The fraction is not strictly between 0 and 1.
    #[error("the holdout fraction must be between 0 and 1 (exclusive), got {0}")]
    Fraction(f64),
    /// Fewer than two columns, or a column named twice.
    #[error(
        "a holdout needs at least two distinct label columns (a combination of values is held \
         out, each value stays in training), got {0:?}"
    )]
    Columns(Vec<String>),
    /// Not enough combinations can be held out while every value keeps a training combination.
    #[error(
        "only {chosen} of the {wanted} wanted label combinations (of {distinct} distinct) can be \
         held out while every value keeps a combination in training; use a smaller fraction or \
         columns with more combinations"
    )]
    TooFew {
        /// Combinations that could be held out.
        chosen: usize,
        /// Combinations asked for: `round(fraction × distinct)`, at least 1.
        wanted: usize,
        /// Distinct combinations in the dataset.
        distinct: usize,
    },
}

/// Checks the holdout request: at least two distinct columns, a fraction in (0, 1).
pub fn validate_holdout(columns: &[String], fraction: f64) -> Result<(), HoldoutError> {
    let distinct: std::collections::BTreeSet<&String> = columns.iter().collect();
    if columns.len() < 2 || distinct.len() != columns.len() {
        return Err(HoldoutError::Columns(columns.to_vec()));
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(HoldoutError::Fraction(fraction));
    }
    Ok(())
}

/// Separator between the values of a combination when it is hashed.
pub const COMBO_SEPARATOR: char = '\u{1f}';

/// The hash ordering combinations for [`choose_holdout`]: `xxh3_64` of the values joined by
/// [`COMBO_SEPARATOR`] (U+001F), seeded with the split seed (Python:
/// `xxhash.xxh3_64_intdigest("\x1f".join(values).encode(), seed)`).
pub fn combo_hash(values: &[String], seed: u64) -> u64 {
    let joined = values.join(COMBO_SEPARATOR.encode_utf8(&mut [0; 4]));
    xxhash_rust::xxh3::xxh3_64_with_seed(joined.as_bytes(), seed)
}

/// Chooses the held-out combinations among the `distinct` combinations of a dataset
/// (duplicates are ignored): they are taken in the order of [`combo_hash`] (ties by value)
/// until `round(fraction × distinct)`, at least 1, are taken, skipping a combination when
/// holding it out would leave one of its values (per column) without any training
/// combination. Returns them sorted; an error when the fraction is out of range or too few
/// can be taken. Deterministic: same combinations, fraction and seed, same result.
pub fn choose_holdout(
    distinct: &[Vec<String>],
    fraction: f64,
    seed: u64,
) -> Result<Vec<Vec<String>>, HoldoutError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(HoldoutError::Fraction(fraction));
    }
    let unique: std::collections::BTreeSet<&Vec<String>> = distinct.iter().collect();
    let wanted = ((fraction * unique.len() as f64).round() as usize).max(1);
    // per (column, value): training combinations still holding it
    let mut in_training: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for combo in &unique {
        for (column, value) in combo.iter().enumerate() {
            *in_training.entry((column, value.as_str())).or_default() += 1;
        }
    }
    let mut order: Vec<(u64, &Vec<String>)> =
        unique.iter().map(|c| (combo_hash(c, seed), *c)).collect();
    order.sort();
    let mut chosen = Vec::with_capacity(wanted);
    for (_, combo) in order {
        if chosen.len() == wanted {
            break;
        }
        let keys: Vec<(usize, &str)> = combo
            .iter()
            .enumerate()
            .map(|(column, value)| (column, value.as_str()))
            .collect();
        if keys
            .iter()
            .all(|k| in_training.get(k).is_some_and(|&n| n > 1))
        {
            for k in &keys {
                if let Some(n) = in_training.get_mut(k) {
                    *n -= 1;
                }
            }
            chosen.push(combo.clone());
        }
    }
    if chosen.len() < wanted {
        return Err(HoldoutError::TooFew {
            chosen: chosen.len(),
            wanted,
            distinct: unique.len(),
        });
    }
    chosen.sort();
    Ok(chosen)
}

/// Row counts of one row group on each side of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitRowGroup {
    /// Shard path relative to the dataset root.
    pub shard: String,
    /// Row group index in the shard.
    pub row_group: u32,
    /// Rows in train.
    pub train: u64,
    /// Rows in val.
    pub val: u64,
}

/// The split a key belongs to: `val` when `(xxh3_64(key, seed) >> 11) / 2^53 < val_fraction`.
///
/// Stable across runs, machines and dataset sizes: adding data never moves an existing row, and
/// other tools reproduce it (Python: `xxhash.xxh3_64_intdigest(key, seed) >> 11`).
pub fn split_of(key: &str, seed: u64, val_fraction: f64) -> Split {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed);
    // 53 high bits → uniform in [0, 1)
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < val_fraction {
        Split::Val
    } else {
        Split::Train
    }
}

/// The side of a row: `val` when `labels` (its values in the holdout columns, `None` when one
/// is null) form a combination of `holdout`, otherwise [`split_of`]`(key, seed, val_fraction)`.
pub fn side_of(
    key: &str,
    labels: Option<&[&str]>,
    seed: u64,
    val_fraction: f64,
    holdout: Option<&Holdout>,
) -> Split {
    match (holdout, labels) {
        (Some(h), Some(values)) if h.contains(values) => Split::Val,
        _ => split_of(key, seed, val_fraction),
    }
}

/// A run's checkpoint, as what made a score sidecar (and an export, `flipstream_export.json`)
/// records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreModel {
    /// The run directory (path or URL) the checkpoint came from.
    pub run: String,
    /// The checkpoint's folder name (`step-00000800`).
    pub checkpoint: String,
    /// Optimizer steps of the checkpoint.
    pub step: u64,
    /// BLAKE3 of the checkpoint's weights file: the identity a resumed scoring checks.
    pub fingerprint: String,
}

/// Describes a score sidecar (`scores/<name>/_score.json`; the leading `_` keeps Parquet
/// readers of the folder from taking it for data): one Parquet file per committed unit
/// holding `key` and [`CLIP_SCORE_COLUMN`] (the cosine similarity of the row's image and caption
/// embeddings), and with `embedding_dim` the embeddings themselves, written by `flipstream
/// score`, never by rewriting the shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreManifest {
    /// Always [`SCORE_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// The sidecar's name (its folder under `scores/`).
    pub name: String,
    /// The score column (always [`CLIP_SCORE_COLUMN`] for now).
    pub column: String,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// Program and version.
    pub created_by: String,
    /// The dataset manifest's `config_fingerprint` (scores of another dataset are refused).
    pub dataset_fingerprint: String,
    /// The scoring model.
    pub model: ScoreModel,
    /// Side length of the centre-cropped images the model saw.
    pub image_size: u32,
    /// Width of the [`IMAGE_EMBEDDING_COLUMN`] and [`TEXT_EMBEDDING_COLUMN`] columns when the
    /// sidecar also stores each row's L2-normalised embeddings (`flipstream score
    /// --embeddings`); absent: scores only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dim: Option<u32>,
}

impl ScoreManifest {
    /// A manifest for the sidecar `name`, stamped now.
    pub fn new(name: &str, dataset_fingerprint: &str, model: ScoreModel, image_size: u32) -> Self {
        Self {
            format: SCORE_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            name: name.into(),
            column: CLIP_SCORE_COLUMN.into(),
            created_at: now_rfc3339(),
            created_by: crate::metadata::writer_id(),
            dataset_fingerprint: dataset_fingerprint.into(),
            model,
            image_size,
            embedding_dim: None,
        }
    }

    /// The same manifest for a sidecar that also stores `dim`-wide embeddings.
    pub fn with_embeddings(self, dim: u32) -> Self {
        Self {
            embedding_dim: Some(dim),
            ..self
        }
    }

    /// True when `other` scores the same dataset with the same weights and image size (so a
    /// scoring run may add units to this sidecar).
    pub fn same_scoring(&self, other: &ScoreManifest) -> bool {
        self.dataset_fingerprint == other.dataset_fingerprint
            && self.model.fingerprint == other.model.fingerprint
            && self.image_size == other.image_size
            && self.column == other.column
            && self.embedding_dim == other.embedding_dim
    }
}

/// Current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CommitRecord {
        let mut counts = UnitCounts {
            read: 5,
            accepted: 3,
            ..Default::default()
        };
        counts.reject(RejectReason::TooSmall);
        counts.reject(RejectReason::DecodeError);
        CommitRecord {
            format: COMMIT_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            unit: UnitSpec {
                id: "a-s0".into(),
                source: "file:///x/a.tar".into(),
                kind: "webdataset".into(),
                start: None,
                end: None,
            },
            config_fingerprint: "abc".into(),
            shards: vec![ShardEntry {
                path: "shards/a-s0-00000.parquet".into(),
                rows: 3,
                bytes: 100,
                blake3: "00".into(),
                row_groups: vec![2, 1],
                image_bytes: 50,
                image_checksums: Vec::new(),
            }],
            rejections: Some(FileEntry {
                path: "rejections/a-s0.parquet".into(),
                rows: 2,
                bytes: 10,
                blake3: "11".into(),
            }),
            counts,
            started_at: now_rfc3339(),
            finished_at: now_rfc3339(),
            elapsed_s: 0.5,
            worker: WorkerInfo::default(),
            retry: None,
        }
    }

    /// A retry of `record()` that recovered one of its two rejections and still failed the other.
    fn retry_record() -> CommitRecord {
        let mut counts = UnitCounts {
            read: 2,
            accepted: 1,
            ..Default::default()
        };
        counts.reject(RejectReason::DownloadError);
        let mut r = record();
        r.unit.id = RetryInfo::unit_id("a-s0", 1);
        r.shards[0].rows = 1;
        r.shards[0].row_groups = vec![1];
        r.rejections.as_mut().unwrap().rows = 1;
        r.counts = counts;
        r.retry = Some(RetryInfo {
            of: "a-s0".into(),
            origin: "a-s0".into(),
            round: 1,
            superseded_by_reason: [
                ("too_small".to_string(), 1),
                ("decode_error".to_string(), 1),
            ]
            .into(),
        });
        r
    }

    #[test]
    fn dataset_counts_subtract_what_retries_superseded() {
        let (a, b) = (record(), retry_record());
        b.check().unwrap();
        let t = dataset_counts([&a, &b]);
        t.check().unwrap();
        assert_eq!((t.read, t.accepted, t.rejected), (5, 4, 1));
        assert_eq!(
            t.rejected_by_reason,
            [("download_error".to_string(), 1)].into()
        );
        // the order of the records does not matter
        assert_eq!(dataset_counts([&b, &a]), t);
        let both = [a.clone(), b.clone()];
        let chains = chain_counts(&both);
        assert_eq!(chains.len(), 1);
        assert_eq!(chains["a-s0"], t);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<CommitRecord>(&json).unwrap(), b);
        assert!(!serde_json::to_string(&a).unwrap().contains("retry"));
    }

    #[test]
    fn a_retry_record_must_supersede_what_it_read_under_its_own_id() {
        let mut b = retry_record();
        b.retry.as_mut().unwrap().superseded_by_reason.clear();
        assert!(b.check().unwrap_err().contains("supersedes 0"));
        let mut b = retry_record();
        b.unit.id = "a-s0.retry2".into();
        assert!(
            b.check()
                .unwrap_err()
                .contains("should be unit a-s0.retry1")
        );
    }

    #[test]
    fn commit_record_round_trips_and_checks() {
        let r = record();
        r.check().unwrap();
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: CommitRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn commit_record_check_catches_inconsistency() {
        let mut r = record();
        r.counts.accepted = 4;
        assert!(r.check().unwrap_err().contains("read"));
        let mut r = record();
        r.shards[0].row_groups = vec![1, 1];
        assert!(r.check().unwrap_err().contains("row groups"));
        let mut r = record();
        r.rejections = None;
        assert!(r.check().unwrap_err().contains("rejection file"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(record()).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<CommitRecord>(v).is_err());
    }

    #[test]
    fn split_is_stable_and_close_to_fraction() {
        let n = 20_000;
        let val = (0..n)
            .filter(|i| split_of(&format!("k{i}"), 7, 0.1) == Split::Val)
            .count();
        let share = val as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.01, "share {share}");
        assert_eq!(split_of("abc", 7, 0.5), split_of("abc", 7, 0.5));
        assert_eq!(split_of("abc", 7, 0.0), Split::Train);
        assert_eq!(split_of("abc", 7, 1.0), Split::Val);
    }

    /// Every combination of `a` colours × `b` shapes.
    fn grid(a: usize, b: usize) -> Vec<Vec<String>> {
        (0..a)
            .flat_map(|i| (0..b).map(move |j| vec![format!("c{i}"), format!("s{j}")]))
            .collect()
    }

    /// True when every value of every column occurs in a combination not held out.
    fn every_value_trains(all: &[Vec<String>], held: &[Vec<String>]) -> bool {
        let training: Vec<&Vec<String>> = all.iter().filter(|c| !held.contains(c)).collect();
        all.iter().all(|c| {
            c.iter()
                .enumerate()
                .all(|(col, v)| training.iter().any(|t| &t[col] == v))
        })
    }

    #[test]
    fn holdout_choice_is_deterministic_respects_the_fraction_and_keeps_every_value() {
        let all = grid(10, 12);
        let held = choose_holdout(&all, 0.1, 5).unwrap();
        assert_eq!(held.len(), 12, "round(0.1 × 120)");
        assert!(held.is_sorted());
        assert_eq!(choose_holdout(&all, 0.1, 5).unwrap(), held);
        // the input order does not matter, duplicates are ignored
        let mut shuffled: Vec<Vec<String>> = all.iter().rev().cloned().collect();
        shuffled.extend(all.iter().take(7).cloned());
        assert_eq!(choose_holdout(&shuffled, 0.1, 5).unwrap(), held);
        assert_ne!(choose_holdout(&all, 0.1, 6).unwrap(), held, "seeded");
        assert!(every_value_trains(&all, &held));
        let half = choose_holdout(&all, 0.5, 5).unwrap();
        assert_eq!(half.len(), 60);
        assert!(every_value_trains(&all, &half));
        // a tiny fraction still holds out one
        assert_eq!(choose_holdout(&all, 0.001, 5).unwrap().len(), 1);
    }

    #[test]
    fn holdout_choice_skips_a_combination_that_would_hide_a_value() {
        // 2 × 2: at most two (a diagonal) can go without hiding a value
        let all = grid(2, 2);
        let two = choose_holdout(&all, 0.5, 1).unwrap();
        assert_eq!(two.len(), 2);
        assert!(every_value_trains(&all, &two));
        assert!(two[0][0] != two[1][0] && two[0][1] != two[1][1], "{two:?}");
        assert_eq!(
            choose_holdout(&all, 0.75, 1).unwrap_err(),
            HoldoutError::TooFew {
                chosen: 2,
                wanted: 3,
                distinct: 4
            }
        );
        // a value in one combination only can never be held out
        let mut lonely = grid(3, 3);
        lonely.push(vec!["c9".into(), "s0".into()]);
        for seed in 0..20 {
            let held = choose_holdout(&lonely, 0.4, seed).unwrap();
            assert!(!held.iter().any(|c| c[0] == "c9"));
            assert!(every_value_trains(&lonely, &held));
        }
        assert!(matches!(
            choose_holdout(&[], 0.1, 0),
            Err(HoldoutError::TooFew { distinct: 0, .. })
        ));
    }

    #[test]
    fn holdout_requests_are_checked() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        validate_holdout(&cols(&["a", "b"]), 0.1).unwrap();
        assert!(matches!(
            validate_holdout(&cols(&["a"]), 0.1),
            Err(HoldoutError::Columns(_))
        ));
        assert!(matches!(
            validate_holdout(&cols(&["a", "a"]), 0.1),
            Err(HoldoutError::Columns(_))
        ));
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(
                validate_holdout(&cols(&["a", "b"]), f),
                Err(HoldoutError::Fraction(_))
            ));
            assert!(choose_holdout(&grid(3, 3), f, 0).is_err());
        }
    }

    fn manifest(holdout: Option<Holdout>) -> SplitManifest {
        SplitManifest {
            format: SPLIT_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            val_fraction: 0.0,
            seed: 3,
            created_at: now_rfc3339(),
            train_rows: 0,
            val_rows: 0,
            row_groups: vec![],
            holdout,
        }
    }

    #[test]
    fn a_held_out_combination_is_always_val_and_nothing_else_moves() {
        let holdout = Holdout {
            columns: vec!["label_color".into(), "label_shape".into()],
            fraction: 0.1,
            distinct_combos: 4,
            combos: vec![
                vec!["blue".into(), "circle".into()],
                vec!["red".into(), "star".into()],
            ],
            rows: 0,
        };
        assert!(holdout.contains(&["red", "star"]));
        assert!(!holdout.contains(&["red", "circle"]));
        assert!(!holdout.contains(&["red"]));
        let m = manifest(Some(holdout));
        assert_eq!(m.holdout_columns().len(), 2);
        assert_eq!(m.side_of("k1", Some(&["red", "star"])), Split::Val);
        assert_eq!(m.side_of("k1", Some(&["red", "circle"])), Split::Train);
        // a null label (no values) is never held out
        assert_eq!(m.side_of("k1", None), Split::Train);
        for i in 0..200 {
            let key = format!("k{i}");
            let other = Some(&["blue", "star"][..]);
            assert_eq!(
                side_of(&key, other, 9, 0.3, m.holdout.as_ref()),
                split_of(&key, 9, 0.3)
            );
            assert_eq!(side_of(&key, None, 9, 0.3, None), split_of(&key, 9, 0.3));
        }
        assert!(manifest(None).holdout_columns().is_empty());
    }

    #[test]
    fn split_files_without_a_holdout_read_and_write_unchanged() {
        let old = r#"{"format":"flipstream-split","schema_version":1,"val_fraction":0.1,"seed":0,
            "created_at":"2026-01-01T00:00:00Z","train_rows":9,"val_rows":1,
            "row_groups":[{"shard":"shards/a.parquet","row_group":0,"train":9,"val":1}]}"#;
        let m: SplitManifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.holdout, None);
        let v = serde_json::to_value(&m).unwrap();
        assert!(v.get("holdout").is_none(), "{v}");
        let with = manifest(Some(Holdout {
            columns: vec!["a".into(), "b".into()],
            fraction: 0.5,
            distinct_combos: 4,
            combos: vec![vec!["x".into(), "y".into()]],
            rows: 3,
        }));
        let back: SplitManifest =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }
}
