//! Building shard record batches one accepted pair at a time.
//!
//! [`ShardRow`] is one accepted pair; [`ShardBatchBuilder`] turns rows into a [`RecordBatch`] with
//! the unit's shard schema (schema v1 plus passthrough columns). Passthrough values travel as
//! [`Scalar`]s and are converted to their column's type; [`Scalar::fits`] tells beforehand whether
//! a value converts without loss, so that a source can reject an item whose metadata is malformed
//! instead of storing a null.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, FixedSizeBinaryBuilder, Float64Array, Int64Array,
    RecordBatch, StringArray, StringBuilder, StringDictionaryBuilder, UInt32Builder, UInt64Array,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, SchemaRef};
use flipstream_schemas::{CONTENT_HASH_LEN, columns};

use crate::error::{Result, ShardError};

/// A passthrough value from the input (a LAION score, a DataComp uid, a synthetic label).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Boolean.
    Bool(bool),
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    UInt(u64),
    /// Floating point.
    Float(f64),
    /// Text.
    Str(String),
}

impl Scalar {
    /// True when the value converts to `dt` without loss (nulls always fit).
    pub fn fits(&self, dt: &DataType) -> bool {
        match dt {
            DataType::Utf8 | DataType::LargeUtf8 => true,
            DataType::Boolean => matches!(self, Scalar::Bool(_)),
            d if d.is_floating() => !matches!(self, Scalar::Str(_) | Scalar::Bool(_)),
            d if d.is_integer() => self
                .as_i128()
                .is_some_and(|v| int_range(d).is_some_and(|(lo, hi)| v >= lo && v <= hi)),
            _ => false,
        }
    }

