//! Checks that a schema or a Parquet file is flipstream schema v1, and says precisely what differs.
//!
//! String columns may be stored plain (`Utf8`, `LargeUtf8`) or dictionary-encoded: tools that
//! rewrite our files (pyarrow, DuckDB) may change the encoding without changing the meaning.
//! Everything else must match exactly: names, order, types, nullability of required columns.

use std::fmt;

use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};

use crate::columns::{self, FileKind, is_passthrough_type};
use crate::records::{IMAGE_EMBEDDING_COLUMN, TEXT_EMBEDDING_COLUMN};
use crate::{SCHEMA_VERSION, metadata};

/// Every difference between a schema and schema v1, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDiff {
    /// Human-readable problems, in column order.
    pub problems: Vec<String>,
}

impl fmt::Display for SchemaDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} problem(s): {}",
            self.problems.len(),
            self.problems.join("; ")
        )
    }
}

impl std::error::Error for SchemaDiff {}

/// Why a Parquet file is not a valid flipstream file.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The bytes are not a readable Parquet file (truncated, corrupt footer, not Parquet).
    #[error("not a readable Parquet file: {0}")]
    NotParquet(#[source] parquet::errors::ParquetError),
    /// Parquet, but written by someone else or another schema version.
    #[error("metadata: {0}")]
    Metadata(String),
    /// The columns differ from schema v1.
    #[error("schema: {0}")]
    Schema(#[from] SchemaDiff),
}

/// What [`validate_parquet_file`] learned about a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetInfo {
    /// Shard or rejections.
    pub kind: FileKind,
    /// Total rows.
    pub rows: u64,
    /// Rows per row group.
    pub row_groups: Vec<u64>,
    /// Unit recorded in the metadata.
    pub unit: Option<String>,
    /// Passthrough columns (shards only), with their types.
    pub extra_columns: Vec<Field>,
}

fn is_string_like(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string_like(v),
        _ => false,
    }
}

