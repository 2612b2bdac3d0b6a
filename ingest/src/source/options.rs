//! [`SourceOptions`]: how inputs are split into units and how their columns are read.

use std::collections::HashSet;

use flipstream_schemas::extra_column_name;
use flipstream_shard::problems::{Problem, Validate};
use serde::{Deserialize, Serialize};

/// Which extra scalar columns (or JSON fields) travel to the shards as passthrough columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Passthrough {
    /// Every scalar column that is not the image, caption or URL (the default).
    #[default]
    All,
    /// None: shards hold the fixed columns only.
    None,
    /// Only these input columns, in this order, where the input has them.
    Only(Vec<String>),
}

impl Passthrough {
    /// True when the input column `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Passthrough::All => true,
            Passthrough::None => false,
            Passthrough::Only(names) => names.iter().any(|n| n == name),
        }
    }

    /// Orders selected columns: input order for `All`, the listed order for `Only`. A column whose
    /// stored name ([`extra_column_name`]) an earlier one already has is dropped (`width` is
    /// stored as `src_width`, so a later input column `src_width` would clash).
    pub(crate) fn order<T>(&self, mut cols: Vec<(String, T)>) -> Vec<(String, T)> {
        cols.retain(|(n, _)| self.selects(n));
        if let Passthrough::Only(names) = self {
            cols.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
        }
        let mut taken = HashSet::new();
        cols.retain(|(n, _)| taken.insert(extra_column_name(n)));
        cols
    }
}

/// How inputs are read. Column names left at `None` are auto-detected (see `docs/sources.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceOptions {
    /// Column holding the image (Parquet): binary, or a Hugging Face `struct<bytes, path>`.
    pub image_column: Option<String>,
    /// Column holding the caption (Parquet, CSV/TSV, JSON lines).
    pub caption_column: Option<String>,
    /// Column holding the item's own key (Parquet, CSV/TSV, JSON lines).
    pub key_column: Option<String>,
    /// Column (or JSON field of tar and folder sidecars) holding the source URL.
    pub url_column: Option<String>,
    /// Rows (Parquet) or files (folders) per unit; tars and text lists are one unit per file.
    pub unit_rows: u64,
    /// Which extra scalar columns become passthrough columns.
    pub passthrough: Passthrough,
    /// JSON field read as the caption when a tar sample or image file has no `.txt` caption.
    pub caption_from_json_field: String,
    /// Tar members and image files larger than this are not read; their item is malformed.
    pub max_item_bytes: u64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            image_column: None,
            caption_column: None,
            key_column: None,
            url_column: None,
            unit_rows: 10_000,
            passthrough: Passthrough::All,
            caption_from_json_field: "caption".to_string(),
            max_item_bytes: 256 << 20,
        }
    }
}

impl Validate for SourceOptions {
    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, value) in [
            ("unit_rows", self.unit_rows),
            ("max_item_bytes", self.max_item_bytes),
        ] {
            if value == 0 {
                p.push(Problem::new(key, "must be at least 1"));
            }
        }
        for (key, col) in [
            ("image_column", &self.image_column),
            ("caption_column", &self.caption_column),
            ("key_column", &self.key_column),
            ("url_column", &self.url_column),
        ] {
            if col.as_deref().is_some_and(|c| c.trim().is_empty()) {
                p.push(Problem::new(key, "is empty"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_order_and_selection() {
        let cols = vec![
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 3),
        ];
        assert_eq!(Passthrough::All.order(cols.clone()).len(), 3);
        assert!(Passthrough::None.order(cols.clone()).is_empty());
        let only = Passthrough::Only(vec!["c".into(), "a".into(), "zz".into()]);
        let names: Vec<String> = only.order(cols).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["c", "a"]);
        let clash = vec![
            ("width".to_string(), 1),
            ("src_width".to_string(), 2),
            ("w".to_string(), 3),
        ];
        let names: Vec<String> = Passthrough::All
            .order(clash)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["width", "w"]);
    }

    #[test]
    fn options_round_trip_and_validate() {
        let o = SourceOptions::default();
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<SourceOptions>(&json).unwrap(), o);
        let partial: SourceOptions =
            serde_json::from_str(r#"{"unit_rows": 5, "passthrough": {"only": ["uid"]}}"#).unwrap();
        assert_eq!(partial.unit_rows, 5);
        assert_eq!(partial.passthrough, Passthrough::Only(vec!["uid".into()]));
        assert!(
            SourceOptions {
                unit_rows: 0,
                ..o.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            SourceOptions {
                key_column: Some(" ".into()),
                ..o
            }
            .validate()
            .is_err()
        );
    }
}
