//! Example rejected items per reason, read from as few rejection files as possible.
//!
//! The commit records say how many items of each reason every unit rejected, so the files to read
//! are chosen before reading any: for each reason, the first units (canonical order) that hold
//! enough examples. Each chosen file is read row group by row group, only the `key`, `url`,
//! `reason` and `detail` columns, and reading stops as soon as the file has given what it was
//! chosen for. Rejections that a retry unit superseded (`ingest --retry-failed`) are not counted
//! when choosing and are skipped when reading: their keys are read from the retry unit first.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use flipstream_schemas::{CommitRecord, FileKind, columns};
use futures::StreamExt;

use super::StatsError;
use super::report::RejectionExample;
use flipstream_shard::reader::ShardReader;
use flipstream_shard::retried::{live_rejections, retried_by, unit_keys};
use flipstream_shard::store::StoreRoot;
use flipstream_shard::verify::check_footer;

/// One rejection file to read and how many examples of each reason to take from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExamplePlan {
    /// Unit.
    pub unit: String,
    /// Rejection file path.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Reason code → examples to take.
    pub take: BTreeMap<String, usize>,
    /// The retry unit that superseded some of the file's rows (their keys are skipped).
    pub superseded_by: Option<CommitRecord>,
}

/// Chooses the rejection files that give `per_reason` examples of every reason (or all there are).
pub(crate) fn plan_examples(commits: &[CommitRecord], per_reason: usize) -> Vec<ExamplePlan> {
    let mut wanted: BTreeMap<String, usize> = BTreeMap::new();
    let mut plans = Vec::new();
    let retried = retried_by(commits);
    for c in commits {
        let Some(file) = &c.rejections else { continue };
        let child = retried.get(c.unit.id.as_str()).copied();
        let mut take = BTreeMap::new();
        for (reason, count) in live_rejections(c, child) {
            let left = wanted.entry(reason.clone()).or_insert(per_reason);
            let n = (*left).min(usize::try_from(count).unwrap_or(usize::MAX));
            if n > 0 {
                *left -= n;
                take.insert(reason, n);
            }
        }
        if !take.is_empty() {
            plans.push(ExamplePlan {
                unit: c.unit.id.clone(),
                path: file.path.clone(),
                bytes: file.bytes,
                take,
                superseded_by: child.cloned(),
            });
        }
    }
    plans
}

const EXAMPLE_COLUMNS: [&str; 4] = [columns::KEY, columns::URL, columns::REASON, columns::DETAIL];

async fn read_plan(
    root: &StoreRoot,
    plan: &ExamplePlan,
) -> Result<(Vec<(String, RejectionExample)>, u64), StatsError> {
    let location = root.location(&plan.path);
    let reader = ShardReader::open(root, &plan.path, Some(plan.bytes)).await?;
    check_footer(reader.metadata(), reader.schema(), FileKind::Rejections).map_err(|source| {
        flipstream_shard::ShardError::Invalid {
            path: location.clone(),
            source,
        }
    })?;
    let skip = match &plan.superseded_by {
        Some(child) => unit_keys(root, child).await?,
        None => HashSet::new(),
    };
    let mut take = plan.take.clone();
    let mut out = Vec::new();
    for rg in 0..reader.num_row_groups() {
        if take.values().all(|&n| n == 0) {
            break;
        }
        let batch = reader.read_row_group(rg, Some(&EXAMPLE_COLUMNS)).await?;
        let text = |name: &str| -> Result<arrow::array::ArrayRef, StatsError> {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| StatsError::Column {
                    path: format!("{location} row group {rg}"),
                    column: name.to_string(),
                    detail: "missing from the row group".into(),
                })?;
            arrow::compute::cast(col, &DataType::Utf8).map_err(|e| StatsError::Column {
                path: format!("{location} row group {rg}"),
                column: name.to_string(),
                detail: format!("cannot read {} as text: {e}", col.data_type()),
            })
        };
        let (keys, urls, reasons, details) = (
            text(columns::KEY)?,
            text(columns::URL)?,
            text(columns::REASON)?,
            text(columns::DETAIL)?,
        );
        let (keys, urls, reasons, details) = (
            keys.as_string::<i32>(),
            urls.as_string::<i32>(),
            reasons.as_string::<i32>(),
            details.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            if reasons.is_null(i) || (!keys.is_null(i) && skip.contains(keys.value(i))) {
                continue;
            }
            let Some(left) = take.get_mut(reasons.value(i)) else {
                continue;
            };
            if *left == 0 {
                continue;
            }
            *left -= 1;
            let example = RejectionExample {
                unit: plan.unit.clone(),
                key: if keys.is_null(i) {
                    String::new()
                } else {
                    keys.value(i).to_string()
                },
                url: (!urls.is_null(i)).then(|| urls.value(i).to_string()),
                detail: if details.is_null(i) {
                    String::new()
                } else {
                    details.value(i).to_string()
                },
            };
            out.push((reasons.value(i).to_string(), example));
        }
    }
    Ok((out, reader.bytes_fetched()))
}

/// Reads the planned files (`concurrency` at once) and returns the examples by reason, in plan
/// order, with the bytes fetched.
pub(crate) async fn read_examples(
    root: &StoreRoot,
    plans: &[ExamplePlan],
    concurrency: usize,
) -> Result<(BTreeMap<String, Vec<RejectionExample>>, u64), StatsError> {
    let mut results = futures::stream::iter(plans)
        .map(|p| read_plan(root, p))
        .buffered(concurrency.max(1));
    let mut by_reason: BTreeMap<String, Vec<RejectionExample>> = BTreeMap::new();
    let mut fetched = 0;
    while let Some(r) = results.next().await {
        let (examples, bytes) = r?;
        fetched += bytes;
        for (reason, e) in examples {
            by_reason.entry(reason).or_default().push(e);
        }
    }
    Ok((by_reason, fetched))
}
