//! Fetching units: ranged reads of one row group's needed columns, with open shard readers
//! (footers) cached, transient store errors retried with exponential backoff, and the split's
//! row filter applied (reading the split's holdout label columns too when it has one).
//!
//! Bytes that do not decode, and image values whose checksum differs from the commit record's
//! (damage after the commit that still decodes), are read once more before they count as
//! corrupt. A unit that cannot be read after the retries (its shard vanished, its bytes are
//! corrupt, or the store kept failing) becomes [`UnitFailure::Lost`]: its samples are substituted
//! by the batch assembler. A unit whose row count contradicts the records becomes
//! [`UnitFailure::Inconsistent`], which stops the loader: substituting would hide a stale split.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use flipstream_schemas::{checksum, columns};
use parquet::errors::ParquetError;
use tokio::sync::{OnceCell, Semaphore};

use super::config::LoaderConfig;
use super::units::{RowFilter, Unit};
use flipstream_shard::error::ShardError;
use flipstream_shard::reader::ShardReader;
use flipstream_shard::split::LabelColumns;
use flipstream_shard::store::StoreRoot;

/// The decoded columns of one unit, and which of its stored rows are selected.
#[derive(Debug)]
pub(crate) struct UnitData {
    /// `key` column (all stored rows).
    pub keys: StringArray,
    /// `caption` column.
    pub captions: StringArray,
    /// `image` column (encoded bytes).
    pub images: BinaryArray,
    /// Passthrough columns asked for, in the config's order.
    pub extras: Vec<ArrayRef>,
    /// Stored row index of each selected row, in order.
    pub rows: Vec<u32>,
}

impl UnitData {
    /// Stored row index of the `row`-th selected row.
    pub(crate) fn stored_row(&self, row: u64) -> Option<usize> {
        self.rows
            .get(usize::try_from(row).ok()?)
            .map(|&r| r as usize)
    }
}

/// Why a unit yields no samples.
#[derive(Debug, Clone)]
pub(crate) enum UnitFailure {
    /// Vanished, corrupt, or the store kept failing: its samples are substituted.
    Lost {
        /// Object, row group and cause.
        detail: String,
    },
    /// The data contradicts the dataset's records: the loader stops.
    Inconsistent {
        /// Shard location.
        location: String,
        /// Row group.
        row_group: usize,
        /// What disagrees.
        detail: String,
    },
}

/// What one fetch produced.
pub(crate) type UnitResult = Result<Arc<UnitData>, UnitFailure>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// Worth retrying (network, throttling, I/O).
    Transient,
    /// The object is gone or the store refuses it.
    Missing,
    /// The bytes are not a readable row group.
    Corrupt,
}

fn store_error_kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. } => ErrorKind::Missing,
        // the store retried already (cloud stores do): the object is as good as missing
        e if flipstream_shard::store::retry::is_exhausted(e) => ErrorKind::Missing,
        _ => ErrorKind::Transient,
    }
}

fn error_kind(e: &ShardError) -> ErrorKind {
    match e {
        ShardError::Store { source, .. } => store_error_kind(source),
        ShardError::Parquet {
            source: ParquetError::External(inner),
            ..
        } => inner
            .downcast_ref::<object_store::Error>()
            .map_or(ErrorKind::Corrupt, store_error_kind),
        _ => ErrorKind::Corrupt,
    }
}

/// Open readers by shard path, least recently used evicted first.
#[derive(Debug, Default)]
struct ReaderCache {
    map: HashMap<String, (Arc<OnceCell<ShardReader>>, u64)>,
    tick: u64,
    evicted_bytes: u64,
}

