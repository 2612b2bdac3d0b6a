//! The ingest pipeline: inputs → units → committed units.
//!
//! ```text
//! plan_units ─▶ this worker's units, minus the committed ones
//!   per unit (a few units at once):
//!     reader thread (blocking: tar / parquet / folder / list) ──bounded channel──▶
//!     per item, up to `window` in flight, results kept in input order:
//!         malformed? caption cleanup ─▶ download (URL lists, tokio) ─▶ rayon: hash, probe, size
//!         filters, scaled decode, pHash, resize, encode
//!     sequential, in item order: dedup ─▶ shard rows / rejections ─▶ UnitWriter ─▶ commit
//! ```
//!
//! Memory stays flat: the channel and the window bound the items alive at once, shards stream out
//! by row group. The outcome of a unit depends only on its input and the configuration (order is
//! kept, dedup is sequential), so a re-run after a crash writes the same files.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flipstream_imaging::{self as imaging, ProcessSpec};
use flipstream_schemas::{RejectReason, UnitCounts, WorkerInfo, shard_schema_with_extras};
use flipstream_shard::problems::Validate;
use flipstream_shard::progress::Progress;
use flipstream_shard::rows::{ShardBatchBuilder, ShardRow};
use flipstream_shard::{Dataset, DatasetWriter, Rejection, ShardError, StoreRoot};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::caption::clean_caption;
use crate::config::IngestConfig;
use crate::dedup::Dedup;
use crate::fetch::{FetchError, Fetcher};
use crate::retry_failed::{KeyFilter, NO_DOWNLOADER, RetryUnit, plan_retries};
use crate::source::{ImageRef, RawItem, SourceError, SourceStats, UnitPlan, open_unit, plan_units};
use crate::workers::WorkerSlot;

