//! The streaming machinery behind [`Loader`]: a producer thread computes each batch's slots
//! ([`EpochOrder`]), keeps the row groups of the current shuffle blocks plus a prefetch window
//! in flight on a tokio runtime ([`Fetcher`]), decodes and augments on a rayon pool straight into
//! the batch buffer, substitutes bad samples, and hands finished batches to the consumer through
//! a bounded channel. Memory is bounded by the unit window and `prefetch_batches`.
//!
//! The public face is a plain blocking iterator: the trainer calls `next()`. What went wrong on
//! the way (a row group lost, a sample substituted) is never printed here: it is queued as a
//! notice that the caller takes with [`Loader::take_notices`] and shows its own way.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use flipstream_schemas::SplitManifest;
use rayon::prelude::*;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use super::augment::Augment;
use super::batch::{Batch, substitutes};
use super::config::{LoaderConfig, Mode, Rank, SplitSelection};
use super::error::{LoaderError, LoaderResult};
use super::fetch::{Fetcher, UnitData, UnitFailure, UnitResult};
use super::order::{EpochOrder, Slot};
use super::state::LoaderState;
use super::units::Units;
use crate::tokenize::TextTokenizer;
use flipstream_shard::dataset::Dataset;

/// What a loader will iterate, known before the first batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderInfo {
    /// Units (row groups with selected rows).
    pub units: usize,
    /// Selected rows in the dataset.
    pub total_rows: u64,
    /// Batches per epoch on this rank (eval: this rank's share).
    pub batches_per_epoch: u64,
    /// Samples this rank yields per epoch.
    pub rank_samples_per_epoch: u64,
    /// Selected rows left out of each epoch (the tail under one global batch; 0 in eval).
    pub dropped_per_epoch: u64,
    /// Fingerprint of the units (goes into [`LoaderState::dataset_fingerprint`]).
    pub fingerprint: String,
    /// The state the loader starts from.
    pub start: LoaderState,
}

/// Counters since the loader started, and the notices not yet taken.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    samples: AtomicU64,
    substituted: AtomicU64,
    units_lost: AtomicU64,
    decode_failures: AtomicU64,
    notices: Mutex<Vec<String>>,
    notices_dropped: AtomicU64,
}

/// Notices kept for the caller at most; more are counted, not kept (a caller that never takes
/// them costs bounded memory).
const MAX_PENDING_NOTICES: usize = 256;

impl Counters {
    /// Queues a notice for [`Loader::take_notices`].
    fn notice(&self, text: String) {
        match self.notices.lock() {
            Ok(mut pending) if pending.len() < MAX_PENDING_NOTICES => pending.push(text),
            _ => {
                self.notices_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A snapshot of the loader's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoaderStats {
    /// Batches produced.
    pub batches: u64,
    /// Samples produced (substitutes included).
    pub samples: u64,
    /// Slots filled by a substitute.
    pub substituted: u64,
    /// Row groups that could not be read (their samples substituted).
    pub units_lost: u64,
    /// Images that did not decode (substituted).
    pub decode_failures: u64,
    /// Row groups read.
    pub row_groups_read: u64,
    /// Store reads retried.
    pub retries: u64,
    /// Bytes fetched from the store (footers and row groups).
    pub bytes_fetched: u64,
}

/// Where a loader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The first batch of this epoch.
    Epoch(u64),
    /// Where a saved state says (its settings and dataset fingerprint must match).
    State(LoaderState),
}

impl Default for Start {
    fn default() -> Self {
        Start::Epoch(0)
    }
}

impl From<LoaderState> for Start {
    fn from(state: LoaderState) -> Self {
        Start::State(state)
    }
}

/// A streaming loader for one rank: a blocking iterator of [`Batch`]es.
///
/// Create and drop it outside async code (it owns a tokio runtime). Iteration ends after
/// `config.epochs` epochs (train; never when `None`), or after this rank's share (eval). After an
/// error the iterator ends.
pub struct Loader {
    rx: Option<Receiver<LoaderResult<Batch>>>,
    producer: Option<JoinHandle<()>>,
    runtime: Option<Runtime>,
    cancel: watch::Sender<bool>,
    info: LoaderInfo,
    counters: Arc<Counters>,
    fetcher: Arc<Fetcher>,
    finished: bool,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn runtime(config: &LoaderConfig) -> LoaderResult<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads)
        .thread_name("flipstream-loader-io")
        .enable_all()
        .build()
        .map_err(|e| LoaderError::Runtime {
            what: "I/O runtime",
            detail: e.to_string(),
        })
}

impl Loader {
    /// Opens the dataset at `url` and starts streaming at `start`.
    pub fn open(url: &str, config: LoaderConfig, rank: Rank, start: Start) -> LoaderResult<Self> {
        config.validate(rank)?;
        let rt = runtime(&config)?;
        let wants_split = config.split != SplitSelection::All;
        let (dataset, split) = rt.block_on(async {
            let dataset = Dataset::open(url).await?;
            let split = if wants_split {
                dataset.split_manifest().await?
            } else {
                None
            };
            Ok::<_, LoaderError>((dataset, split))
        })?;
        Self::start(rt, &dataset, split.as_ref(), config, rank, start)
    }

