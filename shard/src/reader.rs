//! Reading committed shards: ranged reads of single row groups, only the columns asked for.
//!
//! [`ShardReader::open`] fetches the footer once (one ranged GET when the size is known from the
//! commit record, a suffix GET otherwise); each [`ShardReader::read_row_group`] then fetches just
//! that row group's column chunks. Every byte fetched is counted ([`ShardReader::bytes_fetched`]),
//! so tools can show how little of a dataset they had to read. [`StoreFile`], the async Parquet
//! reader of an object underneath, also serves the stats samples and ingest's Parquet source.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{
    AsyncFileReader, MetadataSuffixFetch, ParquetRecordBatchStreamBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Result, ShardError};
use crate::store::StoreRoot;

/// The first error of the storage below a decoder, shared by clones: a read that failed because
/// the network or the disk did can then be told from a damaged file, whose error the decoder
/// reports in its own words. Used by [`StoreFile`] and by ingest's streaming inputs.
#[derive(Debug, Clone, Default)]
pub struct FirstError(Arc<Mutex<Option<String>>>);

impl FirstError {
    /// Records an error; only the first one is kept (the root cause, not a later consequence).
    pub fn record(&self, message: impl FnOnce() -> String) {
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(message());
        }
    }

    /// The recorded error, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|e| e.clone())
    }
}

/// Parquet's view of one object in a store, the one async Parquet reader of the project: ranged
/// GETs (the footer in one request when the size is known, a suffix GET otherwise), every byte
/// counted, and the first storage error kept, so a caller can tell a failed read (network, disk)
/// from a damaged file. Clones share the counter and the error.
#[derive(Debug, Clone)]
pub struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: Option<u64>,
    fetched: Arc<AtomicU64>,
    store_error: FirstError,
}

impl StoreFile {
    /// The object at `path`; `size`, when known (a commit record, a HEAD), saves a request.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, size: Option<u64>) -> Self {
        Self {
            store,
            path,
            size,
            fetched: Arc::new(AtomicU64::new(0)),
            store_error: FirstError::default(),
        }
    }

    /// The same reader, adding the bytes it fetches to `counter` (shared by many files).
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Self {
        self.fetched = counter;
        self
    }

    /// Bytes fetched so far by this reader and its clones.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The first error of the store itself (not of the Parquet decoding above it), if any.
    pub fn store_error(&self) -> Option<String> {
        self.store_error.get()
    }

    fn tally<T>(
        &self,
        result: object_store::Result<T>,
        len: impl Fn(&T) -> usize,
    ) -> parquet::errors::Result<T> {
        match result {
            Ok(v) => {
                self.fetched.fetch_add(len(&v) as u64, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                self.store_error.record(|| e.to_string());
                Err(ParquetError::External(Box::new(e)))
            }
        }
    }
}

impl AsyncFileReader for StoreFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let got = self.store.get_range(&self.path, range).await;
            self.tally(got, Bytes::len)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let got = self.store.get_ranges(&self.path, &ranges).await;
            self.tally(got, |v| v.iter().map(Bytes::len).sum())
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            // the page-index policies of `options` are honoured
            let reader = ParquetMetaDataReader::new().with_arrow_reader_options(options);
            let meta = match self.size {
                Some(size) => reader.load_and_finish(self, size).await?,
                None => reader.load_via_suffix_and_finish(self).await?,
            };
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut StoreFile {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let options = GetOptions {
                range: Some(GetRange::Suffix(suffix as u64)),
                ..Default::default()
            };
            let got = match self.store.get_opts(&self.path, options).await {
                Ok(resp) => resp.bytes().await,
                Err(e) => Err(e),
            };
            self.tally(got, Bytes::len)
        }
        .boxed()
    }
}

/// An open shard (footer read, cached). Clones share the byte counter.
#[derive(Debug, Clone)]
pub struct ShardReader {
    root: StoreRoot,
    path: String,
    file: StoreFile,
    meta: ArrowReaderMetadata,
}

