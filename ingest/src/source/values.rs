//! Passthrough values: inferring column types from JSON values or text, and fitting later values
//! into the fixed columns (values that do not fit become null and are counted).
//!
//! Types are inferred as one of boolean, int64, uint64, float64 or utf8. Over several values
//! (CSV and JSON-lines windows) the type widens: int and float give float, anything mixed with
//! text or bool gives utf8.

use arrow::datatypes::{DataType, Field};
use flipstream_schemas::extra_column_name;
use flipstream_shard::rows::Scalar;
use serde_json::Value;

use super::SourceStats;
use super::meta::JsonObject;
use super::options::Passthrough;

/// An inferred column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColType {
    /// `true` / `false`.
    Bool,
    /// Signed integer.
    Int,
    /// Integer above `i64::MAX`.
    UInt,
    /// Floating point.
    Float,
    /// Text.
    Str,
}

impl ColType {
    /// The type of one value.
    pub(super) fn of(v: &Scalar) -> Self {
        match v {
            Scalar::Bool(_) => ColType::Bool,
            Scalar::Int(_) => ColType::Int,
            Scalar::UInt(_) => ColType::UInt,
            Scalar::Float(_) => ColType::Float,
            Scalar::Str(_) => ColType::Str,
        }
    }

    /// The narrowest type holding both.
    pub(super) fn widen(self, other: ColType) -> ColType {
        use ColType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int | UInt | Float, Int | UInt | Float) => Float,
            _ => Str,
        }
    }

    /// The Arrow type of the column.
    pub(super) fn data_type(self) -> DataType {
        match self {
            ColType::Bool => DataType::Boolean,
            ColType::Int => DataType::Int64,
            ColType::UInt => DataType::UInt64,
            ColType::Float => DataType::Float64,
            ColType::Str => DataType::Utf8,
        }
    }
}

/// A JSON value as a passthrough value: `Ok(None)` for null, `Err(())` for arrays and objects.
pub(super) fn json_scalar(v: &Value) -> Result<Option<Scalar>, ()> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Scalar::Int(i),
            (None, Some(u), _) => Scalar::UInt(u),
            (None, None, Some(f)) => Scalar::Float(f),
            (None, None, None) => return Err(()),
        },
        Value::String(s) => Scalar::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => return Err(()),
    }))
}

/// A text cell's most specific value (CSV inference): `None` for an empty cell.
pub(super) fn guess_text(s: &str) -> Option<Scalar> {
    if s.is_empty() {
        return None;
    }
    if let Some(b) = parse_bool(s) {
        return Some(Scalar::Bool(b));
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Scalar::Int(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Scalar::UInt(u));
    }
    // Only decimal-looking text is a float: long digit strings (ids) stay text.
    if s.contains(['.', 'e', 'E'])
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
        && let Ok(f) = s.parse::<f64>()
    {
        return Some(Scalar::Float(f));
    }
    Some(Scalar::Str(s.to_string()))
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A text cell read as a value of column type `t`; `Err(())` when it does not parse as one.
pub(super) fn parse_text_as(s: &str, t: ColType) -> Result<Option<Scalar>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let v = match t {
        ColType::Str => Scalar::Str(s.to_string()),
        ColType::Bool => Scalar::Bool(parse_bool(s).ok_or(())?),
        ColType::Int => Scalar::Int(s.parse().map_err(|_| ())?),
        ColType::UInt => Scalar::UInt(s.parse().map_err(|_| ())?),
        ColType::Float => Scalar::Float(s.parse().map_err(|_| ())?),
    };
    Ok(Some(v))
}

/// Widens column types over a window of values.
#[derive(Debug, Default)]
pub(super) struct Widener {
    cols: Vec<(String, Option<ColType>, bool)>,
}

impl Widener {
    /// Notes a value of column `name` (`None` = null; `Err` = not a scalar).
    pub(super) fn see(&mut self, name: &str, v: Result<Option<&Scalar>, ()>) {
        let pos = match self.cols.iter().position(|(n, _, _)| n == name) {
            Some(p) => p,
            None => {
                self.cols.push((name.to_string(), None, false));
                self.cols.len() - 1
            }
        };
        let Some(entry) = self.cols.get_mut(pos) else {
            return;
        };
        match v {
            Ok(Some(s)) => {
                entry.1 = Some(entry.1.map_or(ColType::of(s), |t| t.widen(ColType::of(s))))
            }
            Ok(None) => {}
            Err(()) => entry.2 = true,
        }
    }

    /// Columns in order of first appearance with their types. Columns seen only as null are
    /// text (anything fits); columns that only ever held arrays or objects are left out.
    pub(super) fn finish(self) -> Vec<(String, ColType)> {
        self.cols
            .into_iter()
            .filter_map(|(n, t, nested)| match (t, nested) {
                (Some(t), _) => Some((n, t)),
                (None, false) => Some((n, ColType::Str)),
                (None, true) => None,
            })
            .collect()
    }
}

/// A value that fits a column of type `t`, as that type's kind of value.
fn canonical(v: Scalar, t: ColType) -> Scalar {
    match (t, v) {
        (ColType::Float, Scalar::Int(i)) => Scalar::Float(i as f64),
        (ColType::Float, Scalar::UInt(u)) => Scalar::Float(u as f64),
        (ColType::Int, Scalar::Float(f)) => Scalar::Int(f as i64),
        (ColType::Int, Scalar::UInt(u)) => i64::try_from(u).map_or(Scalar::UInt(u), Scalar::Int),
        (ColType::UInt, Scalar::Int(i)) => u64::try_from(i).map_or(Scalar::Int(i), Scalar::UInt),
        (ColType::UInt, Scalar::Float(f)) => Scalar::UInt(f as u64),
        (
            ColType::Str,
            v @ (Scalar::Bool(_) | Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_)),
        ) => Scalar::Str(v.to_text()),
        (_, v) => v,
    }
}

