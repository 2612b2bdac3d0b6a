//! What an evaluation scores against, fixed once per run: [`EvalTargets`].
//!
//! - **Classes**: the zero-shot class set is every combination of the values the label columns
//!   take *anywhere in the dataset* (train and validation rows alike), read once from those columns
//!   only. It never depends on which samples happen to be evaluated, so every class competes in
//!   every evaluation, as in a fixed benchmark such as ImageNet's 1,000 names.
//! - **Held-out combinations**: when the dataset's split view holds out label combinations
//!   (`flipstream shard split --holdout-columns`), those rows are all on the validation side and
//!   never trained on; the evaluation scores them separately (compositional zero-shot).

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};

use flipstream_schemas::{Holdout, ShardEntry};

use flipstream_shard::split::LabelColumns;
use flipstream_shard::{Dataset, ShardReader};

use crate::error::{Result, TrainError};
use crate::run::prompts::LabelSet;

/// Shards whose label columns are read at once.
const VOCABULARY_FETCH_CONCURRENCY: usize = 8;

/// The class set and the held-out combinations of one dataset.
#[derive(Debug, Clone, Default)]
pub struct EvalTargets {
    /// Label columns of the zero-shot classes (empty: retrieval only).
    pub label_columns: Vec<String>,
    /// Every class (absent without label columns).
    pub classes: Option<LabelSet>,
    /// Label combinations the split view keeps out of training.
    pub holdout: Option<Holdout>,
    /// A note for the user (e.g. that zero-shot is skipped for lack of label columns).
    pub note: Option<String>,
}

impl EvalTargets {
    /// Columns the evaluation loader must carry: the label columns, then the hold-out columns not
    /// among them.
    pub fn loader_columns(&self) -> Vec<String> {
        let mut cols = self.label_columns.clone();
        if let Some(h) = &self.holdout {
            for c in &h.columns {
                if !cols.contains(c) {
                    cols.push(c.clone());
                }
            }
        }
        cols
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Request(format!("starting the I/O runtime: {e}")))
}

fn dataset_error(context: String) -> impl FnOnce(flipstream_shard::ShardError) -> TrainError {
    move |source| TrainError::Dataset {
        context,
        source: Box::new(source),
    }
}

/// Checks before a run starts that `dataset` can be evaluated (a split view with validation rows;
/// the label columns, when given) and reads its targets. `required`: missing label columns are an
/// error; otherwise zero-shot is skipped with a note and retrieval remains.
pub fn check_eval_data(
    dataset: &str,
    label_columns: &[String],
    format: Option<&str>,
    required: bool,
) -> Result<EvalTargets> {
    runtime()?.block_on(async {
        let ds = Dataset::open(dataset)
            .await
            .map_err(dataset_error(format!("opening {dataset}")))?;
        let holdout = validation_holdout(&ds, dataset).await?;
        let mut targets = EvalTargets {
            holdout,
            ..EvalTargets::default()
        };
        if label_columns.is_empty() {
            return Ok(targets);
        }
        if let Some(message) = missing_columns(&ds, dataset, label_columns).await? {
            if required {
                return Err(TrainError::Request(message));
            }
            targets.note = Some(format!("{message}; zero-shot skipped, retrieval only"));
            return Ok(targets);
        }
        let values = label_vocabulary(&ds, label_columns).await?;
        targets.label_columns = label_columns.to_vec();
        targets.classes = Some(LabelSet::from_vocabulary(label_columns, values, format)?);
        Ok(targets)
    })
}

/// The split view's hold-out, after checking that the view has validation rows.
async fn validation_holdout(ds: &Dataset, dataset: &str) -> Result<Option<Holdout>> {
    let split = ds.split_manifest().await.map_err(dataset_error(format!(
        "reading the split view of {dataset}"
    )))?;
    match split {
        None => Err(TrainError::Request(format!(
            "{dataset} has no validation split to evaluate on: create one with \
             `flipstream shard split {dataset} --val-fraction 0.05`"
        ))),
        Some(s) if s.val_rows == 0 => Err(TrainError::Request(format!(
            "the split view of {dataset} has no validation rows (val fraction {}): re-run \
             `flipstream shard split {dataset} --val-fraction 0.05`",
            s.val_fraction
        ))),
        Some(s) => Ok(s.holdout),
    }
}

/// A message naming the label columns `dataset` lacks (and the columns it has), if any.
async fn missing_columns(ds: &Dataset, dataset: &str, wanted: &[String]) -> Result<Option<String>> {
    let Some(shard) = ds.shards().next() else {
        return Ok(None);
    };
    let reader = ShardReader::open(ds.root(), &shard.path, Some(shard.bytes))
        .await
        .map_err(dataset_error(format!("reading the schema of {dataset}")))?;
    let schema = reader.schema();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| schema.field_with_name(c).is_err())
        .map(|c| format!("`{c}`"))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let passthrough: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !flipstream_schemas::columns::SHARD_COLUMNS.contains(n))
        .collect();
    Ok(Some(format!(
        "{dataset} has no label column {} (its passthrough columns: {}); name its label \
         columns with --label-columns",
        missing.join(", "),
        if passthrough.is_empty() {
            "none".to_string()
        } else {
            passthrough.join(", ")
        }
    )))
}

/// Distinct non-null values of each of `columns` over every committed row of the dataset.
async fn label_vocabulary(ds: &Dataset, columns: &[String]) -> Result<Vec<BTreeSet<String>>> {
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let shards: Vec<ShardEntry> = ds.shards().cloned().collect();
    let per_shard: Vec<Vec<BTreeSet<String>>> = futures::stream::iter(shards)
        .map(|shard| {
            let names = &names;
            async move {
                let reader = ShardReader::open(ds.root(), &shard.path, Some(shard.bytes)).await?;
                let mut values = vec![BTreeSet::new(); names.len()];
                for index in 0..reader.num_row_groups() {
                    let batch = reader.read_row_group(index, Some(names)).await?;
                    collect_values(&batch, columns, &mut values).map_err(|detail| {
                        flipstream_shard::ShardError::BadRecord {
                            path: ds.root().location(&shard.path),
                            detail,
                        }
                    })?;
                }
                Ok::<_, flipstream_shard::ShardError>(values)
            }
        })
        .buffer_unordered(VOCABULARY_FETCH_CONCURRENCY)
        .try_collect()
        .await
        .map_err(dataset_error("reading the label columns".into()))?;
    let mut all = vec![BTreeSet::new(); columns.len()];
    for values in per_shard {
        for (set, v) in all.iter_mut().zip(values) {
            set.extend(v);
        }
    }
    Ok(all)
}

/// Adds the distinct values of the label `columns` of `batch` (as text) to `values`.
fn collect_values(
    batch: &RecordBatch,
    columns: &[String],
    values: &mut [BTreeSet<String>],
) -> std::result::Result<(), String> {
    let labels = LabelColumns::from_batch(batch, columns).map_err(|e| e.to_string())?;
    for (c, set) in values.iter_mut().enumerate() {
        set.extend((0..labels.rows()).filter_map(|r| labels.value(c, r).map(str::to_string)));
    }
    Ok(())
}
