//! Parquet inputs: files holding the images (Hugging Face `struct<bytes, path>` or binary
//! columns, e.g. img2dataset's `jpg`), and Parquet URL lists (LAION / DataComp metadata).
//!
//! Planning reads only the footer. A unit is a slice of rows: reading it selects the row groups
//! that overlap the slice, skips rows outside it (with the page index when the file has one), and
//! streams record batches of the needed columns only. Passthrough columns keep their Arrow types
//! (text of any encoding becomes utf8).
//!
//! A batch that cannot be decoded (corrupt page) turns every remaining row of the slice into a
//! malformed item, so counts stay exact; a failure of the storage underneath is an error.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, UInt64Type};
use bytes::Bytes;
use flipstream_schemas::extra_column_name;
use flipstream_shard::reader::StoreFile;
use flipstream_shard::rows::Scalar;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use tokio::runtime::Handle;

use super::columns::{ColClass, ColumnInfo, Roles, detect, names};
use super::error::{Result, SourceError};
use super::location::Location;
use super::options::SourceOptions;
use super::{ImageRef, RawItem, SourceKind, SourceStats, UnitCtx, UnitSource};

/// Rows per batch when the file holds images (a batch holds its images in memory).
const IMAGE_BATCH_ROWS: usize = 64;
/// Rows per batch of a URL list.
const URL_BATCH_ROWS: usize = 8192;

/// What the unit reads from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Image bytes from an image column.
    Images,
    /// URLs to download.
    Urls,
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn is_binary(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

fn is_scalar(dt: &DataType) -> bool {
    dt == &DataType::Boolean || dt.is_integer() || dt.is_floating()
}

/// The class of an Arrow field (see [`ColClass`]).
fn class_of(dt: &DataType) -> ColClass {
    match dt {
        d if is_text(d) => ColClass::Text,
        d if is_binary(d) => ColClass::Bytes,
        d if is_scalar(d) => ColClass::Scalar,
        DataType::Struct(fields)
            if fields
                .iter()
                .any(|f| f.name() == "bytes" && is_binary(f.data_type())) =>
        {
            ColClass::Image
        }
        _ => ColClass::Other,
    }
}

fn column_infos(schema: &Schema) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            class: class_of(f.data_type()),
        })
        .collect()
}

/// The stored type of a passthrough column: text becomes utf8, numbers and booleans stay.
fn passthrough_type(dt: &DataType) -> DataType {
    if is_text(dt) {
        DataType::Utf8
    } else {
        dt.clone()
    }
}

/// The type a passthrough column is read as, batch by batch (one accessor per type).
fn reading_type(dt: &DataType) -> DataType {
    match dt {
        d if is_text(d) => DataType::Utf8,
        d if d.is_signed_integer() => DataType::Int64,
        d if d.is_unsigned_integer() => DataType::UInt64,
        d if d.is_floating() => DataType::Float64,
        other => other.clone(),
    }
}

fn options(page_index: bool) -> ArrowReaderOptions {
    let policy = if page_index {
        PageIndexPolicy::Optional
    } else {
        PageIndexPolicy::Skip
    };
    ArrowReaderOptions::new().with_offset_index_policy(policy)
}

fn load_local(path: &std::path::Path, uri: &str, page_index: bool) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).map_err(|e| SourceError::io(uri, e))?;
    ArrowReaderMetadata::load(&file, options(page_index)).map_err(|source| SourceError::Parquet {
        input: uri.to_string(),
        source,
    })
}

async fn load_store(
    reader: &mut StoreFile,
    uri: &str,
    page_index: bool,
) -> Result<ArrowReaderMetadata> {
    let loaded = ArrowReaderMetadata::load_async(reader, options(page_index)).await;
    loaded.map_err(|source| match reader.store_error() {
        // the storage failed (after its retries), not the file: say so, not "damaged Parquet"
        Some(detail) => SourceError::Read {
            input: uri.to_string(),
            detail,
        },
        None => SourceError::Parquet {
            input: uri.to_string(),
            source,
        },
    })
}

fn roles_of(
    meta: &ArrowReaderMetadata,
    opts: &SourceOptions,
    uri: &str,
) -> Result<(Roles, SourceKind)> {
    let cols = column_infos(meta.schema());
    let roles = detect(&cols, opts, true, uri)?;
    let kind = if roles.image.is_some() {
        SourceKind::Parquet
    } else if roles.url.is_some() {
        SourceKind::UrlList
    } else {
        return Err(SourceError::Columns {
            input: uri.to_string(),
            detail: format!(
                "neither an image column (binary or struct<bytes, path>) nor a url column was found; columns are {}",
                names(&cols)
            ),
        });
    };
    Ok((roles, kind))
}

