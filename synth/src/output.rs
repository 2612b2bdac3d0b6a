//! Writing the output: the four layouts, and the all-or-nothing staging folder.
//!
//! Everything is written into a hidden sibling `.<name>.synth-tmp-<pid>` that is renamed to the
//! output folder only when complete, so a failed run leaves no half-written output (and with
//! `Overwrite::Replace` the old output stays until the new one is in place).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, Int32Array, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use super::config::{Layout, SynthConfig};
use super::error::SynthError;
use super::pair::SynthPair;
use super::scene::Labels;
use super::sidecar::Location;

/// What to do when the output folder already exists and is not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Fail with [`SynthError::OutputExists`].
    #[default]
    Refuse,
    /// Replace it once the new output is complete.
    Replace,
}

/// The temporary sibling folder of an output, renamed into place by [`Staging::commit`]; removed
/// when dropped uncommitted.
pub(crate) struct Staging {
    out: PathBuf,
    tmp: PathBuf,
    overwrite: Overwrite,
    committed: bool,
}

fn is_nonempty_dir(path: &Path) -> Result<bool, SynthError> {
    let mut entries = fs::read_dir(path).map_err(SynthError::io(path))?;
    Ok(entries.next().is_some())
}

/// Checks an existing output path against the overwrite policy.
fn check_existing(out: &Path, overwrite: Overwrite) -> Result<(), SynthError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SynthError::OutputUnwritable {
            path: out.to_path_buf(),
            source,
        }),
        Ok(meta) if !meta.is_dir() => Err(SynthError::OutputNotDirectory {
            path: out.to_path_buf(),
        }),
        Ok(_) if overwrite == Overwrite::Refuse && is_nonempty_dir(out)? => {
            Err(SynthError::OutputExists {
                path: out.to_path_buf(),
            })
        }
        Ok(_) => Ok(()),
    }
}