impl ReaderCache {
    fn get(&mut self, shard: &str, capacity: usize) -> Arc<OnceCell<ShardReader>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.map.get_mut(shard) {
            entry.1 = tick;
            return entry.0.clone();
        }
        while self.map.len() >= capacity.max(1) {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((cell, _)) = self.map.remove(&oldest) {
                self.evicted_bytes += cell.get().map_or(0, ShardReader::bytes_fetched);
            }
        }
        let cell = Arc::new(OnceCell::new());
        self.map.insert(shard.to_string(), (cell.clone(), tick));
        cell
    }

    fn bytes_fetched(&self) -> u64 {
        self.evicted_bytes
            + self
                .map
                .values()
                .map(|(c, _)| c.get().map_or(0, ShardReader::bytes_fetched))
                .sum::<u64>()
    }
}

/// Reads units for one loader; shared by its fetch tasks.
#[derive(Debug)]
pub(crate) struct Fetcher {
    root: StoreRoot,
    columns: Vec<String>,
    extra_columns: Vec<String>,
    filter: RowFilter,
    readers: Mutex<ReaderCache>,
    reader_capacity: usize,
    permits: Semaphore,
    retries: u32,
    backoff: Duration,
    row_groups_read: AtomicU64,
    retried: AtomicU64,
}

impl Fetcher {
    /// A fetcher reading `root` with the config's columns, retries and limits.
    pub(crate) fn new(root: StoreRoot, config: &LoaderConfig, filter: RowFilter) -> Self {
        let mut cols: Vec<String> = [columns::KEY, columns::IMAGE, columns::CAPTION]
            .map(String::from)
            .to_vec();
        for c in config.extra_columns.iter().chain(filter.label_columns()) {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
        Self {
            root,
            columns: cols,
            extra_columns: config.extra_columns.clone(),
            filter,
            readers: Mutex::new(ReaderCache::default()),
            reader_capacity: config.reader_cache,
            permits: Semaphore::new(config.max_concurrent_fetches),
            retries: config.retries,
            backoff: Duration::from_millis(config.retry_backoff_ms),
            row_groups_read: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// The dataset root.
    pub(crate) fn root(&self) -> &StoreRoot {
        &self.root
    }

    /// Bytes fetched from the store so far (footers and row groups).
    pub(crate) fn bytes_fetched(&self) -> u64 {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes_fetched()
    }

    /// Row groups read successfully so far.
    pub(crate) fn row_groups_read(&self) -> u64 {
        self.row_groups_read.load(Ordering::Relaxed)
    }

    /// Store operations retried so far.
    pub(crate) fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    async fn reader(&self, unit: &Unit) -> Result<ShardReader, ShardError> {
        let cell = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&unit.shard, self.reader_capacity);
        cell.get_or_try_init(|| ShardReader::open(&self.root, &unit.shard, Some(unit.shard_bytes)))
            .await
            .cloned()
    }

    async fn read(&self, unit: &Unit) -> Result<RecordBatch, ShardError> {
        let names: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        self.reader(unit)
            .await?
            .read_row_group(unit.row_group, Some(&names))
            .await
    }

    /// Reads `unit`, retrying transient errors.
    pub(crate) async fn fetch(self: Arc<Self>, unit: Unit) -> UnitResult {
        let location = self.root.location(&unit.shard);
        let lost = |detail: String| UnitFailure::Lost {
            detail: format!("{location} row group {}: {detail}", unit.row_group),
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(lost("the loader is shutting down".into()));
        };
        let mut attempt = 0u32;
        let batch = loop {
            let failure = match self.read(&unit).await {
                Ok(batch) => match image_damage(&batch, &unit) {
                    None => break batch,
                    Some(detail) => (ErrorKind::Corrupt, detail),
                },
                Err(e) => (error_kind(&e), e.to_string()),
            };
            let (kind, e) = failure;
            // bytes that do not decode, or images that are not the committed ones, are read once
            // more before the unit is given up: damage is reported only when a second read
            // confirms it
            let again = match kind {
                ErrorKind::Transient => attempt < self.retries,
                ErrorKind::Corrupt => attempt == 0,
                ErrorKind::Missing => false,
            };
            if !again {
                let tries = if attempt > 0 {
                    format!(" (after {attempt} retries)")
                } else {
                    String::new()
                };
                return Err(lost(format!("{e}{tries}")));
            }
            self.retried.fetch_add(1, Ordering::Relaxed);
            let delay = self
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(10));
            tokio::time::sleep(delay).await;
            attempt += 1;
        };
        self.row_groups_read.fetch_add(1, Ordering::Relaxed);
        let data = self.unit_data(&batch).map_err(lost)?;
        if data.rows.len() as u64 != unit.rows {
            return Err(UnitFailure::Inconsistent {
                location,
                row_group: unit.row_group,
                detail: format!(
                    "{} rows are selected but the dataset's records expect {} (stored rows {})",
                    data.rows.len(),
                    unit.rows,
                    batch.num_rows()
                ),
            });
        }
        Ok(Arc::new(data))
    }

    /// Stored indices of the rows the filter keeps, in order.
    fn selected_rows(&self, batch: &RecordBatch, keys: &StringArray) -> Result<Vec<u32>, String> {
        let n = batch.num_rows();
        if n > u32::MAX as usize {
            return Err(format!("{n} rows in one row group"));
        }
        let filter = match &self.filter {
            RowFilter::All => return Ok((0..n as u32).collect()),
            filter => filter,
        };
        let label_columns = filter.label_columns();
        let labels = if label_columns.is_empty() {
            None
        } else {
            Some(LabelColumns::from_batch(batch, label_columns).map_err(|e| e.to_string())?)
        };
        Ok((0..n)
            .filter(|&i| {
                let values = labels.as_ref().and_then(|l| l.values(i));
                !keys.is_null(i) && filter.keeps(keys.value(i), values.as_deref())
            })
            .map(|i| i as u32)
            .collect())
    }

    fn unit_data(&self, batch: &RecordBatch) -> Result<UnitData, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))
        };
        let keys = column(columns::KEY)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column `{}` is not utf8", columns::KEY))?
            .clone();
        let captions = column(columns::CAPTION)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column `{}` is not utf8", columns::CAPTION))?
            .clone();
        let images = column(columns::IMAGE)?
            .as_binary_opt::<i32>()
            .ok_or_else(|| format!("column `{}` is not binary", columns::IMAGE))?
            .clone();
        let extras = self
            .extra_columns
            .iter()
            .map(|c| column(c).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.selected_rows(batch, &keys)?;
        Ok(UnitData {
            keys,
            captions,
            images,
            extras,
            rows,
        })
    }
}

