//! Column names and Arrow schemas of shard rows and rejection rows.
//!
//! Fixed columns come first, in the order below; passthrough columns from the input (LAION
//! `similarity`, DataComp `uid`, synthetic labels, ...) follow, with the input's own Arrow type.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::CONTENT_HASH_LEN;

/// Stable id of a pair, unique within the dataset.
pub const KEY: &str = "key";
/// Encoded (resized) image bytes.
pub const IMAGE: &str = "image";
/// `jpeg`, `webp` or `png`.
pub const IMAGE_FORMAT: &str = "image_format";
/// Size of `image` in bytes: lets tools study sizes without reading the images.
pub const IMAGE_BYTES: &str = "image_bytes";
/// Stored image width in pixels.
pub const WIDTH: &str = "width";
/// Stored image height in pixels.
pub const HEIGHT: &str = "height";
/// Width as decoded from the source (after EXIF orientation).
pub const ORIG_WIDTH: &str = "orig_width";
/// Height as decoded from the source (after EXIF orientation).
pub const ORIG_HEIGHT: &str = "orig_height";
/// Cleaned caption.
pub const CAPTION: &str = "caption";
/// Source URL, when the pair came from one.
pub const URL: &str = "url";
/// Which input file or unit the pair came from.
pub const SOURCE: &str = "source";
/// BLAKE3 of the original (source) image bytes.
pub const CONTENT_HASH: &str = "content_hash";
/// 64-bit perceptual hash (DCT pHash) of the decoded image.
pub const PHASH: &str = "phash";

/// Rejection files: the reason code (see [`crate::RejectReason`]).
pub const REASON: &str = "reason";
/// Rejection files: human-readable detail (error message, measured value).
pub const DETAIL: &str = "detail";

/// The fixed shard columns, in order.
pub const SHARD_COLUMNS: [&str; 13] = [
    KEY,
    IMAGE,
    IMAGE_FORMAT,
    IMAGE_BYTES,
    WIDTH,
    HEIGHT,
    ORIG_WIDTH,
    ORIG_HEIGHT,
    CAPTION,
    URL,
    SOURCE,
    CONTENT_HASH,
    PHASH,
];

/// The rejection columns, in order.
pub const REJECTION_COLUMNS: [&str; 5] = [KEY, SOURCE, URL, REASON, DETAIL];

/// When an input's extra column has the name of a fixed column, it is stored with this prefix.
pub const PASSTHROUGH_PREFIX_ON_CLASH: &str = "src_";

/// Which kind of flipstream Parquet file a schema or file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Accepted pairs.
    Shard,
    /// Rejected input items.
    Rejections,
    /// A unit's scores in a score sidecar ([`score_schema`]).
    Scores,
}

impl FileKind {
    /// The value stored under [`crate::metadata::KIND`].
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Shard => "shard",
            FileKind::Rejections => "rejections",
            FileKind::Scores => "scores",
        }
    }

    /// Parses [`FileKind::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shard" => Some(FileKind::Shard),
            "rejections" => Some(FileKind::Rejections),
            "scores" => Some(FileKind::Scores),
            _ => None,
        }
    }
}

fn dict_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The fixed shard fields of schema v1.
pub fn shard_fields() -> Vec<Field> {
    vec![
        Field::new(KEY, DataType::Utf8, false),
        Field::new(IMAGE, DataType::Binary, false),
        Field::new(IMAGE_FORMAT, dict_utf8(), false),
        Field::new(IMAGE_BYTES, DataType::UInt32, false),
        Field::new(WIDTH, DataType::UInt32, false),
        Field::new(HEIGHT, DataType::UInt32, false),
        Field::new(ORIG_WIDTH, DataType::UInt32, false),
        Field::new(ORIG_HEIGHT, DataType::UInt32, false),
        Field::new(CAPTION, DataType::Utf8, false),
        Field::new(URL, DataType::Utf8, true),
        Field::new(SOURCE, dict_utf8(), false),
        Field::new(
            CONTENT_HASH,
            DataType::FixedSizeBinary(CONTENT_HASH_LEN),
            false,
        ),
        Field::new(PHASH, DataType::UInt64, false),
    ]
}