impl Staging {
    /// Checks the output path and creates the temporary sibling (and missing parents).
    pub(super) fn begin(out: &Path, overwrite: Overwrite) -> Result<Staging, SynthError> {
        let name = out
            .file_name()
            .ok_or_else(|| {
                SynthError::Config(format!("output path {} has no folder name", out.display()))
            })?
            .to_string_lossy()
            .into_owned();
        check_existing(out, overwrite)?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|source| SynthError::OutputUnwritable {
            path: parent.clone(),
            source,
        })?;
        let tmp = parent.join(format!(".{name}.synth-tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(SynthError::io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(|source| SynthError::OutputUnwritable {
            path: out.to_path_buf(),
            source,
        })?;
        Ok(Staging {
            out: out.to_path_buf(),
            tmp,
            overwrite,
            committed: false,
        })
    }

    /// The folder to write into.
    pub(super) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished output into place (replacing an old one when allowed).
    pub(super) fn commit(mut self) -> Result<(), SynthError> {
        check_existing(&self.out, self.overwrite)?;
        if self.out.exists() {
            let old = self.tmp.with_file_name(format!(
                ".{}.synth-old-{}",
                self.out
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            fs::rename(&self.out, &old).map_err(SynthError::io(&self.out))?;
            fs::rename(&self.tmp, &self.out).map_err(SynthError::io(&self.out))?;
            self.committed = true;
            fs::remove_dir_all(&old).map_err(SynthError::io(&old))?;
        } else {
            fs::rename(&self.tmp, &self.out).map_err(SynthError::io(&self.out))?;
            self.committed = true;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the output itself was never touched.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The `<key>.json` member / file: img2dataset-style metadata plus the labels.
#[derive(Serialize)]
struct ItemJson<'a> {
    key: &'a str,
    url: Option<&'a str>,
    width: u32,
    height: u32,
    #[serde(flatten)]
    labels: Labels,
}

fn item_json(pair: &SynthPair) -> Vec<u8> {
    let doc = ItemJson {
        key: &pair.key,
        url: None,
        width: pair.width,
        height: pair.height,
        labels: pair.labels,
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn write_file(path: &Path, data: &[u8]) -> Result<u64, SynthError> {
    fs::write(path, data).map_err(SynthError::io(path))?;
    Ok(data.len() as u64)
}

fn file_len(path: &Path) -> Result<u64, SynthError> {
    Ok(fs::metadata(path).map_err(SynthError::io(path))?.len())
}

/// Name of shard `n` of a layout.
fn shard_name(layout: Layout, n: u64) -> String {
    match layout {
        Layout::Parquet => format!("part-{n:05}.parquet"),
        _ => format!("shard-{n:05}.tar"),
    }
}

/// Writes items of one layout, in index order.
pub(crate) enum LayoutWriter {
    Webdataset(Sharded<TarShard>),
    Parquet(Sharded<ParquetShard>),
    Folder(FolderWriter),
    Urls(UrlsWriter),
}

/// What the writer made.
pub(crate) struct Written {
    /// Shard files or the URL list.
    pub data_files: Vec<String>,
    /// Files under `images/` or `files/`.
    pub loose_files: u64,
    /// Bytes of all of them.
    pub bytes: u64,
}

impl LayoutWriter {
    pub(super) fn new(config: &SynthConfig, dir: &Path) -> Result<LayoutWriter, SynthError> {
        Ok(match config.layout {
            Layout::Webdataset => LayoutWriter::Webdataset(Sharded::new(config, dir)),
            Layout::Parquet => LayoutWriter::Parquet(Sharded::new(config, dir)),
            Layout::Folder => LayoutWriter::Folder(FolderWriter::new(dir, "images")?),
            Layout::Urls => LayoutWriter::Urls(UrlsWriter::new(config, dir)?),
        })
    }

    pub(super) fn write(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        match self {
            LayoutWriter::Webdataset(w) => w.write(pair),
            LayoutWriter::Parquet(w) => w.write(pair),
            LayoutWriter::Folder(w) => w.write(pair),
            LayoutWriter::Urls(w) => w.write(pair),
        }
    }

    pub(super) fn finish(self) -> Result<Written, SynthError> {
        match self {
            LayoutWriter::Webdataset(w) => w.finish(),
            LayoutWriter::Parquet(w) => w.finish(),
            LayoutWriter::Folder(w) => Ok(Written {
                data_files: Vec::new(),
                loose_files: w.files,
                bytes: w.bytes,
            }),
            LayoutWriter::Urls(w) => w.finish(),
        }
    }
}

/// One open shard file.
pub(crate) trait Shard: Sized {
    fn create(path: &Path) -> Result<Self, SynthError>;
    /// Appends an item; returns its location inside the shard (member or row).
    fn append(&mut self, pair: &SynthPair) -> Result<Location, SynthError>;
    fn close(self) -> Result<(), SynthError>;
}

/// Rotates shard files every `shard_size` items.
pub(crate) struct Sharded<S> {
    dir: PathBuf,
    layout: Layout,
    shard_size: u64,
    current: Option<(u64, S)>,
    files: Vec<String>,
}

impl<S: Shard> Sharded<S> {
    fn new(config: &SynthConfig, dir: &Path) -> Sharded<S> {
        Sharded {
            dir: dir.to_path_buf(),
            layout: config.layout,
            shard_size: config.shard_size,
            current: None,
            files: Vec::new(),
        }
    }

    fn write(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        let n = pair.index / self.shard_size;
        let shard = match self.current.take() {
            Some((cur, open)) if cur == n => &mut self.current.insert((cur, open)).1,
            old => {
                if let Some((_, done)) = old {
                    done.close()?;
                }
                let name = shard_name(self.layout, n);
                let created = S::create(&self.dir.join(&name))?;
                self.files.push(name);
                &mut self.current.insert((n, created)).1
            }
        };
        let mut loc = shard.append(pair)?;
        loc.shard = Some(shard_name(self.layout, n));
        Ok(loc)
    }

    fn finish(mut self) -> Result<Written, SynthError> {
        if let Some((_, shard)) = self.current.take() {
            shard.close()?;
        }
        let mut bytes = 0;
        for f in &self.files {
            bytes += file_len(&self.dir.join(f))?;
        }
        Ok(Written {
            data_files: self.files,
            loose_files: 0,
            bytes,
        })
    }
}

/// A WebDataset tar shard.
pub(crate) struct TarShard {
    path: PathBuf,
    tar: tar::Builder<BufWriter<File>>,
}

impl TarShard {
    fn member(&mut self, name: &str, data: &[u8]) -> Result<(), SynthError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, name, data)
            .map_err(SynthError::io(&self.path))
    }
}

impl Shard for TarShard {
    fn create(path: &Path) -> Result<TarShard, SynthError> {
        let file = File::create(path).map_err(SynthError::io(path))?;
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(TarShard {
            path: path.to_path_buf(),
            tar,
        })
    }

    fn append(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        let member = pair.file_name();
        if pair.file_written() {
            self.member(&member, &pair.image)?;
        }
        self.member(&format!("{}.txt", pair.key), &pair.caption)?;
        self.member(&format!("{}.json", pair.key), &item_json(pair))?;
        Ok(Location {
            member: Some(member),
            ..Location::default()
        })
    }

    fn close(self) -> Result<(), SynthError> {
        let path = self.path;
        let mut inner = self.tar.into_inner().map_err(SynthError::io(&path))?;
        inner.flush().map_err(SynthError::io(&path))
    }
}

/// The label columns shared by the Parquet layouts.
fn label_fields() -> Vec<Field> {
    vec![
        Field::new("label_shape", DataType::Utf8, false),
        Field::new("label_color", DataType::Utf8, false),
        Field::new("label_size", DataType::Utf8, false),
        Field::new("label_position", DataType::Utf8, false),
        Field::new("num_objects", DataType::Int32, false),
        Field::new("background", DataType::Utf8, false),
    ]
}

fn label_columns(labels: &[Labels]) -> Vec<ArrayRef> {
    let text = |f: fn(&Labels) -> &'static str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(labels.iter().map(f)))
    };
    vec![
        text(|l| l.shape.as_str()),
        text(|l| l.color.as_str()),
        text(|l| l.size.as_str()),
        text(|l| l.position.as_str()),
        Arc::new(Int32Array::from_iter_values(
            labels.iter().map(|l| l.num_objects as i32),
        )),
        text(|l| l.background.as_str()),
    ]
}

/// Hugging Face `datasets` feature description (schema metadata key `huggingface`).
fn hf_features(columns: &[(&str, &str)]) -> String {
    let features: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|(name, dtype)| {
            let v = if *dtype == "image" {
                serde_json::json!({"_type": "Image"})
            } else {
                serde_json::json!({"dtype": dtype, "_type": "Value"})
            };
            (name.to_string(), v)
        })
        .collect();
    serde_json::json!({"info": {"features": features}}).to_string()
}

const LABEL_DTYPES: [(&str, &str); 6] = [
    ("label_shape", "string"),
    ("label_color", "string"),
    ("label_size", "string"),
    ("label_position", "string"),
    ("num_objects", "int32"),
    ("background", "string"),
];

/// Rows per Parquet row group (and per written batch).
const ROW_GROUP_ROWS: usize = 100;

fn parquet_props(binary_column: Option<&str>) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("flipstream {} (synth)", env!("CARGO_PKG_VERSION")));
    if let Some(col) = binary_column {
        let path = ColumnPath::from(col.split('.').map(str::to_string).collect::<Vec<_>>());
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
            .set_column_compression(path, Compression::UNCOMPRESSED);
    }
    b.build()
}

