//! Keys of the Parquet key-value metadata that flipstream writes into every file.

use parquet::file::metadata::KeyValue;

use crate::{FileKind, SCHEMA_VERSION};

/// Schema version (`"1"`).
pub const SCHEMA_VERSION_KEY: &str = "flipstream.schema_version";
/// `shard` or `rejections`.
pub const KIND: &str = "flipstream.kind";
/// Program and version that wrote the file (`flipstream 0.1.0`).
pub const WRITER: &str = "flipstream.writer";
/// The unit of work the file belongs to.
pub const UNIT: &str = "flipstream.unit";
/// JSON of the writer settings (compression, row group size, image encoding).
pub const SETTINGS: &str = "flipstream.settings";

/// The key-value pairs every flipstream Parquet file carries.
pub fn file_metadata(kind: FileKind, unit: &str, settings_json: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
        KeyValue::new(KIND.to_string(), kind.as_str().to_string()),
        KeyValue::new(WRITER.to_string(), writer_id()),
        KeyValue::new(UNIT.to_string(), unit.to_string()),
        KeyValue::new(SETTINGS.to_string(), settings_json.to_string()),
    ]
}

/// `flipstream <version>`.
pub fn writer_id() -> String {
    format!("flipstream {}", env!("CARGO_PKG_VERSION"))
}

/// Looks a key up in Parquet key-value metadata.
pub fn lookup<'a>(kv: Option<&'a Vec<KeyValue>>, key: &str) -> Option<&'a str> {
    kv?.iter()
        .find(|e| e.key == key)
        .and_then(|e| e.value.as_deref())
}