fn is_binary_like(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn types_equivalent(expected: &DataType, actual: &DataType) -> bool {
    expected == actual
        || (is_string_like(expected) && is_string_like(actual))
        || (is_binary_like(expected) && is_binary_like(actual))
}

/// Checks `actual` against schema v1 of `kind`. Shards may carry passthrough columns after the
/// fixed ones (scalar types only); rejection files may not.
pub fn validate_schema(actual: &Schema, kind: FileKind) -> Result<Vec<Field>, SchemaDiff> {
    let expected = match kind {
        FileKind::Shard => columns::shard_schema(),
        FileKind::Rejections => columns::rejection_schema(),
        FileKind::Scores => columns::score_schema(),
    };
    let mut problems = Vec::new();
    for (pos, want) in expected.fields().iter().enumerate() {
        match actual.index_of(want.name()) {
            Err(_) => problems.push(format!(
                "missing column `{}` ({})",
                want.name(),
                want.data_type()
            )),
            Ok(idx) => {
                let got = actual.field(idx);
                if idx != pos {
                    problems.push(format!(
                        "column `{}` is at position {idx}, expected {pos}",
                        want.name()
                    ));
                }
                if !types_equivalent(want.data_type(), got.data_type()) {
                    problems.push(format!(
                        "column `{}` has type {}, expected {}",
                        want.name(),
                        got.data_type(),
                        want.data_type()
                    ));
                }
                if !want.is_nullable() && got.is_nullable() {
                    problems.push(format!(
                        "column `{}` is nullable, expected non-null",
                        want.name()
                    ));
                }
            }
        }
    }
    let mut extras = Vec::new();
    for got in actual.fields() {
        if expected.index_of(got.name()).is_ok() {
            continue;
        }
        match kind {
            FileKind::Scores
                if [IMAGE_EMBEDDING_COLUMN, TEXT_EMBEDDING_COLUMN]
                    .contains(&got.name().as_str())
                    && columns::is_embedding_type(got.data_type()) => {}
            FileKind::Rejections | FileKind::Scores => {
                problems.push(format!("unexpected column `{}`", got.name()))
            }
            FileKind::Shard if !is_passthrough_type(got.data_type()) => problems.push(format!(
                "passthrough column `{}` has type {}, only scalar types are allowed",
                got.name(),
                got.data_type()
            )),
            FileKind::Shard => extras.push(got.as_ref().clone()),
        }
    }
    if problems.is_empty() {
        Ok(extras)
    } else {
        Err(SchemaDiff { problems })
    }
}

/// Opens a Parquet file (any [`ChunkReader`]: a `std::fs::File`, `bytes::Bytes`), checks its
/// flipstream metadata and schema, and returns what it holds.
pub fn validate_parquet_file<R: ChunkReader + 'static>(
    reader: R,
    expected_kind: Option<FileKind>,
) -> Result<ParquetInfo, ValidationError> {
    let file = SerializedFileReader::new(reader).map_err(ValidationError::NotParquet)?;
    let meta = file.metadata();
    let fmeta = meta.file_metadata();
    let kv = fmeta.key_value_metadata();

    let version = metadata::lookup(kv, metadata::SCHEMA_VERSION_KEY).ok_or_else(|| {
        ValidationError::Metadata(format!(
            "no `{}` key: not written by flipstream",
            metadata::SCHEMA_VERSION_KEY
        ))
    })?;
    if version != SCHEMA_VERSION.to_string() {
        return Err(ValidationError::Metadata(format!(
            "schema version {version}, this build reads {SCHEMA_VERSION}"
        )));
    }
    let kind_str = metadata::lookup(kv, metadata::KIND)
        .ok_or_else(|| ValidationError::Metadata(format!("no `{}` key", metadata::KIND)))?;
    let kind = FileKind::parse(kind_str)
        .ok_or_else(|| ValidationError::Metadata(format!("unknown file kind {kind_str:?}")))?;
    if let Some(want) = expected_kind
        && want != kind
    {
        return Err(ValidationError::Metadata(format!(
            "file kind is {}, expected {}",
            kind.as_str(),
            want.as_str()
        )));
    }
    let schema =
        parquet_to_arrow_schema(fmeta.schema_descr(), kv).map_err(ValidationError::NotParquet)?;
    let extra_columns = validate_schema(&schema, kind)?;
    let row_groups: Vec<u64> = meta
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows().max(0) as u64)
        .collect();
    Ok(ParquetInfo {
        kind,
        rows: fmeta.num_rows().max(0) as u64,
        row_groups,
        unit: metadata::lookup(kv, metadata::UNIT).map(str::to_string),
        extra_columns,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, DictionaryArray, FixedSizeBinaryArray, Int64Array, RecordBatch,
        StringArray, UInt32Array, UInt64Array,
    };
    use arrow::datatypes::Int32Type;
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::{CONTENT_HASH_LEN, shard_schema_with_extras};

    fn dict(vals: &[&str]) -> ArrayRef {
        Arc::new(vals.iter().copied().collect::<DictionaryArray<Int32Type>>())
    }

    fn shard_batch(n: usize) -> RecordBatch {
        let extras = [Field::new("similarity_rank", DataType::Int64, true)];
        let schema = shard_schema_with_extras(&extras);
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let hashes: Vec<Vec<u8>> = (0..n)
            .map(|i| vec![i as u8; CONTENT_HASH_LEN as usize])
            .collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(&keys)),
            Arc::new(BinaryArray::from_iter_values(
                (0..n).map(|i| vec![0xff, i as u8]),
            )),
            dict(&vec!["jpeg"; n]),
            Arc::new(UInt32Array::from(vec![2; n])),
            Arc::new(UInt32Array::from(vec![256; n])),
            Arc::new(UInt32Array::from(vec![300; n])),
            Arc::new(UInt32Array::from(vec![512; n])),
            Arc::new(UInt32Array::from(vec![600; n])),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("caption {i}")),
            )),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| (i % 2 == 0).then(|| format!("http://x/{i}")))
                    .collect::<Vec<_>>(),
            )),
            dict(&vec!["a.tar"; n]),
            Arc::new(FixedSizeBinaryArray::try_from_iter(hashes.into_iter()).unwrap()),
            Arc::new(UInt64Array::from_iter_values(
                (0..n).map(|i| i as u64 * 7919),
            )),
            Arc::new(Int64Array::from(
                (0..n).map(|i| Some(i as i64)).collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn write(batch: &RecordBatch, kv: Vec<parquet::file::metadata::KeyValue>) -> Bytes {
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .set_max_row_group_row_count(Some(4))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    #[test]
    fn shard_round_trips_through_parquet_and_validates() {
        let batch = shard_batch(10);
        let bytes = write(&batch, metadata::file_metadata(FileKind::Shard, "u1", "{}"));
        let info = validate_parquet_file(bytes.clone(), Some(FileKind::Shard)).unwrap();
        assert_eq!(info.rows, 10);
        assert_eq!(info.row_groups, vec![4, 4, 2]);
        assert_eq!(info.unit.as_deref(), Some("u1"));
        assert_eq!(info.extra_columns.len(), 1);

        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
        assert_eq!(
            back.schema(),
            batch.schema(),
            "dictionary types survive the round trip"
        );
        assert_eq!(back, batch);
    }

    #[test]
    fn wrong_schema_is_described_precisely() {
        let batch = shard_batch(3);
        // drop `phash`, retype `width`, add a nested column
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.retain(|f| f.name() != "phash");
        fields[4] = Field::new("width", DataType::Int64, false);
        fields.push(Field::new(
            "tags",
            DataType::new_list(DataType::Utf8, true),
            true,
        ));
        let diff = validate_schema(&Schema::new(fields), FileKind::Shard).unwrap_err();
        let text = diff.to_string();
        assert!(text.contains("missing column `phash`"), "{text}");
        assert!(
            text.contains("column `width` has type Int64, expected UInt32"),
            "{text}"
        );
        assert!(text.contains("passthrough column `tags`"), "{text}");
        assert_eq!(diff.problems.len(), 3, "{text}");
    }

    #[test]
    fn plain_strings_are_accepted_for_dictionary_columns() {
        let fields: Vec<Field> = crate::columns::shard_fields()
            .into_iter()
            .map(|f| {
                if is_string_like(f.data_type()) {
                    f.with_data_type(DataType::Utf8)
                } else {
                    f
                }
            })
            .collect();
        validate_schema(&Schema::new(fields), FileKind::Shard).unwrap();
    }

    #[test]
    fn foreign_and_damaged_files_are_refused() {
        let batch = shard_batch(3);
        let no_meta = write(&batch, vec![]);
        let err = validate_parquet_file(no_meta, None).unwrap_err();
        assert!(
            err.to_string().contains("not written by flipstream"),
            "{err}"
        );

        let good = write(&batch, metadata::file_metadata(FileKind::Shard, "u", "{}"));
        let err = validate_parquet_file(good.clone(), Some(FileKind::Rejections)).unwrap_err();
        assert!(err.to_string().contains("expected rejections"), "{err}");

        let truncated = good.slice(0..good.len() - 20);
        assert!(matches!(
            validate_parquet_file(truncated, None),
            Err(ValidationError::NotParquet(_))
        ));
    }

    #[test]
    fn score_files_may_carry_float32_embedding_lists_and_nothing_else() {
        let with = crate::score_schema_with_embeddings(8);
        assert!(validate_schema(&with, FileKind::Scores).is_ok());
        let mut fields: Vec<Field> = with.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[3] = Field::new(
            crate::TEXT_EMBEDDING_COLUMN,
            DataType::new_list(DataType::Float64, false),
            false,
        );
        let err = validate_schema(&Schema::new(fields.clone()), FileKind::Scores).unwrap_err();
        assert!(err.to_string().contains("text_embedding"), "{err}");
        fields[3] = Field::new("other", crate::embedding_type(8), false);
        assert!(validate_schema(&Schema::new(fields), FileKind::Scores).is_err());
    }
}