/// Buffered rows of a Parquet file, flushed as record batches.
struct ParquetFile<R> {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: Vec<R>,
    to_batch: fn(&SchemaRef, &[R]) -> Result<RecordBatch, arrow::error::ArrowError>,
}

impl<R> ParquetFile<R> {
    fn create(
        path: &Path,
        schema: SchemaRef,
        props: WriterProperties,
        to_batch: fn(&SchemaRef, &[R]) -> Result<RecordBatch, arrow::error::ArrowError>,
    ) -> Result<ParquetFile<R>, SynthError> {
        let file = File::create(path).map_err(SynthError::io(path))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
            SynthError::Parquet {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(ParquetFile {
            path: path.to_path_buf(),
            schema,
            writer,
            rows: Vec::new(),
            to_batch,
        })
    }

    fn push(&mut self, row: R) -> Result<(), SynthError> {
        self.rows.push(row);
        if self.rows.len() >= ROW_GROUP_ROWS {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), SynthError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch =
            (self.to_batch)(&self.schema, &self.rows).map_err(|source| SynthError::Arrow {
                path: self.path.clone(),
                source,
            })?;
        self.rows.clear();
        self.writer
            .write(&batch)
            .map_err(|source| SynthError::Parquet {
                path: self.path.clone(),
                source,
            })
    }

    fn close(mut self) -> Result<(), SynthError> {
        self.flush()?;
        self.writer.close().map_err(|source| SynthError::Parquet {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }
}

/// A row of the Hugging Face style layout.
struct HfRow {
    key: String,
    image: Vec<u8>,
    file_name: String,
    caption: String,
    labels: Labels,
}

fn hf_schema() -> SchemaRef {
    let image_fields = vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ];
    let mut fields = vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("image", DataType::Struct(image_fields.into()), true),
        Field::new("caption", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
    ];
    fields.extend(label_fields());
    let mut columns = vec![
        ("key", "string"),
        ("image", "image"),
        ("caption", "string"),
        ("url", "string"),
    ];
    columns.extend(LABEL_DTYPES);
    let metadata: std::collections::HashMap<String, String> =
        [("huggingface".to_string(), hf_features(&columns))]
            .into_iter()
            .collect();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

fn hf_batch(schema: &SchemaRef, rows: &[HfRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let image = StructArray::from(vec![
        (
            Arc::new(Field::new("bytes", DataType::Binary, true)),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.image.as_slice()),
            )) as ArrayRef,
        ),
        (
            Arc::new(Field::new("path", DataType::Utf8, true)),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.file_name.as_str()),
            )) as ArrayRef,
        ),
    ]);
    let labels: Vec<Labels> = rows.iter().map(|r| r.labels).collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.as_str()),
        )),
        Arc::new(image),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.caption.as_str()),
        )),
        Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
    ];
    columns.extend(label_columns(&labels));
    RecordBatch::try_new(schema.clone(), columns)
}