impl ShardReader {
    /// Opens `path` (relative to `root`); `size`, when known from the commit record, saves a
    /// request.
    pub async fn open(root: &StoreRoot, path: &str, size: Option<u64>) -> Result<Self> {
        let mut file = StoreFile::new(root.store().clone(), Path::from(path), size);
        let meta = ArrowReaderMetadata::load_async(&mut file, ArrowReaderOptions::new())
            .await
            .map_err(|e| ShardError::parquet(root.location(path), e))?;
        Ok(Self {
            root: root.clone(),
            path: path.to_string(),
            file,
            meta,
        })
    }

    /// Bytes fetched from the store so far (footer and row groups) by this reader and its clones.
    pub fn bytes_fetched(&self) -> u64 {
        self.file.bytes_fetched()
    }

    /// The path, relative to the dataset root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The Arrow schema (schema v1 plus passthrough columns).
    pub fn schema(&self) -> &SchemaRef {
        self.meta.schema()
    }

    /// Number of row groups.
    pub fn num_row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// Rows per row group.
    pub fn row_group_rows(&self) -> Vec<u64> {
        self.meta
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .collect()
    }

    /// The Parquet metadata (footer).
    pub fn metadata(&self) -> &Arc<parquet::file::metadata::ParquetMetaData> {
        self.meta.metadata()
    }

    /// Reads one row group. `columns` selects top-level columns by name (`None`: all); asking for
    /// a column the shard lacks is an error naming it.
    pub async fn read_row_group(
        &self,
        index: usize,
        columns: Option<&[&str]>,
    ) -> Result<RecordBatch> {
        let location = self.root.location(&self.path);
        if index >= self.num_row_groups() {
            return Err(ShardError::BadRecord {
                path: location,
                detail: format!(
                    "row group {index} out of range ({} row groups)",
                    self.num_row_groups()
                ),
            });
        }
        let schema = self.schema().clone();
        let mask = match columns {
            None => ProjectionMask::all(),
            Some(names) => {
                let mut roots = Vec::with_capacity(names.len());
                for name in names {
                    let idx = schema.index_of(name).map_err(|_| ShardError::BadRecord {
                        path: location.clone(),
                        detail: format!("no column `{name}`"),
                    })?;
                    roots.push(idx);
                }
                ProjectionMask::roots(self.meta.metadata().file_metadata().schema_descr(), roots)
            }
        };
        let rows = self
            .row_group_rows()
            .get(index)
            .copied()
            .unwrap_or(0)
            .max(1) as usize;
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            self.file.clone(),
            self.meta.clone(),
        )
        .with_row_groups(vec![index])
        .with_projection(mask)
        .with_batch_size(rows)
        .build()
        .map_err(|e| ShardError::parquet(format!("{location} row group {index}"), e))?;
        let batches: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| ShardError::parquet(format!("{location} row group {index}"), e))?;
        match batches.len() {
            1 => Ok(batches
                .into_iter()
                .next()
                .unwrap_or_else(|| RecordBatch::new_empty(schema))),
            _ => {
                let out_schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                arrow::compute::concat_batches(&out_schema, &batches)
                    .map_err(|e| ShardError::arrow(format!("{location} row group {index}"), e))
            }
        }
    }
}

/// Calls `f` with the values of the text columns `names` (in that order) of every row of the
/// file at `path` whose values are all non-null; only those columns are read.
pub async fn for_each_text_row(
    root: &StoreRoot,
    path: &str,
    bytes: u64,
    names: &[&str],
    mut f: impl FnMut(&[&str]),
) -> Result<()> {
    let reader = ShardReader::open(root, path, Some(bytes)).await?;
    for rg in 0..reader.num_row_groups() {
        let batch = reader.read_row_group(rg, Some(names)).await?;
        let mut texts = Vec::with_capacity(names.len());
        for name in names {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| ShardError::BadRecord {
                    path: root.location(path),
                    detail: format!("row group {rg} has no {name} column"),
                })?;
            let text = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| {
                ShardError::BadRecord {
                    path: root.location(path),
                    detail: format!("{name} column of row group {rg} is not text: {e}"),
                }
            })?;
            texts.push(text);
        }
        let texts: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let mut row = Vec::with_capacity(names.len());
        for i in 0..batch.num_rows() {
            if texts.iter().any(|t| t.is_null(i)) {
                continue;
            }
            row.clear();
            row.extend(texts.iter().map(|t| t.value(i)));
            f(&row);
        }
    }
    Ok(())
}
