//! Text URL lists: CSV, TSV, JSON lines and JSON arrays, optionally gzip or zstd compressed.
//!
//! One unit per file: a compressed stream cannot be seeked, and even a plain one cannot be split
//! at a row without scanning it, so workers could not start mid-file. Large lists belong in
//! Parquet, which is sliced by row groups. CSV/TSV files need a header row (LAION `URL`,`TEXT`;
//! DataComp `uid`,`url`,`text`; any names via the column options).
//!
//! Passthrough column types are inferred from the first rows of the file (a window of
//! `INFER_ROWS`): CSV cells are guessed (bool, int, float, text) and widened, JSON values taken as
//! they are. A row without a URL, with the wrong number of fields, or a line that is not a JSON
//! object is a malformed item; a file cut short (truncated gzip) ends with one malformed item
//! saying where reading stopped.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};

use arrow::datatypes::Field;
use bytes::Bytes;
use serde_json::Value;
use tokio::runtime::Handle;

use super::columns::{ColClass, ColumnInfo, Roles, detect};
use super::error::{Result, SourceError};
use super::format::{Compression, FileFormat};
use super::location::{Location, Tap};
use super::meta::{JsonObject, TopLevel};
use super::options::{Passthrough, SourceOptions};
use super::values::{ColType, ExtraColumns, Widener, guess_text, json_scalar, parse_text_as};
use super::{ImageRef, RawItem, SourceStats, UnitCtx, UnitSource};

/// Rows read ahead to infer passthrough column types.
const INFER_ROWS: usize = 1000;

/// One row as read.
#[derive(Debug)]
enum Row {
    /// CSV/TSV cells, aligned with the header.
    Cells(csv::ByteRecord),
    /// A JSON object.
    Object(JsonObject),
    /// A row that is malformed as such.
    Bad(String),
}

/// The next thing in the file.
#[derive(Debug)]
enum Next {
    Row(Row),
    /// The file is cut short or corrupt: reading stopped here.
    Stopped(String),
    End,
}

enum Rows {
    Csv {
        reader: csv::Reader<Box<dyn Read + Send>>,
        header: Vec<String>,
    },
    Lines {
        reader: BufReader<Box<dyn Read + Send>>,
        line: u64,
    },
    Array {
        items: std::vec::IntoIter<TopLevel>,
    },
    Broken(Option<String>),
}

/// A text list being read.
struct Input {
    rows: Rows,
    tap: Tap,
    uri: String,
}

fn compression_of(format: FileFormat) -> Compression {
    match format {
        FileFormat::Delimited { compression, .. } | FileFormat::Json { compression } => compression,
        _ => Compression::None,
    }
}

impl Input {
    fn open(loc: &Location, format: FileFormat, rt: &Handle) -> Result<Self> {
        let uri = loc.uri();
        let (reader, tap) = loc.open_read(compression_of(format), rt)?;
        let rows = match format {
            FileFormat::Delimited { delimiter, .. } => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .flexible(true)
                    .from_reader(reader);
                match reader.byte_headers() {
                    Ok(h) => {
                        let mut header: Vec<String> = h
                            .iter()
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect();
                        if let Some(first) = header.first_mut() {
                            *first = first.trim_start_matches('\u{feff}').to_string();
                        }
                        Rows::Csv { reader, header }
                    }
                    Err(e) => Rows::Broken(Some(format!("cannot read the header row: {e}"))),
                }
            }
            _ => {
                let mut reader = BufReader::new(reader);
                let starts_array = match reader.fill_buf() {
                    Ok(buf) => buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
                    Err(_) => false,
                };
                if starts_array {
                    let mut all = Vec::new();
                    match reader.read_to_end(&mut all) {
                        Ok(_) => match serde_json::from_slice::<Vec<TopLevel>>(&all) {
                            Ok(items) => Rows::Array {
                                items: items.into_iter(),
                            },
                            Err(e) => {
                                Rows::Broken(Some(format!("the JSON array does not parse: {e}")))
                            }
                        },
                        Err(e) => Rows::Broken(Some(format!("reading stopped: {e}"))),
                    }
                } else {
                    Rows::Lines { reader, line: 0 }
                }
            }
        };
        Ok(Self { rows, tap, uri })
    }

    fn header(&self) -> Option<&[String]> {
        match &self.rows {
            Rows::Csv { header, .. } => Some(header),
            _ => None,
        }
    }

    /// The next row; `Err` when the storage failed.
    fn next(&mut self) -> Result<Next> {
        let next = match &mut self.rows {
            Rows::Csv { reader, header } => {
                let mut rec = csv::ByteRecord::new();
                match reader.read_byte_record(&mut rec) {
                    Ok(false) => Next::End,
                    Ok(true) if rec.len() != header.len() => {
                        let line = rec.position().map_or(0, |p| p.line());
                        Next::Row(Row::Bad(format!(
                            "line {line} has {} fields, the header has {}",
                            rec.len(),
                            header.len()
                        )))
                    }
                    Ok(true) => Next::Row(Row::Cells(rec)),
                    Err(e) => Next::Stopped(format!("reading stopped: {e}")),
                }
            }
            Rows::Lines { reader, line } => loop {
                let mut buf = Vec::new();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break Next::End,
                    Ok(_) => {
                        *line += 1;
                        if buf.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        break Next::Row(match serde_json::from_slice::<TopLevel>(&buf) {
                            Ok(TopLevel::Object(m)) => Row::Object(m),
                            Ok(TopLevel::Other(kind)) => {
                                Row::Bad(format!("line {line} is not a JSON object (found {kind})"))
                            }
                            Err(e) => Row::Bad(format!("line {line} does not parse as JSON: {e}")),
                        });
                    }
                    Err(e) => {
                        break Next::Stopped(format!("reading stopped after line {line}: {e}"));
                    }
                }
            },
            Rows::Array { items } => match items.next() {
                None => Next::End,
                Some(TopLevel::Object(m)) => Next::Row(Row::Object(m)),
                Some(TopLevel::Other(kind)) => Next::Row(Row::Bad(format!(
                    "array element is not a JSON object (found {kind})"
                ))),
            },
            Rows::Broken(detail) => detail.take().map_or(Next::End, Next::Stopped),
        };
        if matches!(next, Next::Stopped(_))
            && let Some(failure) = self.tap.failure()
        {
            return Err(SourceError::Read {
                input: self.uri.clone(),
                detail: failure,
            });
        }
        Ok(next)
    }
}

