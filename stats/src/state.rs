//! The mergeable, fixed-size state of a scan: what one row group contributes, and what all of them
//! add up to.
//!
//! A [`ScanState`] holds one [`Distribution`] per [`Metric`], image-format counts, a [`TopK`]
//! summary of caption words, two [`Distinct`] sketches (content hash, perceptual hash) and one
//! entry per passthrough column. Its size depends on the number of columns and on the fixed
//! capacities, never on the number of rows; [`ScanState::merge`] combines two states.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, UInt64Type};
use flipstream_schemas::columns;

use super::StatsError;
use super::distinct::Distinct;
use super::histogram::Distribution;
use super::metrics::Metric;
use super::topk::TopK;
use super::words;

/// Counters the caption-word summary keeps.
pub(crate) const WORD_CAPACITY: usize = 1024;
/// Counters a text passthrough column's summary keeps; fewer distinct values are counted exactly.
pub(crate) const TEXT_CAPACITY: usize = 64;

/// The fixed shard columns a scan reads (never `image`).
pub(crate) const SCAN_COLUMNS: [&str; 9] = [
    columns::IMAGE_FORMAT,
    columns::IMAGE_BYTES,
    columns::WIDTH,
    columns::HEIGHT,
    columns::ORIG_WIDTH,
    columns::ORIG_HEIGHT,
    columns::CAPTION,
    columns::CONTENT_HASH,
    columns::PHASH,
];

/// What a passthrough column is summarised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// Integers and floats.
    Numeric,
    /// Strings.
    Text,
    /// Booleans.
    Boolean,
}

impl ColumnKind {
    /// The kind of a passthrough data type (`None` for types passthrough columns cannot have).
    pub(crate) fn of(dt: &DataType) -> Option<Self> {
        match dt {
            DataType::Boolean => Some(ColumnKind::Boolean),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(ColumnKind::Text),
            DataType::Dictionary(_, v) if ColumnKind::of(v) == Some(ColumnKind::Text) => {
                Some(ColumnKind::Text)
            }
            d if d.is_integer() || d.is_floating() => Some(ColumnKind::Numeric),
            _ => None,
        }
    }

    /// `numeric`, `text` or `boolean`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Text => "text",
            ColumnKind::Boolean => "boolean",
        }
    }
}

/// State of one passthrough column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnState {
    /// Arrow type as first seen.
    pub data_type: String,
    /// Summary kind.
    pub kind: ColumnKind,
    /// Rows seen (including nulls).
    pub rows: u64,
    /// Nulls seen.
    pub nulls: u64,
    /// Numeric columns.
    pub numeric: Distribution,
    /// Text columns.
    pub text: TopK,
    /// Boolean columns: true count.
    pub trues: u64,
    /// Boolean columns: false count.
    pub falses: u64,
}

impl ColumnState {
    fn new(field: &Field, kind: ColumnKind) -> Self {
        Self {
            data_type: field.data_type().to_string(),
            kind,
            rows: 0,
            nulls: 0,
            numeric: Distribution::new(None),
            text: TopK::new(TEXT_CAPACITY),
            trues: 0,
            falses: 0,
        }
    }

    fn merge(&mut self, other: &ColumnState) {
        self.rows += other.rows;
        self.nulls += other.nulls;
        self.numeric.merge(&other.numeric);
        self.text.merge(&other.text);
        self.trues += other.trues;
        self.falses += other.falses;
    }
}

/// The mergeable scan state; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScanState {
    /// Rows observed.
    pub rows: u64,
    /// One per [`Metric`], indexed by [`Metric::index`].
    pub metrics: Vec<Distribution>,
    /// Rows per image format.
    pub formats: BTreeMap<String, u64>,
    /// Caption words.
    pub words: TopK,
    /// Word occurrences counted.
    pub words_counted: u64,
    /// Distinct content hashes.
    pub content_hashes: Distinct,
    /// Distinct perceptual hashes.
    pub phashes: Distinct,
    /// Passthrough columns by name (a name seen with two kinds gets a second entry,
    /// `name [kind]`).
    pub columns: BTreeMap<String, ColumnState>,
}

