//! The scan: every committed row group read once, only the columns the report needs, a bounded
//! number at a time, each summarised into a [`ScanState`] on a worker thread.
//!
//! Shards are opened ahead (footer only, checked against schema v1 and the commit record); their
//! row groups become tasks; at most `concurrency` tasks exist at once. Results are merged in the
//! dataset's canonical row-group order whatever order they finish in, so the report does not
//! depend on the concurrency or on timing.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::Field;
use flipstream_schemas::{CommitRecord, FileKind, ShardEntry};
use flipstream_shard::progress::Progress;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::StatsError;
use super::state::{BatchOrigin, SCAN_COLUMNS, ScanState};
use flipstream_shard::reader::ShardReader;
use flipstream_shard::store::StoreRoot;
use flipstream_shard::verify::check_footer;

/// What the scan found and what it cost.
#[derive(Debug, Clone)]
pub(crate) struct ScanResult {
    /// The merged state.
    pub state: ScanState,
    /// Shards opened.
    pub shards: u64,
    /// Row groups read.
    pub row_groups: u64,
    /// Bytes fetched from shards (footers and column chunks).
    pub bytes_fetched: u64,
    /// Every column read, fixed ones first.
    pub columns: Vec<String>,
}

/// An opened, checked shard, shared by its row-group tasks.
#[derive(Clone)]
struct OpenShard {
    reader: ShardReader,
    location: Arc<str>,
    columns: Arc<Vec<String>>,
    passthrough: Arc<Vec<Field>>,
}

async fn open_shard(root: &StoreRoot, entry: &ShardEntry) -> Result<OpenShard, StatsError> {
    let location = root.location(&entry.path);
    let reader = ShardReader::open(root, &entry.path, Some(entry.bytes)).await?;
    let passthrough =
        check_footer(reader.metadata(), reader.schema(), FileKind::Shard).map_err(|source| {
            flipstream_shard::ShardError::Invalid {
                path: location.clone(),
                source,
            }
        })?;
    let found = reader.row_group_rows();
    if found != entry.row_groups {
        return Err(StatsError::Mismatch {
            path: location,
            detail: format!(
                "row groups hold {:?} rows but the commit record says {:?}",
                summarize(&found),
                summarize(&entry.row_groups)
            ),
        });
    }
    let mut columns: Vec<String> = SCAN_COLUMNS.iter().map(|s| s.to_string()).collect();
    columns.extend(passthrough.iter().map(|f| f.name().clone()));
    Ok(OpenShard {
        reader,
        location: location.into(),
        columns: Arc::new(columns),
        passthrough: Arc::new(passthrough),
    })
}

/// At most the first few row-group sizes, for messages.
fn summarize(rows: &[u64]) -> String {
    let head: Vec<String> = rows.iter().take(8).map(u64::to_string).collect();
    let more = if rows.len() > 8 {
        format!(", … ({} row groups)", rows.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", head.join(", "))
}

async fn scan_row_group(shard: &OpenShard, index: usize) -> Result<ScanState, StatsError> {
    let names: Vec<&str> = shard.columns.iter().map(String::as_str).collect();
    let batch = shard.reader.read_row_group(index, Some(&names)).await?;
    let mut state = ScanState::new();
    state.observe(
        &batch,
        &shard.passthrough,
        &BatchOrigin {
            shard: &shard.location,
            row_group: index,
        },
    )?;
    Ok(state)
}

/// A row group's result: its state, whether it was a row group (a shard without row groups gives
/// one empty outcome), and, from the shard's last row group, the reader and the columns read, so
/// that the shard's byte count is taken once all of its row groups are done.
type RowGroupOutcome =
    Result<(ScanState, bool, Option<(ShardReader, Arc<Vec<String>>)>), StatsError>;

fn row_group_tasks(
    opened: Result<OpenShard, StatsError>,
) -> BoxStream<'static, BoxFuture<'static, RowGroupOutcome>> {
    let shard = match opened {
        Ok(s) => s,
        Err(e) => return futures::stream::iter([futures::future::ready(Err(e)).boxed()]).boxed(),
    };
    let n = shard.reader.num_row_groups();
    if n == 0 {
        let done = Some((shard.reader.clone(), shard.columns.clone()));
        return futures::stream::iter([futures::future::ready(Ok((
            ScanState::new(),
            false,
            done,
        )))
        .boxed()])
        .boxed();
    }
    futures::stream::iter(0..n)
        .map(move |i| {
            let shard = shard.clone();
            // spawned so that row groups are decoded and summarised on all worker threads
            let handle = tokio::spawn(async move {
                let state = scan_row_group(&shard, i).await?;
                Ok((
                    state,
                    true,
                    (i + 1 == n).then(|| (shard.reader.clone(), shard.columns.clone())),
                ))
            });
            async move { handle.await.map_err(|e| StatsError::Task(e.to_string()))? }.boxed()
        })
        .boxed()
}

/// Scans every shard of `commits` (canonical order), `concurrency` row groups at a time.
pub(crate) async fn scan_shards(
    root: &StoreRoot,
    commits: &[CommitRecord],
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<ScanResult, StatsError> {
    let concurrency = concurrency.max(1);
    let entries: Vec<ShardEntry> = commits
        .iter()
        .flat_map(|c| c.shards.iter().cloned())
        .collect();
    let root_owned = root.clone();
    let mut outcomes = futures::stream::iter(entries)
        .map(move |entry| {
            let root = root_owned.clone();
            async move { open_shard(&root, &entry).await }
        })
        .buffered(concurrency)
        .flat_map(row_group_tasks)
        .buffered(concurrency);

    let mut result = ScanResult {
        state: ScanState::new(),
        shards: 0,
        row_groups: 0,
        bytes_fetched: 0,
        columns: Vec::new(),
    };
    let mut extra_columns: BTreeSet<String> = BTreeSet::new();
    while let Some(outcome) = outcomes.next().await {
        let (state, is_row_group, finished_shard) = outcome?;
        progress.advance(state.rows);
        result.row_groups += u64::from(is_row_group);
        result.state.merge(&state);
        if let Some((reader, columns)) = finished_shard {
            result.shards += 1;
            result.bytes_fetched += reader.bytes_fetched();
            extra_columns.extend(columns.iter().skip(SCAN_COLUMNS.len()).cloned());
        }
    }
    result.columns = SCAN_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(extra_columns)
        .collect();
    Ok(result)
}