/// How a file's rows map to items.
struct Layout {
    /// Column names (CSV header, or JSON fields in order of first appearance).
    names: Vec<String>,
    roles: Roles,
    extras: ExtraColumns,
    /// Every column name seen while inferring (JSON: later fields outside it are unknown).
    known: HashSet<String>,
}

/// Reads the inference window and works out the layout; returns the rows read.
fn layout(input: &mut Input, opts: &SourceOptions) -> Result<(Layout, VecDeque<Next>)> {
    let mut window = VecDeque::new();
    let mut widener = Widener::default();
    let header = input.header().map(<[String]>::to_vec);
    if let Some(h) = &header {
        for name in h {
            widener.see(name, Ok(None));
        }
    }
    while window.len() < INFER_ROWS {
        let next = input.next()?;
        match &next {
            Next::Row(Row::Cells(rec)) => {
                for (name, cell) in header.iter().flatten().zip(rec.iter()) {
                    let v = std::str::from_utf8(cell).ok().and_then(guess_text);
                    widener.see(name, Ok(v.as_ref()));
                }
            }
            Next::Row(Row::Object(m)) => {
                for (k, v) in m.iter() {
                    widener.see(
                        k,
                        json_scalar(v).as_ref().map(Option::as_ref).map_err(|_| ()),
                    );
                }
            }
            Next::Row(Row::Bad(_)) => {}
            Next::Stopped(_) | Next::End => {
                window.push_back(next);
                break;
            }
        }
        window.push_back(next);
    }
    let is_csv = header.is_some();
    let typed = widener.finish();
    let names: Vec<String> = match header {
        Some(h) => h,
        None => typed.iter().map(|(n, _)| n.clone()).collect(),
    };
    let type_of = |n: &str| typed.iter().find(|(t, _)| t == n).map(|(_, t)| *t);
    let infos: Vec<ColumnInfo> = names
        .iter()
        .map(|n| {
            let class = match type_of(n) {
                // Every CSV cell is text to the roles (a numeric uid still is a key).
                _ if is_csv => ColClass::Text,
                Some(ColType::Str) => ColClass::Text,
                Some(_) => ColClass::Scalar,
                None => ColClass::Other,
            };
            ColumnInfo {
                name: n.clone(),
                class,
            }
        })
        .collect();
    let roles = detect(&infos, opts, false, &input.uri)?;
    if roles.url.is_none() {
        return Err(SourceError::Columns {
            input: input.uri.clone(),
            detail: format!(
                "no url column found (looked for url, URL, image_url; set the url column option); columns are {}",
                super::columns::names(&infos)
            ),
        });
    }
    let extra_cols: Vec<(String, ColType)> = roles
        .extras
        .iter()
        .filter_map(|&i| names.get(i))
        .map(|n| (n.clone(), type_of(n).unwrap_or(ColType::Str)))
        .collect();
    let extras = ExtraColumns::new(extra_cols, &[], &Passthrough::All);
    let known = names.iter().cloned().collect();
    Ok((
        Layout {
            names,
            roles,
            extras,
            known,
        },
        window,
    ))
}

