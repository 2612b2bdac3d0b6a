//! Writing Parquet files to any object store: streaming multipart upload, BLAKE3 and byte count
//! computed on the way out, flipstream metadata in the footer.
//!
//! - [`WriterSettings`]: row group and shard sizes, compression (part of the dataset config).
//! - [`ParquetFile`]: one file being written; [`ParquetFile::finish`] returns its [`FileEntry`].
//! - [`ShardSink`]: a unit's shards, rotating to a new file every `shard_rows` rows or
//!   `shard_bytes` bytes, named by [`layout::shard_path`].
//!
//! An upload that never finishes leaves no object (S3/GCS/Azure multipart) or a staging file next
//! to the target (local disk); either way no commit record names it, and the commit protocol
//! removes it on the next attempt.

use arrow::array::{Array, BinaryArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use flipstream_schemas::{FileEntry, FileKind, ShardEntry, checksum, columns, layout, metadata};
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::async_writer::{AsyncArrowWriter, AsyncFileWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::error::{Result, ShardError};
use crate::problems::{Problem, Validate};
use crate::store::StoreRoot;

/// How shards are laid out. Part of the dataset configuration (it changes the files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSettings {
    /// Rows per row group: the unit a streaming loader fetches with one ranged read.
    /// 512 rows of 256-px JPEGs are about 10 MB.
    pub row_group_rows: usize,
    /// Upper bound on a row group's encoded size, whatever the row count.
    pub row_group_bytes: usize,
    /// Rows per shard file before starting the next one.
    pub shard_rows: u64,
    /// Approximate upper bound on a shard file's size.
    pub shard_bytes: u64,
    /// zstd level of the metadata columns (the already-compressed image column uses level 1).
    pub zstd_level: i32,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            row_group_rows: 512,
            row_group_bytes: 64 << 20,
            shard_rows: 10_000,
            shard_bytes: 1 << 30,
            zstd_level: 3,
        }
    }
}

impl Validate for WriterSettings {
    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, value) in [
            ("row_group_rows", self.row_group_rows as u64),
            ("shard_rows", self.shard_rows),
        ] {
            if value == 0 {
                p.push(Problem::new(key, "must be at least 1"));
            }
        }
        if self.shard_bytes < 1 << 20 {
            p.push(Problem::new("shard_bytes", "must be at least 1 MiB"));
        }
        if !(1..=22).contains(&self.zstd_level) {
            p.push(Problem::new(
                "zstd_level",
                format!("must be in 1..=22, got {}", self.zstd_level),
            ));
        }
        p
    }
}

impl WriterSettings {
    fn properties(&self, kind: FileKind, unit: &str) -> Result<WriterProperties> {
        let level = |l: i32| {
            ZstdLevel::try_new(l)
                .map(Compression::ZSTD)
                .map_err(|e| ShardError::parquet(format!("zstd level {l}"), e))
        };
        let settings_json = serde_json::to_string(self).unwrap_or_default();
        let mut b = WriterProperties::builder()
            .set_compression(level(self.zstd_level)?)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_created_by(metadata::writer_id())
            .set_key_value_metadata(Some(metadata::file_metadata(kind, unit, &settings_json)));
        if kind == FileKind::Shard {
            // Encoded images: never a dictionary, no min/max statistics, cheap compression.
            let image = ColumnPath::from(columns::IMAGE);
            b = b
                .set_column_dictionary_enabled(image.clone(), false)
                .set_column_statistics_enabled(image.clone(), EnabledStatistics::None)
                .set_column_compression(image, level(1)?);
        }
        Ok(b.build())
    }
}

/// Counts and hashes bytes on their way to the store.
struct HashingWriter {
    inner: BufWriter,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl AsyncFileWriter for HashingWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            self.hasher.update(&bs);
            self.bytes += bs.len() as u64;
            self.inner
                .put(bs)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            self.inner
                .shutdown()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}

/// One Parquet file being written.
pub struct ParquetFile {
    writer: AsyncArrowWriter<HashingWriter>,
    path: String,
    location: String,
    rows: u64,
    image_bytes: u64,
    /// Digests of the image values written so far, in row order (empty without an `image`
    /// column): grouped into row-group checksums when the file is finished.
    image_digests: Vec<u64>,
}

