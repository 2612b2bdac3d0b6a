//! Zero-shot classes and their prompts: a [`LabelSet`] names every class from the values of the
//! label columns (`{label_color} {label_shape}` → "red circle") and expands the prompt templates
//! ("a photo of a {}." → "a photo of a red circle.").
//!
//! With several label columns the classes are every combination of the columns' values (colour ×
//! shape); the values are the dataset's whole label vocabulary, not those of the samples being
//! evaluated, so a class that the evaluation samples happen to lack still competes, as in a real
//! zero-shot benchmark.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Result, TrainError};

/// The classes of a zero-shot evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSet {
    columns: Vec<String>,
    /// Distinct values per column, sorted.
    values: Vec<Vec<String>>,
    /// Every class as one value index per column, in lexicographic order.
    classes: Vec<Vec<usize>>,
    format: Option<String>,
}

impl LabelSet {
    /// The classes spanned by the label vocabulary: every combination of `values[c]` (the
    /// distinct values of column `c`). `format` names a class (`{column}` placeholders); `None`
    /// joins the values with spaces.
    pub fn from_vocabulary(
        columns: &[String],
        values: Vec<BTreeSet<String>>,
        format: Option<&str>,
    ) -> Result<Self> {
        if columns.is_empty() {
            return Err(TrainError::Request(
                "zero-shot evaluation needs at least one label column".into(),
            ));
        }
        let values: Vec<Vec<String>> = values.into_iter().map(Vec::from_iter).collect();
        let mut classes: Vec<Vec<usize>> = vec![Vec::new()];
        for vals in &values {
            classes = classes
                .into_iter()
                .flat_map(|prefix| {
                    (0..vals.len()).map(move |i| {
                        let mut c = prefix.clone();
                        c.push(i);
                        c
                    })
                })
                .collect();
        }
        if values.iter().any(Vec::is_empty) {
            classes.clear();
        }
        Ok(Self {
            columns: columns.to_vec(),
            values,
            classes,
            format: format.map(str::to_string),
        })
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// True when there is no class.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The label columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Distinct values of column `c`.
    pub fn values(&self, c: usize) -> &[String] {
        self.values.get(c).map_or(&[], Vec::as_slice)
    }

    /// The class index of a sample's label tuple (`None` for a value outside the set).
    pub fn class_of(&self, labels: &[String]) -> Option<usize> {
        let idx: Option<Vec<usize>> = labels
            .iter()
            .zip(&self.values)
            .map(|(v, vals)| vals.binary_search(v).ok())
            .collect();
        let idx = idx?;
        self.classes.binary_search(&idx).ok()
    }

    /// The value index of column `c` in class `class`.
    pub fn value_of(&self, class: usize, c: usize) -> Option<usize> {
        self.classes.get(class)?.get(c).copied()
    }

    /// The name of class `class` ("red circle").
    pub fn class_name(&self, class: usize) -> String {
        let Some(idx) = self.classes.get(class) else {
            return String::new();
        };
        let value = |c: usize| {
            idx.get(c)
                .and_then(|&i| self.values.get(c)?.get(i))
                .map_or("", String::as_str)
        };
        match &self.format {
            None => (0..self.columns.len())
                .map(value)
                .collect::<Vec<_>>()
                .join(" "),
            Some(f) => {
                let mut name = f.clone();
                for (c, col) in self.columns.iter().enumerate() {
                    name = name.replace(&format!("{{{col}}}"), value(c));
                }
                name
            }
        }
    }
}

/// A template with the class name put in for `{}`, underscores shown as spaces.
pub fn fill_template(template: &str, class_name: &str) -> String {
    template.replace("{}", &class_name.replace('_', " "))
}

/// Reads prompt templates from a file: one per line, each with `{}`; blank lines and lines
/// starting with `#` are skipped.
pub fn read_templates(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let templates: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if let Some(bad) = templates.iter().find(|t| !t.contains("{}")) {
        return Err(TrainError::Request(format!(
            "{}: template {bad:?} has no `{{}}` where the class name goes",
            path.display()
        )));
    }
    if templates.is_empty() {
        return Err(TrainError::Request(format!(
            "{} holds no template (one per line, with `{{}}` for the class name)",
            path.display()
        )));
    }
    Ok(templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn vocabulary(columns: &[&[&str]]) -> Vec<BTreeSet<String>> {
        columns
            .iter()
            .map(|vals| vals.iter().map(|v| v.to_string()).collect())
            .collect()
    }

    #[test]
    fn classes_are_the_product_of_the_vocabulary() {
        let cols = s(&["label_color", "label_shape"]);
        let values = vocabulary(&[&["red", "blue"], &["star", "circle"]]);
        let set = LabelSet::from_vocabulary(&cols, values.clone(), None).unwrap();
        assert_eq!(set.len(), 4);
        let names: Vec<String> = (0..4).map(|c| set.class_name(c)).collect();
        assert_eq!(
            names,
            ["blue circle", "blue star", "red circle", "red star"]
        );
        assert_eq!(set.class_of(&s(&["red", "circle"])), Some(2));
        assert_eq!(set.class_of(&s(&["green", "circle"])), None);
        assert_eq!(set.value_of(3, 1), Some(1));
        let f = LabelSet::from_vocabulary(&cols, values, Some("{label_shape} in {label_color}"))
            .unwrap();
        assert_eq!(f.class_name(0), "circle in blue");
        assert_eq!(
            fill_template("a photo of a {}.", "top_left"),
            "a photo of a top left."
        );
    }
}