    /// Streams an already opened dataset (with its split manifest, when `config.split` needs it),
    /// starting at `start`.
    pub fn from_dataset(
        dataset: &Dataset,
        split: Option<&SplitManifest>,
        config: LoaderConfig,
        rank: Rank,
        start: Start,
    ) -> LoaderResult<Self> {
        config.validate(rank)?;
        let rt = runtime(&config)?;
        Self::start(rt, dataset, split, config, rank, start)
    }

    fn start(
        rt: Runtime,
        dataset: &Dataset,
        split: Option<&SplitManifest>,
        config: LoaderConfig,
        rank: Rank,
        start: Start,
    ) -> LoaderResult<Self> {
        let units = Arc::new(Units::plan(dataset, config.split, split)?);
        let tokenizer = match &config.tokenizer {
            Some(path) => Some(TextTokenizer::from_file(path, config.context_length)?),
            None => None,
        };
        let fingerprint = units.fingerprint().to_string();
        let state = match start {
            Start::State(s) => {
                s.check_compatible(&config, &fingerprint)?;
                s
            }
            Start::Epoch(e) => LoaderState::start(&config, e, &fingerprint),
        };
        let order = EpochOrder::new(&units, &config, rank, state.epoch)?;
        if state.batch > order.batches() {
            return Err(LoaderError::State(format!(
                "batch {} is past the end of epoch {} ({} batches)",
                state.batch,
                state.epoch,
                order.batches()
            )));
        }
        let info = LoaderInfo {
            units: units.units().len(),
            total_rows: units.total_rows(),
            batches_per_epoch: order.batches(),
            rank_samples_per_epoch: order.rank_samples(),
            dropped_per_epoch: order.dropped(),
            fingerprint,
            start: state.clone(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.resolved_decode_threads())
            .thread_name(|i| format!("flipstream-loader-decode-{i}"))
            .build()
            .map_err(|e| LoaderError::Runtime {
                what: "decode pool",
                detail: e.to_string(),
            })?;
        let fetcher = Arc::new(Fetcher::new(
            dataset.root().clone(),
            &config,
            units.filter().clone(),
        ));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = sync_channel(config.prefetch_batches);
        let (cancel, cancelled) = watch::channel(false);
        let producer = Producer {
            handle: rt.handle().clone(),
            cancelled,
            fetcher: fetcher.clone(),
            units,
            augment: Augment::new(&config),
            tokenizer,
            pool,
            rank,
            config,
            state,
            order: Some(order),
            cache: HashMap::new(),
            counters: counters.clone(),
            tx,
        };
        let handle = std::thread::Builder::new()
            .name("flipstream-loader".into())
            .spawn(move || producer.run())
            .map_err(|e| LoaderError::Runtime {
                what: "producer thread",
                detail: e.to_string(),
            })?;
        Ok(Self {
            rx: Some(rx),
            producer: Some(handle),
            runtime: Some(rt),
            cancel,
            info,
            counters,
            fetcher,
            finished: false,
        })
    }

    /// What this loader iterates.
    pub fn info(&self) -> &LoaderInfo {
        &self.info
    }

    /// What went wrong since the last call (row groups lost, samples substituted), one line each,
    /// oldest first; the loader prints nothing itself. At most 256 are kept between calls, the
    /// rest summed up in a last line.
    pub fn take_notices(&self) -> Vec<String> {
        let c = &self.counters;
        let mut taken = c
            .notices
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default();
        let dropped = c.notices_dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            taken.push(format!("{dropped} more notices not kept"));
        }
        taken
    }