/// Why the image values of a fetched row group are not the committed ones (their checksum in the
/// commit record differs), if they are not; nothing to check without a recorded checksum.
fn image_damage(batch: &RecordBatch, unit: &Unit) -> Option<String> {
    let expected = unit.image_checksum.as_deref()?;
    let images = batch
        .column_by_name(columns::IMAGE)?
        .as_binary_opt::<i32>()?;
    let digests: Vec<u64> = images.iter().map(checksum::image_digest).collect();
    let found = checksum::row_group_checksum(&digests);
    (found != expected).then(|| {
        format!(
            "its image bytes are damaged: their checksum is {found}, the commit record's {expected}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_retry() {
        let nf = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert_eq!(
            error_kind(&ShardError::store("get", "x", nf)),
            ErrorKind::Missing
        );
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        };
        let wrapped = ShardError::parquet("x", ParquetError::External(Box::new(generic)));
        assert_eq!(error_kind(&wrapped), ErrorKind::Transient);
        let corrupt = ShardError::parquet("x", ParquetError::General("bad page".into()));
        assert_eq!(error_kind(&corrupt), ErrorKind::Corrupt);
    }

    #[test]
    fn reader_cache_evicts_the_least_recently_used() {
        let mut c = ReaderCache::default();
        let a = c.get("a", 2);
        c.get("b", 2);
        assert!(Arc::ptr_eq(&a, &c.get("a", 2)));
        c.get("c", 2);
        assert_eq!(c.map.len(), 2);
        assert!(c.map.contains_key("a") && c.map.contains_key("c"));
    }
}