/// The passthrough columns of a unit whose values arrive as [`Scalar`]s (JSON and text sources).
#[derive(Debug, Clone, Default)]
pub(super) struct ExtraColumns {
    /// Input names, aligned with `fields`.
    pub names: Vec<String>,
    /// Inferred types, aligned with `fields`.
    pub types: Vec<ColType>,
    /// Output fields (names mapped with [`extra_column_name`], nullable).
    pub fields: Vec<Field>,
}

impl ExtraColumns {
    /// Columns from inferred `(name, type)` pairs, minus `exclude`, filtered and ordered by the
    /// passthrough selection.
    pub(super) fn new(
        cols: Vec<(String, ColType)>,
        exclude: &[&str],
        passthrough: &Passthrough,
    ) -> Self {
        let cols: Vec<(String, ColType)> = cols
            .into_iter()
            .filter(|(n, _)| !exclude.contains(&n.as_str()))
            .collect();
        let cols = passthrough.order(cols);
        let fields = cols
            .iter()
            .map(|(n, t)| Field::new(extra_column_name(n), t.data_type(), true))
            .collect();
        let (names, types) = cols.into_iter().unzip();
        Self {
            names,
            types,
            fields,
        }
    }

    /// Keeps a value that fits column `i` (as the column's own kind of value: an integer in a
    /// float column becomes a float, a number in a text column its text), else counts it and
    /// gives null.
    pub(super) fn fit(
        &self,
        i: usize,
        v: Result<Option<Scalar>, ()>,
        stats: &mut SourceStats,
    ) -> Option<Scalar> {
        match (v, self.fields.get(i), self.types.get(i)) {
            (Ok(Some(s)), Some(f), Some(t)) if s.fits(f.data_type()) => Some(canonical(s, *t)),
            (Ok(None), _, _) => None,
            _ => {
                stats.extras_nulled += 1;
                None
            }
        }
    }

    /// The values of a JSON object for these columns; fields for which `known` is false are
    /// counted as unknown.
    pub(super) fn values_of(
        &self,
        obj: &JsonObject,
        known: impl Fn(&str) -> bool,
        stats: &mut SourceStats,
    ) -> Vec<Option<Scalar>> {
        let unknown = obj.keys().filter(|k| !known(k)).count();
        stats.extras_unknown += unknown as u64;
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| match obj.get(n) {
                None => None,
                Some(v) => self.fit(i, json_scalar(v), stats),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_widen() {
        assert_eq!(ColType::Int.widen(ColType::Float), ColType::Float);
        assert_eq!(ColType::Int.widen(ColType::Bool), ColType::Str);
        assert_eq!(ColType::Str.widen(ColType::Str), ColType::Str);
    }

    #[test]
    fn text_guesses_keep_ids_as_text() {
        assert_eq!(guess_text("12"), Some(Scalar::Int(12)));
        assert_eq!(guess_text("0.25"), Some(Scalar::Float(0.25)));
        assert_eq!(guess_text("TRUE"), Some(Scalar::Bool(true)));
        assert_eq!(
            guess_text("123456789012345678901234"),
            Some(Scalar::Str("123456789012345678901234".into()))
        );
        assert_eq!(guess_text("nan"), Some(Scalar::Str("nan".into())));
        assert_eq!(guess_text(""), None);
        assert_eq!(parse_text_as("x", ColType::Int), Err(()));
        assert_eq!(
            parse_text_as("7", ColType::Float),
            Ok(Some(Scalar::Float(7.0)))
        );
    }

    #[test]
    fn widener_orders_and_types_columns() {
        let mut w = Widener::default();
        w.see("a", Ok(Some(&Scalar::Int(1))));
        w.see("b", Ok(None));
        w.see("a", Ok(Some(&Scalar::Float(0.5))));
        w.see("c", Err(()));
        assert_eq!(
            w.finish(),
            [
                ("a".to_string(), ColType::Float),
                ("b".to_string(), ColType::Str)
            ]
        );
    }

    #[test]
    fn json_values_fit_or_are_counted() {
        let cols = ExtraColumns::new(
            vec![
                ("n".into(), ColType::Int),
                ("s".into(), ColType::Str),
                ("key".into(), ColType::Str),
            ],
            &["key"],
            &Passthrough::All,
        );
        assert_eq!(cols.names, ["n", "s"]);
        let mut stats = SourceStats::default();
        let obj =
            crate::source::meta::parse_object(br#"{"n": 0.5, "s": [1], "other": 1, "key": "k"}"#)
                .unwrap();
        let known = |k: &str| ["n", "s", "key"].contains(&k);
        let vals = cols.values_of(&obj, known, &mut stats);
        assert_eq!(vals, [None, None]);
        assert_eq!(stats.extras_nulled, 2);
        assert_eq!(stats.extras_unknown, 1);
        let obj = crate::source::meta::parse_object(br#"{"n": 3, "s": 4}"#).unwrap();
        let vals = cols.values_of(&obj, known, &mut stats);
        assert_eq!(vals, [Some(Scalar::Int(3)), Some(Scalar::Str("4".into()))]);
    }
}