/// Checks at planning time that a text list can be read and has a URL column.
pub(super) fn inspect(
    loc: &Location,
    format: FileFormat,
    opts: &SourceOptions,
    rt: &Handle,
) -> Result<()> {
    let mut input = Input::open(loc, format, rt)?;
    layout(&mut input, opts).map(|_| ())
}

struct TextListSource {
    ctx: UnitCtx,
    input: Input,
    layout: Layout,
    window: VecDeque<Next>,
    next_index: u64,
    stats: SourceStats,
    done: bool,
}

/// Opens a text list (one unit per file).
pub(super) fn open(
    ctx: UnitCtx,
    format: FileFormat,
    opts: &SourceOptions,
    rt: &Handle,
) -> Result<Box<dyn UnitSource>> {
    let mut input = Input::open(&ctx.loc, format, rt)?;
    let (layout, window) = layout(&mut input, opts)?;
    Ok(Box::new(TextListSource {
        ctx,
        input,
        layout,
        window,
        next_index: 0,
        stats: SourceStats::default(),
        done: false,
    }))
}

/// A JSON value as text (strings as they are, other scalars printed).
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => json_scalar(other).ok().flatten().map(|s| s.to_text()),
    }
}

impl TextListSource {
    fn item(&mut self, row: Row) -> RawItem {
        let index = self.next_index;
        let n = self.layout.extras.fields.len();
        let name = |i: Option<usize>| i.and_then(|i| self.layout.names.get(i)).map(String::as_str);
        let (url, caption, key, extras) = match row {
            Row::Bad(detail) => {
                return self
                    .ctx
                    .malformed(index, self.ctx.fallback_key(index), detail, n);
            }
            Row::Cells(rec) => {
                let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).filter(|c| !c.is_empty());
                let key =
                    cell(self.layout.roles.key).map(|c| String::from_utf8_lossy(c).into_owned());
                let caption = cell(self.layout.roles.caption).map(Bytes::copy_from_slice);
                let url = match cell(self.layout.roles.url).map(std::str::from_utf8) {
                    Some(Ok(u)) => Some(u.trim().to_string()),
                    Some(Err(_)) => {
                        let key = key.unwrap_or_else(|| self.ctx.fallback_key(index));
                        return self
                            .ctx
                            .malformed(index, key, "URL is not valid UTF-8".into(), n);
                    }
                    None => None,
                };
                let mut extras = Vec::with_capacity(n);
                for (i, &col) in self.layout.roles.extras.iter().enumerate() {
                    let t = self
                        .layout
                        .extras
                        .types
                        .get(i)
                        .copied()
                        .unwrap_or(ColType::Str);
                    let v = match rec.get(col).map(std::str::from_utf8) {
                        None => Ok(None),
                        Some(Ok(s)) => parse_text_as(s, t),
                        Some(Err(_)) => Err(()),
                    };
                    extras.push(self.layout.extras.fit(i, v, &mut self.stats));
                }
                (url, caption, key, extras)
            }
            Row::Object(obj) => {
                let get =
                    |i: Option<usize>| name(i).and_then(|n| obj.get(n)).filter(|v| !v.is_null());
                let key = get(self.layout.roles.key)
                    .and_then(json_text)
                    .filter(|k| !k.is_empty());
                let caption = get(self.layout.roles.caption)
                    .and_then(json_text)
                    .map(|c| Bytes::from(c.into_bytes()));
                let url = match get(self.layout.roles.url) {
                    Some(Value::String(u)) => Some(u.trim().to_string()),
                    Some(_) => {
                        let key = key.unwrap_or_else(|| self.ctx.fallback_key(index));
                        return self
                            .ctx
                            .malformed(index, key, "url is not a string".into(), n);
                    }
                    None => None,
                };
                let known = &self.layout.known;
                let extras =
                    self.layout
                        .extras
                        .values_of(&obj, |k| known.contains(k), &mut self.stats);
                (url, caption, key, extras)
            }
        };
        let key = key.unwrap_or_else(|| self.ctx.fallback_key(index));
        let url = url.filter(|u| !u.is_empty());
        let (image, malformed) = ImageRef::of_url(url.as_deref());
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

impl UnitSource for TextListSource {
    fn extra_fields(&self) -> &[Field] {
        &self.layout.extras.fields
    }

    fn next_item(&mut self) -> Option<Result<RawItem>> {
        if self.done {
            return None;
        }
        let next = match self.window.pop_front() {
            Some(n) => n,
            None => match self.input.next() {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            },
        };
        let item = match next {
            Next::End => {
                self.done = true;
                return None;
            }
            Next::Row(row) => self.item(row),
            Next::Stopped(detail) => {
                self.done = true;
                let n = self.layout.extras.fields.len();
                self.ctx.malformed(
                    self.next_index,
                    self.ctx.fallback_key(self.next_index),
                    detail,
                    n,
                )
            }
        };
        self.next_index += 1;
        Some(Ok(item))
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