    /// Counters so far.
    pub fn stats(&self) -> LoaderStats {
        let c = &self.counters;
        LoaderStats {
            batches: c.batches.load(Ordering::Relaxed),
            samples: c.samples.load(Ordering::Relaxed),
            substituted: c.substituted.load(Ordering::Relaxed),
            units_lost: c.units_lost.load(Ordering::Relaxed),
            decode_failures: c.decode_failures.load(Ordering::Relaxed),
            row_groups_read: self.fetcher.row_groups_read(),
            retries: self.fetcher.retried(),
            bytes_fetched: self.fetcher.bytes_fetched(),
        }
    }
}

impl Iterator for Loader {
    type Item = LoaderResult<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let received = self.rx.as_ref().map(Receiver::recv);
        match received {
            Some(Ok(item)) => {
                if item.is_err() {
                    self.finished = true;
                }
                Some(item)
            }
            _ => {
                self.finished = true;
                let panicked = self.producer.take().is_some_and(|h| h.join().is_err());
                panicked.then_some(Err(LoaderError::ProducerGone))
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        let _ = self.cancel.send(true);
        drop(self.rx.take());
        if let Some(h) = self.producer.take() {
            let _ = h.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A unit in the window: being fetched, or fetched.
enum Pending {
    Fetching(tokio::task::JoinHandle<UnitResult>),
    Done(UnitResult),
}

/// Where one slot's sample comes from.
struct Source {
    unit: usize,
    row: u64,
}

/// The unit data and stored row of a sample, when its unit was read and holds the row.
fn sample<'a>(
    ready: &'a HashMap<usize, Arc<UnitData>>,
    s: &Source,
) -> Option<(&'a Arc<UnitData>, usize)> {
    let data = ready.get(&s.unit)?;
    Some((data, data.stored_row(s.row)?))
}

struct Producer {
    handle: Handle,
    cancelled: watch::Receiver<bool>,
    fetcher: Arc<Fetcher>,
    units: Arc<Units>,
    augment: Augment,
    tokenizer: Option<TextTokenizer>,
    pool: rayon::ThreadPool,
    rank: Rank,
    config: LoaderConfig,
    state: LoaderState,
    order: Option<EpochOrder>,
    cache: HashMap<usize, Pending>,
    counters: Arc<Counters>,
    tx: SyncSender<LoaderResult<Batch>>,
}

impl Producer {
    fn run(mut self) {
        loop {
            if self.config.mode == Mode::Train
                && self.config.epochs.is_some_and(|n| self.state.epoch >= n)
            {
                return;
            }
            let order = match self.order.take() {
                Some(o) => o,
                None => {
                    match EpochOrder::new(&self.units, &self.config, self.rank, self.state.epoch) {
                        Ok(o) => o,
                        Err(e) => {
                            let _ = self.tx.send(Err(e));
                            return;
                        }
                    }
                }
            };
            if self.state.batch >= order.batches() {
                if self.config.mode == Mode::Eval {
                    return;
                }
                self.state.epoch += 1;
                self.state.batch = 0;
                self.cache.clear();
                continue;
            }
            let mut order = order;
            let t = self.state.batch;
            let result = self.batch(&mut order, t);
            self.order = Some(order);
            let failed = result.is_err();
            if self.tx.send(result).is_err() || failed {
                return;
            }
            self.state.batch += 1;
        }
    }

    /// Waits for a fetch, unless the loader is being dropped.
    fn wait(&self, task: tokio::task::JoinHandle<UnitResult>) -> Option<UnitResult> {
        let mut cancelled = self.cancelled.clone();
        self.handle.block_on(async move {
            tokio::select! {
                joined = task => Some(joined.unwrap_or_else(|e| Err(UnitFailure::Lost {
                    detail: format!("fetch task failed: {e}"),
                }))),
                _ = cancelled.wait_for(|&c| c) => None,
            }
        })
    }

    /// Starts fetching the window of batch `t`, forgets units outside it, and returns the
    /// results of the units the batch needs.
    fn units_for(
        &mut self,
        order: &EpochOrder,
        t: u64,
        sources: &[Source],
    ) -> LoaderResult<HashMap<usize, Arc<UnitData>>> {
        // most urgent first (fetches queue on a fair semaphore): the units this batch needs,
        // then each lane's window in its reading order, the lanes interleaved
        let windows = order.window(t, self.config.prefetch_row_groups);
        let longest = windows.iter().map(|&(a, b)| b + 1 - a).max().unwrap_or(0);
        let mut wanted: BTreeSet<usize> = BTreeSet::new();
        let mut by_urgency = Vec::new();
        let ahead = (0..longest).flat_map(|step| {
            windows
                .iter()
                .filter_map(move |&(a, b)| (a + step <= b).then_some(a + step))
        });
        for u in sources
            .iter()
            .map(|s| s.unit)
            .chain(ahead.map(|k| order.unit_at(k)))
        {
            if wanted.insert(u) {
                by_urgency.push(u);
            }
        }
        self.cache.retain(|u, _| wanted.contains(u));
        for &u in &by_urgency {
            if !self.cache.contains_key(&u) {
                let Some(unit) = self.units.units().get(u).cloned() else {
                    continue;
                };
                let task = self.handle.spawn(self.fetcher.clone().fetch(unit));
                self.cache.insert(u, Pending::Fetching(task));
            }
        }
        let needed: BTreeSet<usize> = sources.iter().map(|s| s.unit).collect();
        let mut ready = HashMap::new();
        for u in needed {
            if let Some(Pending::Fetching(_)) = self.cache.get(&u)
                && let Some(Pending::Fetching(task)) = self.cache.remove(&u)
            {
                let Some(result) = self.wait(task) else {
                    return Err(LoaderError::Runtime {
                        what: "producer thread",
                        detail: "loader dropped".into(),
                    });
                };
                if let Err(UnitFailure::Lost { detail, .. }) = &result {
                    self.counters.units_lost.fetch_add(1, Ordering::Relaxed);
                    self.counters.notice(format!(
                        "row group lost, its samples are substituted: {detail}"
                    ));
                }
                self.cache.insert(u, Pending::Done(result));
            }
            match self.cache.get(&u) {
                Some(Pending::Done(Ok(data))) => {
                    ready.insert(u, data.clone());
                }
                Some(Pending::Done(Err(UnitFailure::Inconsistent {
                    location,
                    row_group,
                    detail,
                }))) => {
                    return Err(LoaderError::Inconsistent {
                        location: location.clone(),
                        row_group: *row_group,
                        detail: detail.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(ready)
    }

    fn last_lost(&self, sources: &[Source]) -> String {
        sources
            .iter()
            .find_map(|s| match self.cache.get(&s.unit) {
                Some(Pending::Done(Err(UnitFailure::Lost { detail, .. }))) => Some(detail.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "no image decoded".into())
    }

    /// Batch `t` of this rank: its samples decoded and augmented in parallel straight into the
    /// batch buffer, any that fail replaced by good samples of the same lane, then captions,
    /// tokens and passthrough values of the samples that made it.
    fn batch(&mut self, order: &mut EpochOrder, t: u64) -> LoaderResult<Batch> {
        let epoch = self.state.epoch;
        let slots: Vec<Slot> = order.rank_batch(t);
        let sources: Vec<Source> = slots
            .iter()
            .map(|s| {
                let (k, row) = order.locate(s.pos);
                Source {
                    unit: order.unit_at(k),
                    row,
                }
            })
            .collect();
        let ready = self.units_for(order, t, &sources)?;
        let n = slots.len();
        let image_bytes = self.augment.image_bytes();
        let mut images = vec![0u8; n * image_bytes];
        let (ok, failures) = self.decode_into(&mut images, &slots, &sources, &ready, epoch);
        self.report_failures(&failures, &sources, &ready);

        // fill bad slots with good samples of the same lane
        let groups: Vec<u32> = slots.iter().map(|s| s.group).collect();
        let Some(src) = substitutes(&groups, &ok) else {
            let detail = failures
                .last()
                .map(|f| f.1.clone())
                .unwrap_or_else(|| self.last_lost(&sources));
            return Err(LoaderError::BatchLost {
                epoch,
                batch: t,
                detail,
            });
        };
        let mut substituted = 0u32;
        for (i, &s) in src.iter().enumerate() {
            if s != i {
                images.copy_within(s * image_bytes..(s + 1) * image_bytes, i * image_bytes);
                substituted += 1;
            }
        }
        let picked: Vec<(&Arc<UnitData>, usize)> = src
            .iter()
            .filter_map(|&s| sample(&ready, &sources[s]))
            .collect();
        let keys: Vec<String> = picked
            .iter()
            .map(|(d, r)| d.keys.value(*r).to_string())
            .collect();
        let captions: Vec<String> = picked
            .iter()
            .map(|(d, r)| d.captions.value(*r).to_string())
            .collect();
        let extras = self.extras(&picked)?;
        let tokens = match &self.tokenizer {
            Some(tok) => Some(self.pool.install(|| tok.encode_batch(&captions))?),
            None => None,
        };
        let state_after = self.state_after(order, t);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.samples.fetch_add(n as u64, Ordering::Relaxed);
        self.counters
            .substituted
            .fetch_add(u64::from(substituted), Ordering::Relaxed);
        Ok(Batch {
            epoch,
            index: t,
            images,
            height: self.augment.size(),
            width: self.augment.size(),
            keys,
            captions,
            context_length: self
                .tokenizer
                .as_ref()
                .map_or(0, TextTokenizer::context_length),
            tokens,
            extras,
            state_after,
            substituted,
        })
    }

    /// Decodes and augments every slot's sample into its part of `images`, on the pool: whether
    /// each slot got an image, and the decode errors by slot (in slot order).
    fn decode_into(
        &self,
        images: &mut [u8],
        slots: &[Slot],
        sources: &[Source],
        ready: &HashMap<usize, Arc<UnitData>>,
        epoch: u64,
    ) -> (Vec<bool>, Vec<(usize, String)>) {
        let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
        let augment = &self.augment;
        let ok: Vec<bool> = self.pool.install(|| {
            images
                .par_chunks_mut(augment.image_bytes())
                .zip(slots.par_iter().zip(sources.par_iter()))
                .enumerate()
                .map(|(i, (dst, (slot, src)))| {
                    let Some((data, row)) = sample(ready, src) else {
                        return false;
                    };
                    match augment.apply(data.images.value(row), epoch, slot.pos, dst) {
                        Ok(()) => true,
                        Err(e) => {
                            failures
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((i, e));
                            false
                        }
                    }
                })
                .collect()
        });
        let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        failures.sort_by_key(|f| f.0);
        (ok, failures)
    }

    /// A notice per sample that did not decode (key, shard, row group, why), and the count.
    fn report_failures(
        &self,
        failures: &[(usize, String)],
        sources: &[Source],
        ready: &HashMap<usize, Arc<UnitData>>,
    ) {
        for (i, err) in failures {
            let src = &sources[*i];
            let key = sample(ready, src)
                .map(|(d, r)| d.keys.value(r).to_string())
                .unwrap_or_default();
            let location = self
                .units
                .units()
                .get(src.unit)
                .map(|u| {
                    format!(
                        "{} row group {}",
                        self.fetcher.root().location(&u.shard),
                        u.row_group
                    )
                })
                .unwrap_or_default();
            self.counters
                .notice(format!("substituting {key} ({location}): {err}"));
        }
        self.counters
            .decode_failures
            .fetch_add(failures.len() as u64, Ordering::Relaxed);
    }

    fn state_after(&self, order: &EpochOrder, t: u64) -> LoaderState {
        let mut s = self.state.clone();
        s.batch = t + 1;
        if self.config.mode == Mode::Train && s.batch >= order.batches() {
            s.epoch += 1;
            s.batch = 0;
        }
        s
    }

    /// The passthrough columns of the picked samples, one row each.
    fn extras(&self, picked: &[(&Arc<UnitData>, usize)]) -> LoaderResult<Option<RecordBatch>> {
        if self.config.extra_columns.is_empty() {
            return Ok(None);
        }
        let mut sources: Vec<&Arc<UnitData>> = Vec::new();
        let mut indices = Vec::with_capacity(picked.len());
        for (data, row) in picked {
            let idx = match sources.iter().position(|d| Arc::ptr_eq(d, data)) {
                Some(i) => i,
                None => {
                    sources.push(data);
                    sources.len() - 1
                }
            };
            indices.push((idx, *row));
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (c, name) in self.config.extra_columns.iter().enumerate() {
            let arrays: Vec<&dyn Array> = sources
                .iter()
                .filter_map(|d| d.extras.get(c).map(|a| a.as_ref()))
                .collect();
            let column = arrow::compute::interleave(&arrays, &indices).map_err(|e| {
                flipstream_shard::error::ShardError::arrow(
                    format!("gathering passthrough column `{name}`"),
                    e,
                )
            })?;
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map(Some)
            .map_err(|e| {
                LoaderError::from(flipstream_shard::error::ShardError::arrow(
                    "assembling passthrough columns",
                    e,
                ))
            })
    }
}