fn total_rows(meta: &ParquetMetaData) -> u64 {
    u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0)
}

/// Reads the footer: the file's kind (images or URL list) and row count.
pub(super) async fn inspect(loc: &Location, opts: &SourceOptions) -> Result<(SourceKind, u64)> {
    let uri = loc.uri();
    let meta = match loc {
        Location::Local(path) => {
            let (path, u) = (path.clone(), uri.clone());
            tokio::task::spawn_blocking(move || load_local(&path, &u, false))
                .await
                .map_err(|e| SourceError::Read {
                    input: uri.clone(),
                    detail: format!("footer task failed: {e}"),
                })??
        }
        Location::Store { store, path, .. } => {
            let mut reader = store_file(store, path, &uri).await?;
            load_store(&mut reader, &uri, false).await?
        }
    };
    let (_, kind) = roles_of(&meta, opts, &uri)?;
    Ok((kind, total_rows(meta.metadata())))
}

/// A store's Parquet object for the async reader; its size is read here, so a missing object is
/// `NotFound` before any Parquet error. The reader keeps its storage errors apart from format
/// errors ([`StoreFile::store_error`]), like [`Tap`](super::location::Tap) for streaming reads.
async fn store_file(store: &Arc<dyn ObjectStore>, path: &Path, uri: &str) -> Result<StoreFile> {
    let size = store
        .head(path)
        .await
        .map_err(|e| SourceError::store(uri, "head", e))?
        .size;
    Ok(StoreFile::new(store.clone(), path.clone(), Some(size)))
}

/// The rows of a unit to read: the columns, row groups and rows within them, and the batch size;
/// the same for the local (sync) and the object-store (async) Parquet reader.
struct ReadSlice {
    mask: ProjectionMask,
    groups: Vec<usize>,
    selection: RowSelection,
    batch_rows: usize,
}

impl ReadSlice {
    fn apply<T>(self, builder: ArrowReaderBuilder<T>) -> ArrowReaderBuilder<T> {
        builder
            .with_projection(self.mask)
            .with_row_groups(self.groups)
            .with_row_selection(self.selection)
            .with_batch_size(self.batch_rows)
    }
}

/// The row groups overlapping `start..end` and the selection of exactly those rows within them.
fn select_rows(group_rows: &[u64], start: u64, end: u64) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for (i, &n) in group_rows.iter().enumerate() {
        let (g0, g1) = (at, at + n);
        at = g1;
        if g1 <= start || g0 >= end || n == 0 {
            continue;
        }
        groups.push(i);
        let (s0, s1) = (start.max(g0), end.min(g1));
        for (len, skip) in [(s0 - g0, true), (s1 - s0, false), (g1 - s1, true)] {
            if len > 0 {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                selectors.push(if skip {
                    RowSelector::skip(len)
                } else {
                    RowSelector::select(len)
                });
            }
        }
    }
    (groups, RowSelection::from(selectors))
}

enum Batches {
    Local(ParquetRecordBatchReader),
    Store {
        stream: ParquetRecordBatchStream<StoreFile>,
        rt: Handle,
        /// The same object, for its storage errors.
        file: StoreFile,
    },
    Empty,
}

impl Batches {
    fn next(&mut self) -> Option<std::result::Result<RecordBatch, ParquetError>> {
        match self {
            Batches::Local(r) => r.next().map(|b| b.map_err(ParquetError::from)),
            Batches::Store { stream, rt, .. } => rt.block_on(stream.next()),
            Batches::Empty => None,
        }
    }

    fn storage_failure(&self) -> Option<String> {
        match self {
            Batches::Store { file, .. } => file.store_error(),
            _ => None,
        }
    }
}

/// One batch's columns, normalised to one type per role.
struct Cols {
    image: Option<ImageCol>,
    caption: Option<CaptionCol>,
    key: Option<StringArray>,
    url: Option<StringArray>,
    extras: Vec<ArrayRef>,
}

enum ImageCol {
    Binary(BinaryArray),
    /// A Hugging Face image struct: validity of the struct, and its `bytes` child.
    Struct(ArrayRef, BinaryArray),
}

