//! `shard split`: a deterministic train/validation split as a *view* (`_flipstream/split.json`),
//! never a copy of the data.
//!
//! A row is in validation when [`split_of`]`(key, seed, val_fraction)` says so: a pure function of
//! the key, so the split is the same on every machine, for every reader, and adding units never
//! moves an existing row. Computing the file reads only the `key` column of every committed row
//! group (row groups concurrently, bounded) and records, per row group, how many rows fall on each
//! side, so that a loader can give every rank an equal share without scanning keys itself.
//!
//! With a compositional hold-out ([`HoldoutOptions`]), combinations of label values (`red` ×
//! `star`) are kept out of training entirely: a first pass reads only the label columns and
//! collects the distinct combinations, [`choose_holdout`] picks some from the seed (every single
//! value keeps a training combination), and the counting pass puts every row of a held-out
//! combination in validation ([`side_of`]). [`LabelColumns`] reads a batch's label values the
//! same way for every reader (the loader, the tokenizer's caption reader).
//!
//! [`write_split`] leaves an existing `split.json` untouched when it already describes the same
//! fraction, seed, holdout and row groups (re-running gives the same file, byte for byte);
//! otherwise the file is replaced and the outcome says what it replaced.

use std::collections::{BTreeMap, HashMap};

use crate::progress::Progress;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use bytes::Bytes;
use flipstream_schemas::records::SPLIT_FORMAT;
use flipstream_schemas::{
    Holdout, SCHEMA_VERSION, ShardEntry, Split, SplitManifest, SplitRowGroup, choose_holdout,
    columns, layout, now_rfc3339, side_of, validate_holdout,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, RowGroupRef};
use crate::error::{Result, ShardError};
use crate::reader::ShardReader;

/// How to split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOptions {
    /// Fraction of rows in validation, in [0, 1].
    pub val_fraction: f64,
    /// Seed of the key hash (and of the choice of held-out combinations).
    pub seed: u64,
    /// Row groups read at once.
    pub concurrency: usize,
    /// Label-value combinations to hold out of training, if any.
    pub holdout: Option<HoldoutOptions>,
}

/// A compositional hold-out to make: a share of the distinct combinations of values of
/// `columns` whose rows all go to validation ([`choose_holdout`] picks them).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutOptions {
    /// Label columns (at least two, cast to text).
    pub columns: Vec<String>,
    /// Share of the distinct combinations to hold out, in (0, 1).
    pub fraction: f64,
}

impl SplitOptions {
    /// Checks the fractions and holdout columns; the message says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.val_fraction.is_finite() || !(0.0..=1.0).contains(&self.val_fraction) {
            return Err(format!(
                "the validation fraction must be between 0 and 1, got {}",
                self.val_fraction
            ));
        }
        self.holdout
            .as_ref()
            .map_or(Ok(()), HoldoutOptions::validate)
    }
}

impl HoldoutOptions {
    /// Checks the columns (at least two, distinct) and the fraction, in (0, 1).
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_holdout(&self.columns, self.fraction).map_err(|e| e.to_string())
    }
}

/// What [`write_split`] did with `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SplitOutcome {
    /// There was none; it was written.
    Created,
    /// The existing one already described this split of these row groups; left as it was.
    Unchanged,
    /// Another split view (or the same one over other row groups) was replaced.
    Replaced {
        /// Its fraction, when it could be read.
        previous_val_fraction: Option<f64>,
        /// Its seed, when it could be read.
        previous_seed: Option<u64>,
    },
}

/// The split and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    /// The split view as stored.
    pub manifest: SplitManifest,
    /// What happened to `split.json`.
    pub outcome: SplitOutcome,
    /// Bytes fetched (footers, `key` and holdout column chunks).
    pub bytes_fetched: u64,
}

/// The label columns of one batch, cast to text (as evaluation reads labels), for deciding which
/// rows hold a held-out combination.
#[derive(Debug, Clone)]
pub struct LabelColumns {
    columns: Vec<StringArray>,
}