impl Default for ScanState {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a batch came from, for messages.
pub(crate) struct BatchOrigin<'a> {
    /// Full location of the shard.
    pub shard: &'a str,
    /// Row group.
    pub row_group: usize,
}

impl BatchOrigin<'_> {
    fn error(&self, column: &str, detail: impl Into<String>) -> StatsError {
        StatsError::Column {
            path: format!("{} row group {}", self.shard, self.row_group),
            column: column.to_string(),
            detail: detail.into(),
        }
    }
}

fn column<'b>(
    batch: &'b RecordBatch,
    name: &str,
    origin: &BatchOrigin<'_>,
) -> Result<&'b ArrayRef, StatsError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| origin.error(name, "missing from the row group"))
}

fn cast(
    col: &ArrayRef,
    to: &DataType,
    name: &str,
    origin: &BatchOrigin<'_>,
) -> Result<ArrayRef, StatsError> {
    if col.data_type() == to {
        return Ok(col.clone());
    }
    arrow::compute::cast(col, to).map_err(|e| {
        origin.error(
            name,
            format!("cannot read {} as {to}: {e}", col.data_type()),
        )
    })
}

/// Values of a numeric column as f64 (nulls as `None`).
fn f64s(
    batch: &RecordBatch,
    name: &str,
    origin: &BatchOrigin<'_>,
) -> Result<Vec<Option<f64>>, StatsError> {
    let col = cast(
        column(batch, name, origin)?,
        &DataType::Float64,
        name,
        origin,
    )?;
    Ok(col.as_primitive::<Float64Type>().iter().collect())
}

impl ScanState {
    /// An empty state.
    pub(crate) fn new() -> Self {
        Self {
            rows: 0,
            metrics: Metric::ALL
                .iter()
                .map(|m| Distribution::new(Some(m.bins())))
                .collect(),
            formats: BTreeMap::new(),
            words: TopK::new(WORD_CAPACITY),
            words_counted: 0,
            content_hashes: Distinct::new(),
            phashes: Distinct::new(),
            columns: BTreeMap::new(),
        }
    }

    fn metric(&mut self, m: Metric) -> &mut Distribution {
        &mut self.metrics[m.index()]
    }

    /// Observes one row group read with [`SCAN_COLUMNS`] plus the shard's `passthrough` columns.
    pub(crate) fn observe(
        &mut self,
        batch: &RecordBatch,
        passthrough: &[Field],
        origin: &BatchOrigin<'_>,
    ) -> Result<(), StatsError> {
        let n = batch.num_rows();
        self.rows += n as u64;
        let w = f64s(batch, columns::WIDTH, origin)?;
        let h = f64s(batch, columns::HEIGHT, origin)?;
        let ow = f64s(batch, columns::ORIG_WIDTH, origin)?;
        let oh = f64s(batch, columns::ORIG_HEIGHT, origin)?;
        let bytes = f64s(batch, columns::IMAGE_BYTES, origin)?;
        for i in 0..n {
            let (w, h, ow, oh) = (w[i], h[i], ow[i], oh[i]);
            // schema v1 columns are non-null; a null (a rewritten file) is skipped, not invented
            if let (Some(w), Some(h)) = (w, h) {
                self.metric(Metric::Width).add(w);
                self.metric(Metric::Height).add(h);
                self.metric(Metric::AspectRatio).add(w / h);
                self.metric(Metric::Megapixels).add(w * h / 1e6);
            }
            if let (Some(ow), Some(oh)) = (ow, oh) {
                self.metric(Metric::OrigWidth).add(ow);
                self.metric(Metric::OrigHeight).add(oh);
                self.metric(Metric::OrigAspectRatio).add(ow / oh);
                self.metric(Metric::OrigMegapixels).add(ow * oh / 1e6);
            }
            if let Some(b) = bytes[i] {
                self.metric(Metric::ImageBytes).add(b);
            }
        }

        let formats = cast(
            column(batch, columns::IMAGE_FORMAT, origin)?,
            &DataType::Utf8,
            columns::IMAGE_FORMAT,
            origin,
        )?;
        for f in formats.as_string::<i32>().iter().flatten() {
            *self.formats.entry(f.to_string()).or_insert(0) += 1;
        }

        let captions = cast(
            column(batch, columns::CAPTION, origin)?,
            &DataType::Utf8,
            columns::CAPTION,
            origin,
        )?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for caption in captions.as_string::<i32>().iter().flatten() {
            self.metrics[Metric::CaptionChars.index()].add(words::char_count(caption) as f64);
            self.metrics[Metric::CaptionWords.index()].add(words::word_count(caption) as f64);
            words::for_each_topic_word(caption, |word| {
                self.words_counted += 1;
                match counts.get_mut(word) {
                    Some(c) => *c += 1,
                    None => {
                        counts.insert(word.to_string(), 1);
                    }
                }
            });
        }
        self.words.merge(&TopK::from_counts(WORD_CAPACITY, counts));

        let hashes = column(batch, columns::CONTENT_HASH, origin)?;
        match hashes.data_type() {
            DataType::FixedSizeBinary(_) => {
                for v in hashes.as_fixed_size_binary().iter().flatten() {
                    self.content_hashes.add(v);
                }
            }
            _ => {
                let b = cast(hashes, &DataType::Binary, columns::CONTENT_HASH, origin)?;
                for v in b.as_binary::<i32>().iter().flatten() {
                    self.content_hashes.add(v);
                }
            }
        }
        let phash = cast(
            column(batch, columns::PHASH, origin)?,
            &DataType::UInt64,
            columns::PHASH,
            origin,
        )?;
        for v in phash.as_primitive::<UInt64Type>().iter().flatten() {
            self.phashes.add(&v.to_le_bytes());
        }

        for field in passthrough {
            self.observe_column(batch, field, origin)?;
        }
        Ok(())
    }