enum CaptionCol {
    Text(StringArray),
    Binary(BinaryArray),
}

fn to_utf8(a: &ArrayRef) -> std::result::Result<StringArray, String> {
    let c = cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
    c.as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| "not text".to_string())
}

fn to_binary(a: &ArrayRef) -> std::result::Result<BinaryArray, String> {
    let c = cast(a, &DataType::Binary).map_err(|e| e.to_string())?;
    c.as_binary_opt::<i32>()
        .cloned()
        .ok_or_else(|| "not binary".to_string())
}

struct ParquetSource {
    ctx: UnitCtx,
    mode: Mode,
    /// Batch column of each role (positions in the projected batch).
    roles: Roles,
    fields: Vec<Field>,
    batches: Batches,
    cols: Option<(Cols, usize)>,
    row: usize,
    produced: u64,
    total: u64,
    /// Set when a batch failed: the remaining rows become malformed items with this detail.
    broken: Option<String>,
    failed: bool,
}

/// Opens a Parquet slice.
pub(super) fn open(
    ctx: UnitCtx,
    mode: Mode,
    opts: &SourceOptions,
    rt: Handle,
) -> Result<Box<dyn UnitSource>> {
    let (meta, store_reader) = read_metadata(&ctx, &rt)?;
    let (roles, kind) = roles_of(&meta, opts, &ctx.uri)?;
    let end = check_plan(&ctx, &meta, kind, mode)?;
    let (used, batch_roles) = projection(&roles, mode);
    let schema = meta.schema().clone();
    let fields = roles
        .extras
        .iter()
        .filter_map(|&i| schema.fields().get(i))
        .map(|f| {
            Field::new(
                extra_column_name(f.name()),
                passthrough_type(f.data_type()),
                true,
            )
        })
        .collect();
    let group_rows: Vec<u64> = meta
        .metadata()
        .row_groups()
        .iter()
        .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    let (groups, selection) = select_rows(&group_rows, ctx.start, end);
    let batches = if groups.is_empty() {
        Batches::Empty
    } else {
        let slice = ReadSlice {
            mask: ProjectionMask::roots(meta.parquet_schema(), used.iter().copied()),
            groups,
            selection,
            batch_rows: if mode == Mode::Images {
                IMAGE_BATCH_ROWS
            } else {
                URL_BATCH_ROWS
            },
        };
        open_batches(&ctx, meta, store_reader, slice, rt)?
    };
    Ok(Box::new(ParquetSource {
        total: end - ctx.start,
        ctx,
        mode,
        roles: batch_roles,
        fields,
        batches,
        cols: None,
        row: 0,
        produced: 0,
        broken: None,
        failed: false,
    }))
}

/// The file's metadata (and, in a store, the reader that fetched it, reused for the rows).
fn read_metadata(ctx: &UnitCtx, rt: &Handle) -> Result<(ArrowReaderMetadata, Option<StoreFile>)> {
    match &ctx.loc {
        Location::Local(path) => Ok((load_local(path, &ctx.uri, true)?, None)),
        Location::Store { store, path, .. } => rt.block_on(async {
            let mut reader = store_file(store, path, &ctx.uri).await?;
            let meta = load_store(&mut reader, &ctx.uri, true).await?;
            Ok((meta, Some(reader)))
        }),
    }
}

/// The end row of the unit, after checking that the file still reads as planned: the same kind
/// of input, and enough rows.
fn check_plan(
    ctx: &UnitCtx,
    meta: &ArrowReaderMetadata,
    kind: SourceKind,
    mode: Mode,
) -> Result<u64> {
    let want = if mode == Mode::Images {
        SourceKind::Parquet
    } else {
        SourceKind::UrlList
    };
    if kind != want {
        return Err(ctx.unit_error(format!(
            "the file now reads as {kind}, the unit was planned as {want}"
        )));
    }
    let rows = total_rows(meta.metadata());
    let end = ctx.end.unwrap_or(rows);
    if ctx.start > end || end > rows {
        return Err(ctx.unit_error(format!(
            "rows {}..{end} do not fit the file's {rows} rows (it changed since planning)",
            ctx.start
        )));
    }
    Ok(end)
}