/// Why a batch's label columns cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The batch lacks the column.
    #[error("no column `{0}`")]
    Missing(String),
    /// The column does not cast to text.
    #[error("label column `{column}` cannot be read as text: {source}")]
    NotText {
        /// Column name.
        column: String,
        /// Arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl LabelColumns {
    /// Reads the columns `names` of `batch` as text, in that order.
    pub fn from_batch(batch: &RecordBatch, names: &[String]) -> Result<Self, LabelError> {
        let columns = names
            .iter()
            .map(|name| {
                let col = batch
                    .column_by_name(name)
                    .ok_or_else(|| LabelError::Missing(name.clone()))?;
                let not_text = |source| LabelError::NotText {
                    column: name.clone(),
                    source,
                };
                let text = arrow::compute::cast(col, &DataType::Utf8).map_err(not_text)?;
                text.as_string_opt::<i32>()
                    .cloned()
                    .ok_or_else(|| not_text(arrow::error::ArrowError::CastError("not utf8".into())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { columns })
    }

    /// Rows of the batch.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }

    /// The value of column `c` (in the order of the names given) at `row`; `None` for a null.
    pub fn value(&self, c: usize, row: usize) -> Option<&str> {
        let col = self.columns.get(c)?;
        (row < col.len() && !col.is_null(row)).then(|| col.value(row))
    }

    /// The values of stored row `row`, one per column; `None` when one is null (such a row is
    /// never held out).
    pub fn values(&self, row: usize) -> Option<Vec<&str>> {
        self.columns
            .iter()
            .map(|c| (!c.is_null(row)).then(|| c.value(row)))
            .collect()
    }
}

/// `names` without repeats, in order: the columns to read.
fn unique_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Refuses holdout columns that the shard lacks, listing the columns it has.
fn check_columns(ds: &Dataset, reader: &ShardReader, wanted: &[String]) -> Result<()> {
    let schema = reader.schema();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| schema.index_of(c).is_err())
        .map(|c| format!("`{c}`"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    Err(ShardError::SplitRequest {
        url: ds.root().url().to_string(),
        detail: format!(
            "no holdout column {} in {} (its columns: {})",
            missing.join(", "),
            reader.path(),
            have.join(", ")
        ),
    })
}

/// Pass 1 of a holdout: the label combinations of one row group and their row counts.
async fn combos_of_row_group(
    ds: &Dataset,
    reader: &ShardReader,
    rg: &RowGroupRef,
    columns: &[String],
) -> Result<HashMap<Vec<String>, u64>> {
    check_columns(ds, reader, columns)?;
    let names = unique_names(columns.iter().map(String::as_str));
    let batch = reader.read_row_group(rg.index, Some(&names)).await?;
    let labels = LabelColumns::from_batch(&batch, columns).map_err(|e| ShardError::BadRecord {
        path: ds.root().location(&rg.shard),
        detail: format!("row group {}: {e}", rg.index),
    })?;
    let mut counts: HashMap<Vec<&str>, u64> = HashMap::new();
    for row in 0..batch.num_rows() {
        if let Some(values) = labels.values(row) {
            *counts.entry(values).or_default() += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|(values, n)| (values.into_iter().map(String::from).collect(), n))
        .collect())
}

/// What decides a row's side in the counting pass.
#[derive(Debug, Clone, Copy)]
struct SideRule<'a> {
    seed: u64,
    val_fraction: f64,
    holdout: Option<&'a Holdout>,
}

/// Rows of one row group on each side, and how many of them are held out.
struct Counted {
    row_group: SplitRowGroup,
    held_out: u64,
}

/// The `key` column of a row group as text.
fn key_column(batch: &RecordBatch, location: &str, index: usize) -> Result<ArrayRef> {
    let col = batch
        .column_by_name(columns::KEY)
        .ok_or_else(|| ShardError::BadRecord {
            path: location.to_string(),
            detail: format!("row group {index} has no `key` column"),
        })?;
    arrow::compute::cast(col, &DataType::Utf8)
        .map_err(|e| ShardError::arrow(format!("{location} key column"), e))
}

/// Pass 2: reads `key` (and the holdout columns) of one row group and counts its sides.
async fn count_row_group(
    ds: &Dataset,
    reader: &ShardReader,
    rg: &RowGroupRef,
    rule: SideRule<'_>,
) -> Result<Counted> {
    let label_names = rule.holdout.map_or(&[][..], |h| h.columns.as_slice());
    let names =
        unique_names(std::iter::once(columns::KEY).chain(label_names.iter().map(String::as_str)));
    let batch = reader.read_row_group(rg.index, Some(&names)).await?;
    let location = ds.root().location(&rg.shard);
    let bad = |detail: String| ShardError::BadRecord {
        path: location.clone(),
        detail: format!("row group {}: {detail}", rg.index),
    };
    let keys = key_column(&batch, &location, rg.index)?;
    let keys = keys.as_string::<i32>();
    let labels = match rule.holdout {
        Some(h) => {
            Some(LabelColumns::from_batch(&batch, &h.columns).map_err(|e| bad(e.to_string()))?)
        }
        None => None,
    };
    let (mut train, mut val, mut held_out) = (0u64, 0u64, 0u64);
    for i in 0..keys.len() {
        if keys.is_null(i) {
            return Err(bad("a null key".into()));
        }
        let values = labels.as_ref().and_then(|l| l.values(i));
        let values = values.as_deref();
        if let (Some(h), Some(v)) = (rule.holdout, values)
            && h.contains(v)
        {
            held_out += 1;
        }
        match side_of(
            keys.value(i),
            values,
            rule.seed,
            rule.val_fraction,
            rule.holdout,
        ) {
            Split::Train => train += 1,
            Split::Val => val += 1,
        }
    }
    if train + val != rg.rows {
        return Err(bad(format!(
            "holds {} rows, the commit record says {}",
            train + val,
            rg.rows
        )));
    }
    let row_group = u32::try_from(rg.index).map_err(|_| bad("row group index too large".into()))?;
    Ok(Counted {
        row_group: SplitRowGroup {
            shard: rg.shard.clone(),
            row_group,
            train,
            val,
        },
        held_out,
    })
}

/// Runs `per_row_group` on every committed row group in canonical order and returns the results
/// and the bytes fetched. Footers are fetched ahead, `concurrency` at a time, as tasks of their
/// own so that they progress while the current shard's row groups are read (also `concurrency`
/// at a time); `progress` advances by each row group's rows.
async fn each_row_group<T, F, Fut>(
    ds: &Dataset,
    concurrency: usize,
    progress: &dyn Progress,
    per_row_group: F,
) -> Result<(Vec<T>, u64)>
where
    F: Fn(ShardReader, RowGroupRef) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut out = Vec::new();
    let mut fetched = 0u64;
    let root = ds.root().clone();
    let shards: Vec<ShardEntry> = ds.shards().cloned().collect();
    let mut opened = futures::stream::iter(shards)
        .map(|shard| {
            let root = root.clone();
            tokio::spawn(async move {
                let reader = ShardReader::open(&root, &shard.path, Some(shard.bytes)).await;
                (shard, reader)
            })
        })
        .buffered(concurrency);
    while let Some(joined) = opened.next().await {
        let (shard, reader) = joined.map_err(|e| ShardError::BadRecord {
            path: ds.root().location(layout::SHARDS_DIR),
            detail: format!("opening a shard failed: {e}"),
        })?;
        let reader = reader?;
        let refs = shard
            .row_groups
            .iter()
            .enumerate()
            .map(|(index, &rows)| RowGroupRef {
                shard: shard.path.clone(),
                shard_bytes: shard.bytes,
                index,
                rows,
                image_checksum: shard.image_checksums.get(index).cloned(),
            });
        let done: Vec<T> = futures::stream::iter(refs)
            .map(|rg| {
                let rows = rg.rows;
                let work = per_row_group(reader.clone(), rg);
                async move {
                    let result = work.await?;
                    progress.advance(rows);
                    Ok::<T, ShardError>(result)
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await?;
        out.extend(done);
        fetched += reader.bytes_fetched();
    }
    Ok((out, fetched))
}

/// Pass 1 of a holdout: collects the distinct label combinations and chooses the held-out ones.
/// `rows` counts their rows as pass 1 saw them.
async fn choose_combos(
    ds: &Dataset,
    options: &HoldoutOptions,
    seed: u64,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<(Holdout, u64)> {
    let columns = options.columns.as_slice();
    let (per_row_group, fetched) =
        each_row_group(ds, concurrency, progress, |reader, rg| async move {
            combos_of_row_group(ds, &reader, &rg, columns).await
        })
        .await?;
    let mut counts: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for map in per_row_group {
        for (combo, n) in map {
            *counts.entry(combo).or_default() += n;
        }
    }
    let distinct: Vec<Vec<String>> = counts.keys().cloned().collect();
    let combos = choose_holdout(&distinct, options.fraction, seed).map_err(|e| {
        ShardError::SplitRequest {
            url: ds.root().url().to_string(),
            detail: format!("{} combinations: {e}", columns.join(" × ")),
        }
    })?;
    let rows = combos.iter().filter_map(|c| counts.get(c)).sum();
    let holdout = Holdout {
        columns: options.columns.clone(),
        fraction: options.fraction,
        distinct_combos: distinct.len() as u64,
        combos,
        rows,
    };
    Ok((holdout, fetched))
}

/// Computes the split view of `ds` (without writing it) and the bytes fetched.
pub async fn compute_split(
    ds: &Dataset,
    options: &SplitOptions,
    progress: &dyn Progress,
) -> Result<(SplitManifest, u64)> {
    options
        .validate()
        .map_err(|detail| ShardError::SplitRequest {
            url: ds.root().url().to_string(),
            detail,
        })?;
    let passes = if options.holdout.is_some() { 2 } else { 1 };
    progress.set_total(ds.rows() * passes);
    let concurrency = options.concurrency.max(1);
    let (holdout, mut fetched) = match &options.holdout {
        Some(h) => {
            let (holdout, fetched) =
                choose_combos(ds, h, options.seed, concurrency, progress).await?;
            (Some(holdout), fetched)
        }
        None => (None, 0),
    };
    let rule = SideRule {
        seed: options.seed,
        val_fraction: options.val_fraction,
        holdout: holdout.as_ref(),
    };
    let (counted, counting_fetched) =
        each_row_group(ds, concurrency, progress, |reader, rg| async move {
            count_row_group(ds, &reader, &rg, rule).await
        })
        .await?;
    fetched += counting_fetched;
    let held_out: u64 = counted.iter().map(|c| c.held_out).sum();
    if let Some(h) = &holdout
        && h.rows != held_out
    {
        return Err(ShardError::BadRecord {
            path: ds.root().location(layout::SPLIT),
            detail: format!(
                "the held-out combinations have {} rows in the first pass but {held_out} in the \
                 second: the data changed while it was being split",
                h.rows
            ),
        });
    }
    let row_groups: Vec<SplitRowGroup> = counted.into_iter().map(|c| c.row_group).collect();
    let manifest = SplitManifest {
        format: SPLIT_FORMAT.to_string(),
        schema_version: SCHEMA_VERSION,
        val_fraction: options.val_fraction,
        seed: options.seed,
        created_at: now_rfc3339(),
        train_rows: row_groups.iter().map(|r| r.train).sum(),
        val_rows: row_groups.iter().map(|r| r.val).sum(),
        row_groups,
        holdout,
    };
    Ok((manifest, fetched))
}

fn same_split(a: &SplitManifest, b: &SplitManifest) -> bool {
    a.format == b.format
        && a.schema_version == b.schema_version
        && a.val_fraction == b.val_fraction
        && a.seed == b.seed
        && a.train_rows == b.train_rows
        && a.val_rows == b.val_rows
        && a.row_groups == b.row_groups
        && a.holdout == b.holdout
}

/// Computes the split view and stores it as `_flipstream/split.json`; see the module docs.
pub async fn write_split(
    ds: &Dataset,
    options: &SplitOptions,
    progress: &dyn Progress,
) -> Result<SplitResult> {
    let (manifest, bytes_fetched) = compute_split(ds, options, progress).await?;
    progress.finish();
    let previous: Option<std::result::Result<SplitManifest, ShardError>> = ds
        .root()
        .get_opt(layout::SPLIT)
        .await?
        .map(|bytes| crate::dataset::parse_json(ds.root(), layout::SPLIT, &bytes));
    let outcome = match &previous {
        None => SplitOutcome::Created,
        Some(Ok(old)) if same_split(old, &manifest) => {
            return Ok(SplitResult {
                manifest: old.clone(),
                outcome: SplitOutcome::Unchanged,
                bytes_fetched,
            });
        }
        Some(Ok(old)) => SplitOutcome::Replaced {
            previous_val_fraction: Some(old.val_fraction),
            previous_seed: Some(old.seed),
        },
        Some(Err(_)) => SplitOutcome::Replaced {
            previous_val_fraction: None,
            previous_seed: None,
        },
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| ShardError::BadRecord {
        path: ds.root().location(layout::SPLIT),
        detail: e.to_string(),
    })?;
    ds.root().put(layout::SPLIT, Bytes::from(body)).await?;
    Ok(SplitResult {
        manifest,
        outcome,
        bytes_fetched,
    })
}