    fn as_i128(&self) -> Option<i128> {
        match *self {
            Scalar::Int(v) => Some(v as i128),
            Scalar::UInt(v) => Some(v as i128),
            Scalar::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e18 => {
                Some(f as i128)
            }
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::Int(v) => Some(v as f64),
            Scalar::UInt(v) => Some(v as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as text (strings unquoted).
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(v) => v.to_string(),
            Scalar::UInt(v) => v.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

fn int_range(dt: &DataType) -> Option<(i128, i128)> {
    Some(match dt {
        DataType::Int8 => (i8::MIN as i128, i8::MAX as i128),
        DataType::Int16 => (i16::MIN as i128, i16::MAX as i128),
        DataType::Int32 => (i32::MIN as i128, i32::MAX as i128),
        DataType::Int64 => (i64::MIN as i128, i64::MAX as i128),
        DataType::UInt8 => (0, u8::MAX as i128),
        DataType::UInt16 => (0, u16::MAX as i128),
        DataType::UInt32 => (0, u32::MAX as i128),
        DataType::UInt64 => (0, u64::MAX as i128),
        _ => return None,
    })
}

/// One accepted pair, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    /// Stable id, unique in the dataset.
    pub key: String,
    /// Encoded image.
    pub image: Vec<u8>,
    /// `jpeg`, `webp` or `png`.
    pub image_format: &'static str,
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// Decoded source width (after EXIF orientation).
    pub orig_width: u32,
    /// Decoded source height.
    pub orig_height: u32,
    /// Cleaned caption.
    pub caption: String,
    /// Source URL.
    pub url: Option<String>,
    /// Input name.
    pub source: String,
    /// BLAKE3 of the source bytes.
    pub content_hash: [u8; CONTENT_HASH_LEN as usize],
    /// Perceptual hash.
    pub phash: u64,
    /// Passthrough values, aligned with the schema's passthrough fields (`None` = null).
    pub extras: Vec<Option<Scalar>>,
}

/// Accumulates [`ShardRow`]s into record batches of a fixed schema.
pub struct ShardBatchBuilder {
    schema: SchemaRef,
    extra_fields: Vec<Field>,
    key: StringBuilder,
    image: BinaryBuilder,
    image_format: StringDictionaryBuilder<Int32Type>,
    image_bytes: UInt32Builder,
    width: UInt32Builder,
    height: UInt32Builder,
    orig_width: UInt32Builder,
    orig_height: UInt32Builder,
    caption: StringBuilder,
    url: StringBuilder,
    source: StringDictionaryBuilder<Int32Type>,
    content_hash: FixedSizeBinaryBuilder,
    phash: UInt64Builder,
    extras: Vec<Vec<Option<Scalar>>>,
    rows: usize,
}

impl ShardBatchBuilder {
    /// A builder for `schema`, which must start with the schema v1 fixed columns.
    pub fn new(schema: SchemaRef) -> Self {
        let fixed = columns::SHARD_COLUMNS.len();
        let extra_fields: Vec<Field> = schema
            .fields()
            .iter()
            .skip(fixed)
            .map(|f| f.as_ref().clone())
            .collect();
        let n_extra = extra_fields.len();
        Self {
            schema,
            extra_fields,
            key: StringBuilder::new(),
            image: BinaryBuilder::new(),
            image_format: StringDictionaryBuilder::new(),
            image_bytes: UInt32Builder::new(),
            width: UInt32Builder::new(),
            height: UInt32Builder::new(),
            orig_width: UInt32Builder::new(),
            orig_height: UInt32Builder::new(),
            caption: StringBuilder::new(),
            url: StringBuilder::new(),
            source: StringDictionaryBuilder::new(),
            content_hash: FixedSizeBinaryBuilder::new(CONTENT_HASH_LEN),
            phash: UInt64Builder::new(),
            extras: vec![Vec::new(); n_extra],
            rows: 0,
        }
    }

    /// The passthrough fields, in order.
    pub fn extra_fields(&self) -> &[Field] {
        &self.extra_fields
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Buffers a row. Missing passthrough values are nulls; values that do not fit their column
    /// (check with [`Scalar::fits`] first) are an error naming the column.
    pub fn push(&mut self, row: ShardRow) -> Result<()> {
        for (i, field) in self.extra_fields.iter().enumerate() {
            if let Some(Some(v)) = row.extras.get(i)
                && !v.fits(field.data_type())
            {
                return Err(ShardError::BadRecord {
                    path: row.key.clone(),
                    detail: format!(
                        "passthrough `{}` value {v:?} does not fit {}",
                        field.name(),
                        field.data_type()
                    ),
                });
            }
        }
        let image_bytes = u32::try_from(row.image.len()).map_err(|_| ShardError::BadRecord {
            path: row.key.clone(),
            detail: format!("image of {} bytes is larger than 4 GiB", row.image.len()),
        })?;
        self.key.append_value(&row.key);
        self.image_bytes.append_value(image_bytes);
        self.image.append_value(&row.image);
        self.image_format.append_value(row.image_format);
        self.width.append_value(row.width);
        self.height.append_value(row.height);
        self.orig_width.append_value(row.orig_width);
        self.orig_height.append_value(row.orig_height);
        self.caption.append_value(&row.caption);
        self.url.append_option(row.url.as_deref());
        self.source.append_value(&row.source);
        self.content_hash
            .append_value(row.content_hash)
            .map_err(|e| ShardError::arrow("appending content_hash", e))?;
        self.phash.append_value(row.phash);
        let mut extras = row.extras.into_iter();
        for col in &mut self.extras {
            col.push(extras.next().flatten());
        }
        self.rows += 1;
        Ok(())
    }

    /// Emits the buffered rows as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.image.finish()),
            Arc::new(self.image_format.finish()),
            Arc::new(self.image_bytes.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
            Arc::new(self.orig_width.finish()),
            Arc::new(self.orig_height.finish()),
            Arc::new(self.caption.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.content_hash.finish()),
            Arc::new(self.phash.finish()),
        ];
        for (field, values) in self.extra_fields.iter().zip(self.extras.iter_mut()) {
            cols.push(scalars_to_array(
                &std::mem::take(values),
                field.data_type(),
            )?);
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| ShardError::arrow("building shard rows", e))
    }
}

/// A passthrough value as an integer, when it is one that fits `dt`.
fn integer(value: &Option<Scalar>, dt: &DataType) -> Option<i128> {
    value
        .as_ref()
        .filter(|s| s.fits(dt))
        .and_then(Scalar::as_i128)
}

/// Converts passthrough values to an array of type `dt` (values that do not fit become null).
fn scalars_to_array(values: &[Option<Scalar>], dt: &DataType) -> Result<ArrayRef> {
    let natural: ArrayRef = match dt {
        DataType::Utf8 | DataType::LargeUtf8 => Arc::new(
            values
                .iter()
                .map(|v| v.as_ref().map(Scalar::to_text))
                .collect::<StringArray>(),
        ),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Scalar::Bool(b)) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        d if d.is_floating() => Arc::new(
            values
                .iter()
                .map(|v| v.as_ref().and_then(Scalar::as_f64))
                .collect::<Float64Array>(),
        ),
        DataType::UInt64 => Arc::new(
            values
                .iter()
                .map(|v| integer(v, dt).map(|x| x as u64))
                .collect::<UInt64Array>(),
        ),
        d if d.is_integer() => Arc::new(
            values
                .iter()
                .map(|v| integer(v, dt).map(|x| x as i64))
                .collect::<Int64Array>(),
        ),
        other => {
            return Err(ShardError::BadRecord {
                path: "passthrough".into(),
                detail: format!("unsupported passthrough type {other}"),
            });
        }
    };
    if natural.data_type() == dt {
        return Ok(natural);
    }
    arrow::compute::cast(&natural, dt)
        .map_err(|e| ShardError::arrow(format!("casting passthrough to {dt}"), e))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float32Type, Int32Type as I32};
    use flipstream_schemas::{FileKind, shard_schema_with_extras, validate_schema};

    use super::*;

    /// A row with the given key and passthrough values.
    pub(super) fn sample_row(key: &str, extras: Vec<Option<Scalar>>) -> ShardRow {
        ShardRow {
            key: key.to_string(),
            image: vec![0xff, 0xd8, 0xff],
            image_format: "jpeg",
            width: 256,
            height: 300,
            orig_width: 512,
            orig_height: 600,
            caption: format!("a caption for {key}"),
            url: None,
            source: "input.tar".into(),
            content_hash: [7; 32],
            phash: 42,
            extras,
        }
    }

    #[test]
    fn builds_valid_batches_with_typed_passthrough() {
        let schema = shard_schema_with_extras(&[
            Field::new("similarity", DataType::Float32, true),
            Field::new("uid", DataType::Utf8, true),
            Field::new("rank", DataType::Int32, true),
        ]);
        let mut b = ShardBatchBuilder::new(schema.clone());
        b.push(sample_row(
            "a",
            vec![
                Some(Scalar::Float(0.31)),
                Some(Scalar::Str("u1".into())),
                Some(Scalar::Int(3)),
            ],
        ))
        .unwrap();
        b.push(sample_row("b", vec![None, Some(Scalar::Int(17)), None]))
            .unwrap();
        let batch = b.finish().unwrap();
        validate_schema(&batch.schema(), FileKind::Shard).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let sim = batch.column(13).as_primitive::<Float32Type>();
        assert!((sim.value(0) - 0.31).abs() < 1e-6);
        assert!(sim.is_null(1));
        assert_eq!(batch.column(14).as_string::<i32>().value(1), "17");
        assert_eq!(batch.column(15).as_primitive::<I32>().value(0), 3);
        assert!(b.is_empty());
    }

    #[test]
    fn values_that_do_not_fit_are_refused_with_the_column_name() {
        let schema = shard_schema_with_extras(&[Field::new("rank", DataType::UInt8, true)]);
        let mut b = ShardBatchBuilder::new(schema);
        let err = b
            .push(sample_row("a", vec![Some(Scalar::Int(300))]))
            .unwrap_err();
        assert!(err.to_string().contains("`rank`"), "{err}");
        assert!(Scalar::Float(2.0).fits(&DataType::Int64));
        assert!(!Scalar::Float(2.5).fits(&DataType::Int64));
        assert!(!Scalar::Str("x".into()).fits(&DataType::Float64));
        assert!(Scalar::Bool(true).fits(&DataType::Utf8));
    }
}
