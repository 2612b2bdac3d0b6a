//! JSON sidecars of tar samples (`<key>.json`) and folder images (`<stem>.json`): caption and URL
//! fields, and scalar fields as passthrough columns.
//!
//! The passthrough columns of a unit come from the first JSON of the unit that parses (types as in
//! [`super::values`]); later values that do not fit become null and are counted, later fields
//! that are not columns are counted as unknown.

use arrow::datatypes::Field;
use bytes::Bytes;
use flipstream_shard::rows::Scalar;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::SourceStats;
use super::columns::URL_NAMES;
use super::options::SourceOptions;
use super::values::{ExtraColumns, Widener, json_scalar};

/// Fields never passed through from a sidecar: they duplicate the key.
const KEY_FIELDS: [&str; 2] = ["key", "__key__"];

/// A JSON object with its fields in file order (so passthrough columns keep the order of the
/// input; `serde_json::Map` would sort them). With a repeated field, the first one counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct JsonObject(Vec<(String, Value)>);

impl JsonObject {
    /// The value of a field.
    pub(super) fn get(&self, field: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }

    /// Fields in file order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Field names in file order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

/// A top-level JSON value: an object, or what else it was.
#[derive(Debug)]
pub(super) enum TopLevel {
    /// An object.
    Object(JsonObject),
    /// Anything else, named for messages (`a number`, `an array`, …).
    Other(&'static str),
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.push((k, v));
                }
                Ok(TopLevel::Object(JsonObject(fields)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other("an array"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("a string"))
            }
            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other("null"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a sidecar; the error is the detail of a malformed item.
pub(super) fn parse_object(bytes: &[u8]) -> Result<JsonObject, String> {
    match serde_json::from_slice::<TopLevel>(bytes) {
        Ok(TopLevel::Object(m)) => Ok(m),
        Ok(TopLevel::Other(kind)) => Err(format!("JSON is not an object (found {kind})")),
        Err(e) => Err(format!("JSON does not parse: {e}")),
    }
}

/// How a unit reads its sidecars.
#[derive(Debug, Clone)]
pub(super) struct SidecarSchema {
    caption_field: String,
    url_fields: Vec<String>,
    columns: ExtraColumns,
    /// Every field of the first sidecar (passed through or not).
    first_fields: Vec<String>,
}

impl SidecarSchema {
    /// The schema of a unit whose first parsed sidecar is `first` (`None`: no passthrough).
    pub(super) fn infer(first: Option<&JsonObject>, opts: &SourceOptions) -> Self {
        let url_fields: Vec<String> = match &opts.url_column {
            Some(c) => vec![c.clone()],
            None => URL_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        let mut widener = Widener::default();
        for (k, v) in first.into_iter().flat_map(JsonObject::iter) {
            widener.see(
                k,
                json_scalar(v).as_ref().map(Option::as_ref).map_err(|_| ()),
            );
        }
        let first_fields = first
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut schema = Self {
            caption_field: opts.caption_from_json_field.clone(),
            url_fields,
            columns: ExtraColumns::default(),
            first_fields,
        };
        let excluded: Vec<String> = first
            .map(|m| m.keys().filter(|k| schema.is_known(k)).cloned().collect())
            .unwrap_or_default();
        let excluded: Vec<&str> = excluded.iter().map(String::as_str).collect();
        schema.columns = ExtraColumns::new(widener.finish(), &excluded, &opts.passthrough);
        schema
    }

    /// True for fields that are read as caption, URL or key rather than passed through.
    fn is_known(&self, field: &str) -> bool {
        field == self.caption_field
            || KEY_FIELDS.contains(&field)
            || self
                .url_fields
                .iter()
                .any(|u| u.eq_ignore_ascii_case(field))
    }

    /// The passthrough fields.
    pub(super) fn fields(&self) -> &[Field] {
        &self.columns.fields
    }

    /// The caption field as bytes (a non-string scalar as its text; null or absent: `None`).
    pub(super) fn caption(&self, obj: &JsonObject) -> Option<Bytes> {
        match obj.get(&self.caption_field)? {
            Value::String(s) => Some(Bytes::from(s.clone().into_bytes())),
            v => match json_scalar(v) {
                Ok(Some(s)) => Some(Bytes::from(s.to_text().into_bytes())),
                _ => None,
            },
        }
    }

    /// The URL field, when it is a non-empty string.
    pub(super) fn url(&self, obj: &JsonObject) -> Option<String> {
        self.url_fields.iter().find_map(|u| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(u))
                .and_then(|(_, v)| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
    }

    /// Passthrough values of a sidecar (`None`: the item has none, all null).
    pub(super) fn extras(
        &self,
        obj: Option<&JsonObject>,
        stats: &mut SourceStats,
    ) -> Vec<Option<Scalar>> {
        match obj {
            None => vec![None; self.columns.fields.len()],
            Some(obj) => self.columns.values_of(
                obj,
                |k| self.is_known(k) || self.first_fields.iter().any(|f| f == k),
                stats,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;

    fn obj(v: &str) -> JsonObject {
        parse_object(v.as_bytes()).unwrap()
    }

    #[test]
    fn img2dataset_style_sidecars() {
        let first = obj(
            r#"{"url": "http://x/a.jpg", "caption": "a cat", "key": "000000001", "similarity": 0.31,
            "width": 640, "status": "success", "exif": null, "nested": {"a": 1}}"#,
        );
        let s = SidecarSchema::infer(Some(&first), &SourceOptions::default());
        let names: Vec<(&str, &DataType)> = s
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            names,
            [
                ("similarity", &DataType::Float64),
                ("src_width", &DataType::Int64),
                ("status", &DataType::Utf8),
                ("exif", &DataType::Utf8),
            ]
        );
        assert_eq!(s.caption(&first).as_deref(), Some(&b"a cat"[..]));
        assert_eq!(s.url(&first).as_deref(), Some("http://x/a.jpg"));
        let mut stats = SourceStats::default();
        let later = obj(r#"{"URL": "http://y", "similarity": "high", "width": 3, "new": 1}"#);
        assert_eq!(s.url(&later).as_deref(), Some("http://y"));
        let vals = s.extras(Some(&later), &mut stats);
        assert_eq!(vals, [None, Some(Scalar::Int(3)), None, None]);
        assert_eq!((stats.extras_nulled, stats.extras_unknown), (1, 1));
        assert_eq!(s.extras(None, &mut stats), [None, None, None, None]);
    }

    #[test]
    fn bad_json_is_described() {
        assert!(
            parse_object(b"{\"a\": ")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(parse_object(b"[1, {}]").unwrap_err().contains("an array"));
        assert!(parse_object(b"7").unwrap_err().contains("a number"));
        let o = parse_object(br#"{"z": 1, "a": 2, "z": 3}"#).unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), ["z", "a", "z"]);
        assert_eq!(o.get("z"), Some(&Value::from(1)));
    }
}