/// A Parquet shard in Hugging Face style.
pub(crate) struct ParquetShard {
    file: ParquetFile<HfRow>,
    rows: u64,
}

impl Shard for ParquetShard {
    fn create(path: &Path) -> Result<ParquetShard, SynthError> {
        let file = ParquetFile::create(
            path,
            hf_schema(),
            parquet_props(Some("image.bytes")),
            hf_batch,
        )?;
        Ok(ParquetShard { file, rows: 0 })
    }

    fn append(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        let row = self.rows;
        self.rows += 1;
        self.file.push(HfRow {
            key: pair.key.clone(),
            image: pair.image.clone(),
            file_name: pair.file_name(),
            caption: String::from_utf8_lossy(&pair.caption).into_owned(),
            labels: pair.labels,
        })?;
        Ok(Location {
            row: Some(row),
            ..Location::default()
        })
    }

    fn close(self) -> Result<(), SynthError> {
        self.file.close()
    }
}

/// Loose files `<sub>/<key>.<ext|txt|json>`.
pub(crate) struct FolderWriter {
    dir: PathBuf,
    sub: &'static str,
    files: u64,
    bytes: u64,
}

impl FolderWriter {
    fn new(root: &Path, sub: &'static str) -> Result<FolderWriter, SynthError> {
        let dir = root.join(sub);
        fs::create_dir(&dir).map_err(SynthError::io(&dir))?;
        Ok(FolderWriter {
            dir,
            sub,
            files: 0,
            bytes: 0,
        })
    }

    fn put(&mut self, name: &str, data: &[u8]) -> Result<(), SynthError> {
        self.bytes += write_file(&self.dir.join(name), data)?;
        self.files += 1;
        Ok(())
    }

    /// Writes the image file (unless `missing_file`); returns its path relative to the root.
    fn write_image(&mut self, pair: &SynthPair) -> Result<String, SynthError> {
        let name = pair.file_name();
        if pair.file_written() {
            self.put(&name, &pair.image)?;
        }
        Ok(format!("{}/{name}", self.sub))
    }

    fn write(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        let file = self.write_image(pair)?;
        self.put(&format!("{}.txt", pair.key), &pair.caption)?;
        self.put(&format!("{}.json", pair.key), &item_json(pair))?;
        Ok(Location {
            file: Some(file),
            ..Location::default()
        })
    }
}

/// A row of `urls.parquet`.
struct UrlRow {
    url: String,
    caption: String,
    uid: String,
    labels: Labels,
}

fn urls_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("url", DataType::Utf8, false),
        Field::new("caption", DataType::Utf8, false),
        Field::new("uid", DataType::Utf8, false),
    ];
    fields.extend(label_fields());
    Arc::new(Schema::new(fields))
}

fn urls_batch(
    schema: &SchemaRef,
    rows: &[UrlRow],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let labels: Vec<Labels> = rows.iter().map(|r| r.labels).collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.url.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.caption.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.uid.as_str()),
        )),
    ];
    columns.extend(label_columns(&labels));
    RecordBatch::try_new(schema.clone(), columns)
}

/// `urls.parquet` plus the files it points to under `files/`.
pub(crate) struct UrlsWriter {
    root: PathBuf,
    url_base: String,
    files: FolderWriter,
    list: ParquetFile<UrlRow>,
}

/// Name of the URL list of the `urls` layout.
pub const URL_LIST_FILE: &str = "urls.parquet";

impl UrlsWriter {
    fn new(config: &SynthConfig, root: &Path) -> Result<UrlsWriter, SynthError> {
        let files = FolderWriter::new(root, "files")?;
        let list = ParquetFile::create(
            &root.join(URL_LIST_FILE),
            urls_schema(),
            parquet_props(None),
            urls_batch,
        )?;
        Ok(UrlsWriter {
            root: root.to_path_buf(),
            url_base: config.url_base.clone(),
            files,
            list,
        })
    }

    fn write(&mut self, pair: &SynthPair) -> Result<Location, SynthError> {
        let file = self.files.write_image(pair)?;
        let url = format!("{}{file}", self.url_base);
        self.list.push(UrlRow {
            url: url.clone(),
            caption: String::from_utf8_lossy(&pair.caption).into_owned(),
            uid: pair.key.clone(),
            labels: pair.labels,
        })?;
        Ok(Location {
            file: Some(file),
            url: Some(url),
            ..Location::default()
        })
    }

    fn finish(self) -> Result<Written, SynthError> {
        self.list.close()?;
        let list_bytes = file_len(&self.root.join(URL_LIST_FILE))?;
        Ok(Written {
            data_files: vec![URL_LIST_FILE.to_string()],
            loose_files: self.files.files,
            bytes: list_bytes + self.files.bytes,
        })
    }
}