/// The columns to read (only the role and passthrough columns, in file order) and each role's
/// position among them.
fn projection(roles: &Roles, mode: Mode) -> (Vec<usize>, Roles) {
    let mut used: Vec<usize> = [roles.image, roles.caption, roles.key, roles.url]
        .into_iter()
        .flatten()
        .chain(roles.extras.iter().copied())
        .collect();
    used.sort_unstable();
    used.dedup();
    let at = |i: usize| used.iter().position(|&u| u == i);
    let batch_roles = Roles {
        image: if mode == Mode::Images {
            roles.image.and_then(at)
        } else {
            None
        },
        caption: roles.caption.and_then(at),
        key: roles.key.and_then(at),
        url: roles.url.and_then(at),
        extras: roles.extras.iter().filter_map(|&i| at(i)).collect(),
    };
    (used, batch_roles)
}

/// The record batches of `slice`: a sync reader on a local file, a stream on a store.
fn open_batches(
    ctx: &UnitCtx,
    meta: ArrowReaderMetadata,
    store_reader: Option<StoreFile>,
    slice: ReadSlice,
    rt: Handle,
) -> Result<Batches> {
    let parquet_err = |source| SourceError::Parquet {
        input: ctx.uri.clone(),
        source,
    };
    match (&ctx.loc, store_reader) {
        (Location::Local(path), _) => {
            let file = File::open(path).map_err(|e| SourceError::io(&ctx.uri, e))?;
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
            let reader = slice.apply(builder).build().map_err(parquet_err)?;
            Ok(Batches::Local(reader))
        }
        (Location::Store { .. }, Some(reader)) => {
            let file = reader.clone();
            let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta);
            let stream = slice.apply(builder).build().map_err(parquet_err)?;
            Ok(Batches::Store { stream, rt, file })
        }
        (Location::Store { .. }, None) => Err(ctx.unit_error("store reader missing")),
    }
}

impl ParquetSource {
    fn columns(&self, batch: &RecordBatch) -> std::result::Result<Cols, String> {
        let col = |i: Option<usize>| {
            i.and_then(|i| (i < batch.num_columns()).then(|| batch.column(i).clone()))
        };
        let image = match col(self.roles.image) {
            None => None,
            Some(a) => Some(match a.as_struct_opt() {
                Some(s) => {
                    let bytes = s
                        .column_by_name("bytes")
                        .ok_or("image struct has no bytes field")?;
                    ImageCol::Struct(a.clone(), to_binary(bytes)?)
                }
                None => ImageCol::Binary(to_binary(&a)?),
            }),
        };
        let caption = match col(self.roles.caption) {
            None => None,
            Some(a) if is_text(a.data_type()) => Some(CaptionCol::Text(to_utf8(&a)?)),
            Some(a) => Some(CaptionCol::Binary(to_binary(&a)?)),
        };
        let key = col(self.roles.key).map(|a| to_utf8(&a)).transpose()?;
        let url = col(self.roles.url).map(|a| to_utf8(&a)).transpose()?;
        let mut extras = Vec::with_capacity(self.roles.extras.len());
        for &i in &self.roles.extras {
            let a = col(Some(i)).ok_or("passthrough column missing from the batch")?;
            extras.push(cast(&a, &reading_type(a.data_type())).map_err(|e| e.to_string())?);
        }
        Ok(Cols {
            image,
            caption,
            key,
            url,
            extras,
        })
    }

    fn item(&self, cols: &Cols, r: usize) -> RawItem {
        let index = self.produced;
        let key = cols
            .key
            .as_ref()
            .filter(|k| k.is_valid(r) && !k.value(r).is_empty())
            .map_or_else(
                || self.ctx.fallback_key(self.ctx.start + index),
                |k| k.value(r).to_string(),
            );
        let url = cols
            .url
            .as_ref()
            .filter(|u| u.is_valid(r) && !u.value(r).is_empty())
            .map(|u| u.value(r).to_string());
        let caption = match &cols.caption {
            Some(CaptionCol::Text(a)) if a.is_valid(r) => {
                Some(Bytes::copy_from_slice(a.value(r).as_bytes()))
            }
            Some(CaptionCol::Binary(a)) if a.is_valid(r) => {
                Some(Bytes::copy_from_slice(a.value(r)))
            }
            _ => None,
        };
        let extras = cols
            .extras
            .iter()
            .map(|a| scalar_at(a.as_ref(), r))
            .collect();
        let (image, malformed) = match self.mode {
            Mode::Images => {
                let bytes = match &cols.image {
                    Some(ImageCol::Binary(b)) if b.is_valid(r) => Some(b.value(r)),
                    Some(ImageCol::Struct(s, b)) if s.is_valid(r) && b.is_valid(r) => {
                        Some(b.value(r))
                    }
                    _ => None,
                };
                (
                    bytes.map_or(ImageRef::Missing, |b| {
                        ImageRef::Bytes(Bytes::copy_from_slice(b))
                    }),
                    None,
                )
            }
            Mode::Urls => ImageRef::of_url(url.as_deref()),
        };
        RawItem {
            index,
            key,
            source: self.ctx.source.clone(),
            image,
            caption,
            url,
            extras,
            malformed,
        }
    }
}