impl ParquetFile {
    /// Starts writing `path` (relative to `root`) with `schema`.
    pub fn create(
        root: &StoreRoot,
        path: &str,
        schema: SchemaRef,
        kind: FileKind,
        unit: &str,
        settings: &WriterSettings,
    ) -> Result<Self> {
        let location = root.location(path);
        let inner = BufWriter::new(root.store().clone(), Path::from(path));
        let sink = HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let props = settings.properties(kind, unit)?;
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| ShardError::parquet(&location, e))?;
        Ok(Self {
            writer,
            path: path.to_string(),
            location,
            rows: 0,
            image_bytes: 0,
            image_digests: Vec::new(),
        })
    }

    /// Appends a batch (its schema must be the file's).
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .map_err(|e| ShardError::parquet(&self.location, e))?;
        self.rows += batch.num_rows() as u64;
        self.image_bytes += image_value_bytes(batch);
        if let Some(images) = batch
            .column_by_name(columns::IMAGE)
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        {
            self.image_digests
                .extend(images.iter().map(checksum::image_digest));
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes uploaded so far plus the row group being built: the file's approximate size.
    pub fn approx_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Writes the footer, completes the upload and returns the file's entry with row groups.
    pub async fn finish(mut self) -> Result<ShardEntry> {
        let meta = self
            .writer
            .finish()
            .await
            .map_err(|e| ShardError::parquet(&self.location, e))?;
        let row_groups: Vec<u64> = meta
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .collect();
        let image_checksums = row_group_checksums(&self.image_digests, &row_groups);
        let sink = self.writer.into_inner();
        Ok(ShardEntry {
            path: self.path,
            rows: self.rows,
            bytes: sink.bytes,
            blake3: sink.hasher.finalize().to_hex().to_string(),
            row_groups,
            image_bytes: self.image_bytes,
            image_checksums,
        })
    }

    /// Like [`ParquetFile::finish`], as a plain [`FileEntry`].
    pub async fn finish_file(self) -> Result<FileEntry> {
        let e = self.finish().await?;
        Ok(FileEntry {
            path: e.path,
            rows: e.rows,
            bytes: e.bytes,
            blake3: e.blake3,
        })
    }
}

/// The image checksum of each row group (`rows` per row group) from the rows' digests; empty
/// when the file has no image column (or the digests do not cover its rows).
fn row_group_checksums(digests: &[u64], rows: &[u64]) -> Vec<String> {
    if digests.is_empty() || digests.len() as u64 != rows.iter().sum::<u64>() {
        return Vec::new();
    }
    let mut start = 0usize;
    rows.iter()
        .map(|&n| {
            let end = start + n as usize;
            let sum = checksum::row_group_checksum(&digests[start..end]);
            start = end;
            sum
        })
        .collect()
}

/// Sum of the encoded image sizes in a batch (0 when it has no `image` column).
fn image_value_bytes(batch: &RecordBatch) -> u64 {
    let Some(col) = batch.column_by_name(columns::IMAGE) else {
        return 0;
    };
    match col.as_any().downcast_ref::<BinaryArray>() {
        Some(a) if !a.is_empty() => {
            let offsets = a.value_offsets();
            (offsets[offsets.len() - 1] - offsets[0]).max(0) as u64
        }
        _ => 0,
    }
}

/// A unit's shards: rows go into `shards/<unit>-00000.parquet`, then `-00001`, … every
/// `shard_rows` rows or `shard_bytes` bytes.
pub struct ShardSink {
    root: StoreRoot,
    unit: String,
    schema: SchemaRef,
    settings: WriterSettings,
    current: Option<ParquetFile>,
    finished: Vec<ShardEntry>,
}

impl ShardSink {
    /// A sink for `unit`'s shards with `schema` (schema v1 plus passthrough columns).
    pub fn new(root: StoreRoot, unit: &str, schema: SchemaRef, settings: WriterSettings) -> Self {
        Self {
            root,
            unit: unit.to_string(),
            schema,
            settings,
            current: None,
            finished: Vec::new(),
        }
    }

    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends accepted rows, starting new shard files as the size limits are reached.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                let seq = u32::try_from(self.finished.len()).unwrap_or(u32::MAX);
                let path = layout::shard_path(&self.unit, seq);
                self.current = Some(ParquetFile::create(
                    &self.root,
                    &path,
                    self.schema.clone(),
                    FileKind::Shard,
                    &self.unit,
                    &self.settings,
                )?);
            }
            let Some(file) = self.current.as_mut() else {
                break;
            };
            let room = self.settings.shard_rows.saturating_sub(file.rows()).max(1) as usize;
            let take = room.min(batch.num_rows() - offset);
            file.write(&batch.slice(offset, take)).await?;
            offset += take;
            if file.rows() >= self.settings.shard_rows
                || file.approx_bytes() >= self.settings.shard_bytes
            {
                self.rotate().await?;
            }
        }
        Ok(())
    }

    async fn rotate(&mut self) -> Result<()> {
        if let Some(file) = self.current.take() {
            self.finished.push(file.finish().await?);
        }
        Ok(())
    }

    /// Finishes the open shard and returns every shard written, in order.
    pub async fn finish(mut self) -> Result<Vec<ShardEntry>> {
        self.rotate().await?;
        Ok(self.finished)
    }
}