/// Shard schema v1 without passthrough columns.
pub fn shard_schema() -> SchemaRef {
    Arc::new(Schema::new(shard_fields()))
}

/// Shard schema v1 followed by passthrough columns. Passthrough fields are always nullable (a
/// source row may lack them); their names must already be mapped through [`extra_column_name`].
pub fn shard_schema_with_extras(extras: &[Field]) -> SchemaRef {
    let mut fields = shard_fields();
    fields.extend(extras.iter().map(|f| f.clone().with_nullable(true)));
    Arc::new(Schema::new(fields))
}

/// The stored name of an input's extra column: unchanged unless it clashes with a fixed column
/// (then prefixed with [`PASSTHROUGH_PREFIX_ON_CLASH`]).
pub fn extra_column_name(input_name: &str) -> String {
    if SHARD_COLUMNS.contains(&input_name) {
        format!("{PASSTHROUGH_PREFIX_ON_CLASH}{input_name}")
    } else {
        input_name.to_string()
    }
}

/// Rejection schema v1.
pub fn rejection_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(KEY, DataType::Utf8, false),
        Field::new(SOURCE, dict_utf8(), false),
        Field::new(URL, DataType::Utf8, true),
        Field::new(REASON, dict_utf8(), false),
        Field::new(DETAIL, DataType::Utf8, false),
    ]))
}

/// Score sidecar schema v1 (`scores/<name>/<unit>.parquet`): the row's key and its image-caption
/// cosine similarity under the sidecar's model.
pub fn score_schema() -> SchemaRef {
    Arc::new(Schema::new(score_fields()))
}

fn score_fields() -> Vec<Field> {
    vec![
        Field::new(KEY, DataType::Utf8, false),
        Field::new(crate::records::CLIP_SCORE_COLUMN, DataType::Float32, false),
    ]
}

/// The item field of a score sidecar's embedding columns: non-null float32.
pub fn embedding_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

/// The type of a score sidecar's embedding columns: `dim` float32 values per row.
pub fn embedding_type(dim: i32) -> DataType {
    DataType::FixedSizeList(embedding_item(), dim)
}

/// True for the type of an embedding column of any width ([`embedding_type`]).
pub fn is_embedding_type(dt: &DataType) -> bool {
    matches!(dt, DataType::FixedSizeList(item, _) if *item.data_type() == DataType::Float32)
}

/// [`score_schema`] followed by the `dim`-wide image and caption embedding columns
/// (`flipstream score --embeddings`).
pub fn score_schema_with_embeddings(dim: i32) -> SchemaRef {
    let mut fields = score_fields();
    for name in [
        crate::records::IMAGE_EMBEDDING_COLUMN,
        crate::records::TEXT_EMBEDDING_COLUMN,
    ] {
        fields.push(Field::new(name, embedding_type(dim), false));
    }
    Arc::new(Schema::new(fields))
}

/// Data types a passthrough column may have: the scalar types of LAION / DataComp metadata.
pub fn is_passthrough_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_columns_match_field_list() {
        let names: Vec<String> = shard_fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, SHARD_COLUMNS.map(String::from).to_vec());
        let rej = rejection_schema();
        let names: Vec<&str> = rej.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, REJECTION_COLUMNS.to_vec());
    }

    #[test]
    fn clashing_extras_are_prefixed() {
        assert_eq!(extra_column_name("similarity"), "similarity");
        assert_eq!(extra_column_name("width"), "src_width");
        assert_eq!(extra_column_name("key"), "src_key");
    }

    #[test]
    fn extras_become_nullable_and_follow_fixed_columns() {
        let s = shard_schema_with_extras(&[Field::new("uid", DataType::Utf8, false)]);
        assert_eq!(s.fields().len(), SHARD_COLUMNS.len() + 1);
        let last = s.field(SHARD_COLUMNS.len());
        assert_eq!(last.name(), "uid");
        assert!(last.is_nullable());
    }
}
