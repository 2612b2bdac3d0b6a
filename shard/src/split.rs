//! `shard split`: a deterministic train/validation split as a *view* (`_flipstream/split.json`),
//! never a copy of the data.
//!
//! A row is in validation when [`split_of`]`(key, seed, val_fraction)` says so: a pure function of
//! the key, so the split is the same on every machine, for every reader, and adding units never
//! moves an existing row. Computing the file reads only the `key` column of every committed row
//! group (row groups concurrently, bounded) and records, per row group, how many rows fall on each
//! side, so that a loader can give every rank an equal share without scanning keys itself.
//!
//! [`write_split`] leaves an existing `split.json` untouched when it already describes the same
//! fraction, seed and row groups (re-running gives the same file, byte for byte); otherwise the
//! file is replaced and the outcome says what it replaced.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use bytes::Bytes;
use flipstream_schemas::records::SPLIT_FORMAT;
use flipstream_schemas::{
    SCHEMA_VERSION, ShardEntry, Split, SplitManifest, SplitRowGroup, columns, layout, now_rfc3339,
    split_of,
};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, RowGroupRef};
use crate::error::{Result, ShardError};
use crate::reader::ShardReader;

/// How to split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOptions {
    /// Fraction of rows in validation, in [0, 1].
    pub val_fraction: f64,
    /// Seed of the key hash.
    pub seed: u64,
    /// Row groups read at once.
    pub concurrency: usize,
}

impl SplitOptions {
    /// Checks the fraction; the message says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.val_fraction.is_finite() || !(0.0..=1.0).contains(&self.val_fraction) {
            return Err(format!(
                "the validation fraction must be between 0 and 1, got {}",
                self.val_fraction
            ));
        }
        Ok(())
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
    /// Bytes fetched (footers and `key` column chunks).
    pub bytes_fetched: u64,
}

async fn count_row_group(
    ds: &Dataset,
    reader: &ShardReader,
    rg: &RowGroupRef,
    options: &SplitOptions,
) -> Result<SplitRowGroup> {
    let batch = reader
        .read_row_group(rg.index, Some(&[columns::KEY]))
        .await?;
    let location = ds.root().location(&rg.shard);
    let col = batch
        .column_by_name(columns::KEY)
        .ok_or_else(|| ShardError::BadRecord {
            path: location.clone(),
            detail: format!("row group {} has no `key` column", rg.index),
        })?;
    let keys = arrow::compute::cast(col, &DataType::Utf8)
        .map_err(|e| ShardError::arrow(format!("{location} key column"), e))?;
    let keys = keys.as_string::<i32>();
    let (mut train, mut val) = (0u64, 0u64);
    for i in 0..keys.len() {
        if keys.is_null(i) {
            return Err(ShardError::BadRecord {
                path: location,
                detail: format!("row group {} has a null key", rg.index),
            });
        }
        match split_of(keys.value(i), options.seed, options.val_fraction) {
            Split::Train => train += 1,
            Split::Val => val += 1,
        }
    }
    if train + val != rg.rows {
        return Err(ShardError::BadRecord {
            path: location,
            detail: format!(
                "row group {} holds {} rows, the commit record says {}",
                rg.index,
                train + val,
                rg.rows
            ),
        });
    }
    let row_group = u32::try_from(rg.index).map_err(|_| ShardError::BadRecord {
        path: location,
        detail: format!("row group index {} too large", rg.index),
    })?;
    Ok(SplitRowGroup {
        shard: rg.shard.clone(),
        row_group,
        train,
        val,
    })
}

/// Computes the split view of `ds` (without writing it) and the bytes fetched.
pub async fn compute_split(
    ds: &Dataset,
    options: &SplitOptions,
    progress: Option<&ProgressBar>,
) -> Result<(SplitManifest, u64)> {
    options.validate().map_err(|detail| ShardError::BadRecord {
        path: ds.root().location(layout::SPLIT),
        detail,
    })?;
    if let Some(p) = progress {
        p.set_length(ds.rows());
    }
    let concurrency = options.concurrency.max(1);
    let mut row_groups = Vec::new();
    let mut fetched = 0u64;
    // footers are fetched ahead, `concurrency` at a time, as tasks of their own so that they
    // progress while the current shard's row groups are read
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
        let refs: Vec<RowGroupRef> = shard
            .row_groups
            .iter()
            .enumerate()
            .map(|(index, &rows)| RowGroupRef {
                shard: shard.path.clone(),
                shard_bytes: shard.bytes,
                index,
                rows,
            })
            .collect();
        let counted: Vec<SplitRowGroup> = futures::stream::iter(refs.iter())
            .map(|rg| count_row_group(ds, &reader, rg, options))
            .buffered(concurrency)
            .inspect_ok(|c| {
                if let Some(p) = progress {
                    p.inc(c.train + c.val);
                }
            })
            .try_collect()
            .await?;
        row_groups.extend(counted);
        fetched += reader.bytes_fetched();
    }
    let train_rows = row_groups.iter().map(|r| r.train).sum();
    let val_rows = row_groups.iter().map(|r| r.val).sum();
    let manifest = SplitManifest {
        format: SPLIT_FORMAT.to_string(),
        schema_version: SCHEMA_VERSION,
        val_fraction: options.val_fraction,
        seed: options.seed,
        created_at: now_rfc3339(),
        train_rows,
        val_rows,
        row_groups,
        holdout: None,
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
}

/// Computes the split view and stores it as `_flipstream/split.json`; see the module docs.
pub async fn write_split(
    ds: &Dataset,
    options: &SplitOptions,
    progress: Option<&ProgressBar>,
) -> Result<SplitResult> {
    let (manifest, bytes_fetched) = compute_split(ds, options, progress).await?;
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