    fn observe_column(
        &mut self,
        batch: &RecordBatch,
        field: &Field,
        origin: &BatchOrigin<'_>,
    ) -> Result<(), StatsError> {
        let name = field.name();
        let Some(kind) = ColumnKind::of(field.data_type()) else {
            return Err(origin.error(
                name,
                format!("type {} is not a passthrough type", field.data_type()),
            ));
        };
        let col = column(batch, name, origin)?;
        let key = match self.columns.get(name.as_str()) {
            Some(existing) if existing.kind != kind => format!("{name} [{}]", kind.as_str()),
            _ => name.clone(),
        };
        let state = self
            .columns
            .entry(key)
            .or_insert_with(|| ColumnState::new(field, kind));
        state.rows += col.len() as u64;
        state.nulls += col.null_count() as u64;
        match kind {
            ColumnKind::Numeric => {
                for v in f64s(batch, name, origin)?.into_iter().flatten() {
                    state.numeric.add(v);
                }
            }
            ColumnKind::Boolean => {
                for v in col.as_boolean().iter().flatten() {
                    if v {
                        state.trues += 1
                    } else {
                        state.falses += 1
                    }
                }
            }
            ColumnKind::Text => {
                let s = cast(col, &DataType::Utf8, name, origin)?;
                let mut counts: HashMap<&str, u64> = HashMap::new();
                for v in s.as_string::<i32>().iter().flatten() {
                    *counts.entry(v).or_insert(0) += 1;
                }
                state.text.merge(&TopK::from_counts(TEXT_CAPACITY, counts));
            }
        }
        Ok(())
    }

    /// Adds another state.
    pub(crate) fn merge(&mut self, other: &ScanState) {
        self.rows += other.rows;
        for (a, b) in self.metrics.iter_mut().zip(&other.metrics) {
            a.merge(b);
        }
        for (k, v) in &other.formats {
            *self.formats.entry(k.clone()).or_insert(0) += v;
        }
        self.words.merge(&other.words);
        self.words_counted += other.words_counted;
        self.content_hashes.merge(&other.content_hashes);
        self.phashes.merge(&other.phashes);
        for (k, v) in &other.columns {
            match self.columns.get_mut(k) {
                Some(mine) if mine.kind == v.kind => mine.merge(v),
                Some(_) => {
                    let key = format!("{k} [{}]", v.kind.as_str());
                    self.columns
                        .entry(key)
                        .and_modify(|m| m.merge(v))
                        .or_insert_with(|| v.clone());
                }
                None => {
                    self.columns.insert(k.clone(), v.clone());
                }
            }
        }
    }
}