/// How this process runs (not part of the dataset's configuration).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Which share of the units this process runs.
    pub worker: WorkerSlot,
    /// Units processed at the same time (overlaps one unit's I/O with another's CPU work).
    pub units_in_flight: usize,
    /// Items in flight per unit (read, downloading or being processed), kept in order.
    pub window: usize,
    /// Also re-try the transient failures of this worker's committed units, as retry units
    /// ([`crate::retry_failed`]).
    pub retry_failed: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            worker: WorkerSlot::default(),
            units_in_flight: 2,
            window: 256,
            retry_failed: false,
        }
    }
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The configuration is unusable (a usage error).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The inputs could not be planned (missing file, unknown kind, unreachable store).
    #[error("{0}")]
    Inputs(#[from] SourceError),
    /// The output dataset could not be opened or written.
    #[error("{0}")]
    Output(#[from] ShardError),
    /// The downloader could not be built.
    #[error("{0}")]
    Fetch(#[from] FetchError),
}

/// Why one unit failed (it is not committed; the next run retries it).
#[derive(Debug, thiserror::Error)]
enum UnitError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Output(#[from] ShardError),
    #[error("reader thread failed: {0}")]
    Join(String),
}

/// A unit that failed in this run.
#[derive(Debug, Clone, Serialize)]
pub struct FailedUnit {
    /// Unit id.
    pub unit: String,
    /// Input URI.
    pub source: String,
    /// What went wrong.
    pub error: String,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    /// Dataset URL.
    pub dataset: String,
    /// Configuration fingerprint.
    pub config_fingerprint: String,
    /// This process's worker slot.
    pub worker: WorkerSlot,
    /// Units planned from the inputs (all workers).
    pub units_planned: usize,
    /// Units belonging to this worker.
    pub units_assigned: usize,
    /// Of those, already committed before this run.
    pub units_skipped: usize,
    /// Committed by this run.
    pub units_committed: usize,
    /// Failed in this run (not committed).
    pub units_failed: Vec<FailedUnit>,
    /// Item counts over the units read from their inputs and committed by this run (retry units
    /// are counted in `retried`).
    pub counts: UnitCounts,
    /// With `--retry-failed`: what the retry units of this run did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried: Option<RetrySummary>,
    /// Bytes of shards and rejection files written by this run.
    pub bytes_written: u64,
    /// Passthrough values that did not fit their column and were stored as null.
    pub passthrough_nulled: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Items (accepted + rejected, re-tried ones included) per second of wall-clock time.
    pub items_per_s: f64,
}

/// What the retry units of a `--retry-failed` run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrySummary {
    /// Retry units planned (committed units of this worker with transient failures).
    pub units_planned: usize,
    /// Of those, committed by this run.
    pub units_committed: usize,
    /// Items fetched again.
    pub items: u64,
    /// Of those, accepted now.
    pub recovered: u64,
    /// Of those, rejected again: per reason (a transient reason may be re-tried once more).
    pub still_failing: BTreeMap<String, u64>,
}

/// Shared by every unit of a run.
struct Ctx {
    config: IngestConfig,
    writer: DatasetWriter,
    fetcher: Option<Fetcher>,
    worker: WorkerInfo,
    window: usize,
    progress: Arc<dyn Progress>,
}

/// An accepted item before dedup.
struct Accepted {
    row: ShardRow,
}

/// One item's fate before the sequential stage.
struct Outcome {
    input_bytes: u64,
    result: Result<Accepted, Rejection>,
}

/// Runs ingest: plans the inputs, skips committed units, processes this worker's other units.
/// A unit that fails is reported in the summary (and left uncommitted); a run whose output
/// cannot be opened fails as a whole.
pub async fn run(
    inputs: &[String],
    out: &str,
    config: IngestConfig,
    opts: RunOptions,
    progress: Arc<dyn Progress>,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    config
        .validate()
        .map_err(|problems| IngestError::Config(problems.to_string()))?;
    if opts.units_in_flight == 0 || opts.window == 0 {
        return Err(IngestError::Config(
            "units in flight and window must be at least 1".into(),
        ));
    }
    let root = StoreRoot::parse(out)?;
    let plans = plan_units(inputs, &config.sources).await?;
    let units_planned = plans.len();
    let mine: Vec<UnitPlan> = plans
        .into_iter()
        .enumerate()
        .filter(|(i, _)| opts.worker.owns(*i))
        .map(|(_, p)| p)
        .collect();
    let units_assigned = mine.len();

    let fingerprint = config.fingerprint();
    let manifest =
        flipstream_schemas::DatasetManifest::new(fingerprint.clone(), config.content_json());
    let writer = DatasetWriter::open(root.clone(), manifest, config.writer.clone()).await?;
    let work = Work::plan(&writer, &root, mine, opts.retry_failed).await?;
    let (fetcher, window) = fetcher_for(&work.units, &config, opts.window)?;
    let estimated: Option<u64> = work.units.iter().map(|(p, _)| p.estimated_items).sum();
    if let Some(n) = estimated {
        progress.set_total(n);
    }
    let ctx = Arc::new(Ctx {
        config,
        writer,
        fetcher,
        worker: WorkerInfo {
            index: opts.worker.index,
            count: opts.worker.count,
            host: host_name(),
        },
        window,
        progress: progress.clone(),
    });

    let results: Vec<(UnitPlan, UnitOutcome)> = futures::stream::iter(work.units)
        .map(|(plan, retry)| {
            let ctx = ctx.clone();
            async move {
                let r = run_unit(&ctx, &plan, retry).await;
                (plan, r)
            }
        })
        .buffer_unordered(opts.units_in_flight)
        .collect()
        .await;
    progress.finish();

    let retried = opts.retry_failed.then(|| RetrySummary {
        units_planned: work.retry_units,
        ..Default::default()
    });
    let done = Outcomes::tally(results, retried);
    let elapsed_s = started.elapsed().as_secs_f64();
    let items = done.counts.read + done.retried.as_ref().map_or(0, |r| r.items);
    Ok(IngestSummary {
        dataset: root.url().to_string(),
        config_fingerprint: fingerprint,
        worker: opts.worker,
        units_planned,
        units_assigned,
        units_skipped: work.skipped,
        units_committed: done.units_committed,
        units_failed: done.units_failed,
        items_per_s: if elapsed_s > 0.0 {
            items as f64 / elapsed_s
        } else {
            0.0
        },
        counts: done.counts,
        retried: done.retried,
        bytes_written: done.bytes_written,
        passthrough_nulled: done.passthrough_nulled,
        elapsed_s,
    })
}

/// This worker's units still to do: the uncommitted ones, then (with `--retry-failed`) a retry
/// unit for each committed one with transient failures.
struct Work {
    units: Vec<(UnitPlan, Option<RetryUnit>)>,
    /// Units already committed (not redone).
    skipped: usize,
    /// Retry units among `units`.
    retry_units: usize,
}

impl Work {
    async fn plan(
        writer: &DatasetWriter,
        root: &StoreRoot,
        mine: Vec<UnitPlan>,
        retry_failed: bool,
    ) -> Result<Self, IngestError> {
        let committed = writer.committed_units().await?;
        let (done, todo): (Vec<UnitPlan>, Vec<UnitPlan>) = mine
            .into_iter()
            .partition(|p| committed.contains(&p.spec.id));
        let retries = if retry_failed {
            let ds = Dataset::open_root(root.clone()).await?;
            plan_retries(&ds, &done).await?
        } else {
            Vec::new()
        };
        let retry_units = retries.len();
        let units = todo
            .into_iter()
            .map(|p| (p, None))
            .chain(retries.into_iter().map(|r| (r.plan.clone(), Some(r))))
            .collect();
        Ok(Self {
            units,
            skipped: done.len(),
            retry_units,
        })
    }
}

/// The URL fetcher when some unit is a URL list, and the window of items in flight per unit
/// (at least the fetch concurrency then).
fn fetcher_for(
    units: &[(UnitPlan, Option<RetryUnit>)],
    config: &IngestConfig,
    window: usize,
) -> Result<(Option<Fetcher>, usize), IngestError> {
    let urls = units
        .iter()
        .any(|(p, _)| p.kind == crate::source::SourceKind::UrlList);
    if !urls {
        return Ok((None, window));
    }
    let fetcher = Fetcher::new(config.fetch.clone())?;
    Ok((Some(fetcher), window.max(config.fetch.concurrency)))
}

/// What the units of a run came to.
struct Outcomes {
    counts: UnitCounts,
    units_committed: usize,
    units_failed: Vec<FailedUnit>,
    bytes_written: u64,
    passthrough_nulled: u64,
    retried: Option<RetrySummary>,
}

impl Outcomes {
    /// Sums the committed units (retry units into `retried`, when retrying) and lists the failed
    /// ones by unit id.
    fn tally(results: Vec<(UnitPlan, UnitOutcome)>, retried: Option<RetrySummary>) -> Self {
        let mut done = Self {
            counts: UnitCounts::default(),
            units_committed: 0,
            units_failed: Vec::new(),
            bytes_written: 0,
            passthrough_nulled: 0,
            retried,
        };
        for (plan, r) in results {
            match r {
                Ok((record, stats)) => {
                    done.units_committed += 1;
                    match (done.retried.as_mut(), &record.retry) {
                        (Some(summary), Some(_)) => summary.add(&record.counts),
                        _ => done.counts.merge(&record.counts),
                    }
                    done.bytes_written += record.shards.iter().map(|s| s.bytes).sum::<u64>()
                        + record.rejections.as_ref().map_or(0, |f| f.bytes);
                    done.passthrough_nulled += stats.extras_nulled;
                }
                Err(e) => done.units_failed.push(FailedUnit {
                    unit: plan.spec.id,
                    source: plan.spec.source,
                    error: e.to_string(),
                }),
            }
        }
        done.units_failed.sort_by(|a, b| a.unit.cmp(&b.unit));
        done
    }
}

impl RetrySummary {
    /// Adds a committed retry unit's counts.
    fn add(&mut self, counts: &UnitCounts) {
        self.units_committed += 1;
        self.items += counts.read;
        self.recovered += counts.accepted;
        for (reason, n) in &counts.rejected_by_reason {
            *self.still_failing.entry(reason.clone()).or_insert(0) += n;
        }
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// What running one unit gives: its commit record and the reader's counts, or why it failed.
type UnitOutcome = Result<(flipstream_schemas::CommitRecord, SourceStats), UnitError>;

/// Reads, processes and commits one unit; a retry unit reads only the items its filter admits,
/// checks duplicates against the rows accepted before it and records what it superseded.
async fn run_unit(ctx: &Arc<Ctx>, plan: &UnitPlan, retry: Option<RetryUnit>) -> UnitOutcome {
    let (filter, retry) = match retry {
        Some(RetryUnit {
            info,
            filter,
            accepted,
            ..
        }) => (Some(filter), Some((info, accepted))),
        None => (None, None),
    };
    let (rx, fields_rx, reader) = spawn_reader(ctx, plan, filter);
    let fields = fields_rx
        .await
        .map_err(|_| UnitError::Join("reader stopped before opening the input".into()))??;
    let schema = shard_schema_with_extras(&fields);
    let mut unit = ctx
        .writer
        .begin_unit(plan.spec.clone(), schema.clone(), ctx.worker.clone())
        .await?;
    let mut rows = ShardBatchBuilder::new(schema);
    let mut dedup = Dedup::new(ctx.config.dedup.clone());
    for a in retry.iter().flat_map(|(_, accepted)| accepted) {
        dedup.insert(&a.key, a.content_hash, a.phash);
    }
    let row_group = ctx.config.writer.row_group_rows;
    let (mut read, mut input_bytes) = (0u64, 0u64);

    let items =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let mut outcomes = Box::pin(
        items
            .map(|item| {
                let ctx = ctx.clone();
                async move {
                    match item {
                        Ok(item) => Ok(prepare(ctx, item).await),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(ctx.window),
    );

    let mut keys = HashSet::new();
    while let Some(outcome) = outcomes.next().await {
        let outcome = outcome?;
        read += 1;
        input_bytes += outcome.input_bytes;
        ctx.progress.advance(1);
        match repeated_key(outcome.result, &mut keys) {
            Err(rejection) => unit.reject(&rejection),
            Ok(Accepted { row }) => {
                if let Some((reason, detail)) = dedup.check(&row.content_hash, row.phash) {
                    unit.reject(&Rejection {
                        key: row.key,
                        source: row.source,
                        url: row.url,
                        reason,
                        detail,
                    });
                    continue;
                }
                dedup.insert(&row.key, row.content_hash, row.phash);
                rows.push(row)?;
                if rows.len() >= row_group {
                    unit.write(&rows.finish()?).await?;
                }
            }
        }
    }
    drop(outcomes);
    if !rows.is_empty() {
        unit.write(&rows.finish()?).await?;
    }
    let (stats, filter) = reader.await.map_err(|e| UnitError::Join(e.to_string()))?;
    if let (Some((mut info, _)), Some(filter)) = (retry, filter) {
        info.superseded_by_reason = filter.superseded();
        unit.set_retry(info);
    }
    let record = unit.commit(read, input_bytes).await?;
    Ok((record, stats))
}

/// The reader's handles: items in order, the passthrough fields once the input is open, and the
/// thread, which ends with the source's counters and the filter (when there is one).
type Reader = (
    mpsc::Receiver<Result<RawItem, SourceError>>,
    oneshot::Receiver<Result<Vec<arrow::datatypes::Field>, SourceError>>,
    tokio::task::JoinHandle<(SourceStats, Option<KeyFilter>)>,
);

/// Starts the unit's source on its own thread (it is blocking: files, tar streams), handing items
/// over a bounded channel, so a slow consumer holds the reader back instead of filling memory.
/// With a `filter`, only the items it admits are handed over.
fn spawn_reader(ctx: &Ctx, plan: &UnitPlan, mut filter: Option<KeyFilter>) -> Reader {
    let (tx, rx) = mpsc::channel::<Result<RawItem, SourceError>>(ctx.window);
    let (fields_tx, fields_rx) = oneshot::channel();
    let reader_plan = plan.clone();
    let options = ctx.config.sources.clone();
    let handle = tokio::runtime::Handle::current();
    let reader = tokio::task::spawn_blocking(move || {
        let mut source = match open_unit(&reader_plan, &options, handle) {
            Ok(s) => s,
            Err(e) => {
                let _ = fields_tx.send(Err(e));
                return (SourceStats::default(), filter);
            }
        };
        let _ = fields_tx.send(Ok(source.extra_fields().to_vec()));
        while let Some(item) = source.next_item() {
            if let (Ok(it), Some(f)) = (&item, filter.as_mut())
                && !f.admits(&it.key)
            {
                continue;
            }
            if tx.blocking_send(item).is_err() {
                break;
            }
        }
        (source.stats(), filter)
    });
    (rx, fields_rx, reader)
}

/// The outcome of an item, unless its key was seen before in the unit: then a `malformed_row`
/// rejection, since rows are found by key (the first occurrence is kept).
fn repeated_key(
    result: Result<Accepted, Rejection>,
    seen: &mut HashSet<String>,
) -> Result<Accepted, Rejection> {
    let (key, source, url) = match &result {
        Ok(Accepted { row }) => (&row.key, &row.source, &row.url),
        Err(r) => (&r.key, &r.source, &r.url),
    };
    if seen.insert(key.clone()) {
        return result;
    }
    Err(Rejection {
        key: key.clone(),
        source: source.clone(),
        url: url.clone(),
        reason: RejectReason::MalformedRow,
        detail: format!("key {key:?} appears more than once in this input; the first is kept"),
    })
}

/// Everything before dedup: row checks, caption, download, image processing.
async fn prepare(ctx: Arc<Ctx>, item: RawItem) -> Outcome {
    let RawItem {
        key,
        source,
        image,
        caption,
        url,
        extras,
        malformed,
        ..
    } = item;
    let url = url.or_else(|| match &image {
        ImageRef::Url(u) => Some(u.clone()),
        _ => None,
    });
    let reject = |reason: RejectReason, detail: String, input_bytes: u64| Outcome {
        input_bytes,
        result: Err(Rejection {
            key: key.clone(),
            source: source.clone(),
            url: url.clone(),
            reason,
            detail,
        }),
    };
    if let Some(detail) = malformed {
        return reject(RejectReason::MalformedRow, detail, 0);
    }
    // Captions first: a bad caption costs no download and no decode.
    let caption = match clean_caption(caption.as_deref(), &ctx.config.caption) {
        Ok(c) => c,
        Err((reason, detail)) => return reject(reason, detail, 0),
    };
    let bytes: Bytes = match image {
        ImageRef::Bytes(b) => b,
        ImageRef::Missing => {
            return reject(RejectReason::MissingImage, "no image in the item".into(), 0);
        }
        ImageRef::Url(u) => {
            let Some(fetcher) = ctx.fetcher.as_ref() else {
                return reject(RejectReason::DownloadError, NO_DOWNLOADER.into(), 0);
            };
            match fetcher.fetch(&u).await {
                Ok(f) => f.bytes,
                Err(f) => return reject(f.reason, f.detail, 0),
            }
        }
    };
    let input_bytes = bytes.len() as u64;
    if bytes.is_empty() {
        return reject(RejectReason::EmptyFile, "0 bytes".into(), 0);
    }
    let spec = ctx.config.image.clone();
    let processed = match on_rayon(move || process_image(&bytes, &spec)).await {
        Ok(result) => result,
        Err(panic) => Err((
            RejectReason::DecodeError,
            format!("image decoder panicked: {panic}"),
        )),
    };
    match processed {
        Ok((content_hash, p)) => Outcome {
            input_bytes,
            result: Ok(Accepted {
                row: ShardRow {
                    key,
                    image: p.bytes,
                    image_format: p.format.as_str(),
                    width: p.width,
                    height: p.height,
                    orig_width: p.orig_width,
                    orig_height: p.orig_height,
                    caption,
                    url,
                    source,
                    content_hash,
                    phash: p.phash,
                    extras,
                },
            }),
        },
        Err((reason, detail)) => reject(reason, detail, input_bytes),
    }
}

/// The CPU part of an item: content hash and the whole image step.
fn process_image(
    bytes: &[u8],
    spec: &ProcessSpec,
) -> Result<([u8; 32], imaging::Processed), (RejectReason, String)> {
    let hash = imaging::content_hash(bytes);
    imaging::process_for_shard(bytes, spec)
        .map(|p| (hash, p))
        .map_err(|e| (e.reason(), e.detail()))
}

/// Runs CPU work on the rayon pool and awaits it without blocking the async runtime. A panic in
/// the work (a decoder bug on hostile bytes) comes back as `Err(message)`, so one bad image is a
/// rejection rather than the end of the run.
async fn on_rayon<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string())
        });
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err("worker thread vanished".to_string()))
}