/// A normalised passthrough cell as a [`Scalar`] (see [`reading_type`]).
fn scalar_at(a: &dyn Array, r: usize) -> Option<Scalar> {
    if r >= a.len() || a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Boolean => Scalar::Bool(a.as_boolean().value(r)),
        DataType::Int64 => Scalar::Int(a.as_primitive::<Int64Type>().value(r)),
        DataType::UInt64 => Scalar::UInt(a.as_primitive::<UInt64Type>().value(r)),
        DataType::Float64 => Scalar::Float(a.as_primitive::<Float64Type>().value(r)),
        DataType::Utf8 => Scalar::Str(a.as_string::<i32>().value(r).to_string()),
        _ => return None,
    })
}

impl UnitSource for ParquetSource {
    fn extra_fields(&self) -> &[Field] {
        &self.fields
    }

    fn next_item(&mut self) -> Option<Result<RawItem>> {
        if self.failed || self.produced >= self.total {
            return None;
        }
        loop {
            if let Some(detail) = &self.broken {
                let index = self.produced;
                let key = self.ctx.fallback_key(self.ctx.start + index);
                let item = self
                    .ctx
                    .malformed(index, key, detail.clone(), self.fields.len());
                self.produced += 1;
                return Some(Ok(item));
            }
            if let Some((cols, n)) = &self.cols
                && self.row < *n
            {
                let item = self.item(cols, self.row);
                self.row += 1;
                self.produced += 1;
                return Some(Ok(item));
            }
            match self.batches.next() {
                Some(Ok(batch)) => match self.columns(&batch) {
                    Ok(cols) => {
                        self.cols = Some((cols, batch.num_rows()));
                        self.row = 0;
                    }
                    Err(e) => {
                        self.broken = Some(format!(
                            "rows from {} on cannot be read: {e}",
                            self.ctx.start + self.produced
                        ))
                    }
                },
                Some(Err(e)) => {
                    if let Some(detail) = self.batches.storage_failure() {
                        self.failed = true;
                        return Some(Err(self.ctx.read_error(detail)));
                    }
                    self.broken = Some(format!(
                        "rows from {} on cannot be decoded: {e}",
                        self.ctx.start + self.produced
                    ));
                }
                None => {
                    // Fewer rows than the footer promised.
                    self.broken = Some(format!(
                        "the file ended after {} of the slice's {} rows",
                        self.produced, self.total
                    ));
                }
            }
        }
    }

    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_selection_covers_exactly_the_slice() {
        let (groups, sel) = select_rows(&[7, 7, 7, 4], 10, 20);
        assert_eq!(groups, [1, 2]);
        assert_eq!(sel.row_count(), 10);
        let (groups, sel) = select_rows(&[7, 7, 7, 4], 0, 25);
        assert_eq!(groups, [0, 1, 2, 3]);
        assert_eq!(sel.row_count(), 25);
        let (groups, _) = select_rows(&[7, 0, 7], 7, 7);
        assert!(groups.is_empty());
    }

    #[test]
    fn classes_of_arrow_types() {
        let hf = DataType::Struct(
            vec![
                Field::new("bytes", DataType::Binary, true),
                Field::new("path", DataType::Utf8, true),
            ]
            .into(),
        );
        assert_eq!(class_of(&hf), ColClass::Image);
        assert_eq!(class_of(&DataType::LargeBinary), ColClass::Bytes);
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(class_of(&dict), ColClass::Text);
        assert_eq!(passthrough_type(&dict), DataType::Utf8);
        assert_eq!(class_of(&DataType::Float16), ColClass::Scalar);
        assert_eq!(
            class_of(&DataType::List(Arc::new(Field::new(
                "x",
                DataType::Int32,
                true
            )))),
            ColClass::Other
        );
    }
}
