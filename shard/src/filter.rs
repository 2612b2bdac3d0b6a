//! `shard filter`: a new committed dataset holding the rows of another that satisfy column
//! predicates (`similarity>=0.28`, `punsafe<0.5`, `label_color==red`), without re-encoding.
//!
//! Every committed unit of the source becomes a unit of the same id in the output: its shard rows
//! are read row group by row group (all columns), the rows that satisfy every predicate are
//! written as they are, and each other row becomes a rejection `column_filter` whose detail names
//! the predicate it failed and the row's value. So `accepted + rejected = read` holds for the new
//! dataset, where `read` counts the source's accepted rows. The commit protocol makes it
//! resumable: a re-run skips the committed units; the manifest records the source and the
//! predicates, and a run with other predicates into the same output is refused.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::DataType;
use flipstream_schemas::{
    CommitRecord, DatasetManifest, RejectReason, UnitCounts, UnitSpec, WorkerInfo, columns,
};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::commit::{DatasetWriter, Rejection};
use crate::dataset::Dataset;
use crate::error::{Result, ShardError};
use crate::reader::ShardReader;
use crate::store::StoreRoot;
use crate::writer::WriterSettings;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Longest first, so that `<=` is not read as `<`.
    const SPELLINGS: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn as_str(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(s, _)| s)
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
        }
    }
}

/// `COLUMN OP VALUE`: a number compares numerically (the column read as float64), anything else
/// as text (`==` and `!=` only). A null value never satisfies a predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// Column name (a schema column or a passthrough column).
    pub column: String,
    /// The comparison.
    pub op: Op,
    /// The value as written.
    pub value: String,
    number: Option<f64>,
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.column, self.op.as_str(), self.value)
    }
}

impl FromStr for Predicate {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (at, spelling, op) = Op::SPELLINGS
            .iter()
            .filter_map(|&(sp, op)| s.find(sp).map(|i| (i, sp, op)))
            .min_by_key(|&(i, sp, _)| (i, std::cmp::Reverse(sp.len())))
            .ok_or_else(|| {
                format!(
                    "{s:?} has no comparison: write COLUMN OP VALUE with OP one of < <= > >= == !="
                )
            })?;
        let column = s[..at].trim().to_string();
        let value = s[at + spelling.len()..].trim().to_string();
        if column.is_empty() || value.is_empty() {
            return Err(format!(
                "{s:?}: a column and a value are both needed (e.g. similarity>=0.28)"
            ));
        }
        let number = value.parse::<f64>().ok().filter(|v| v.is_finite());
        if number.is_none() && !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!(
                "{s:?}: {value:?} is not a number, and text compares only with == or !="
            ));
        }
        Ok(Predicate {
            column,
            op,
            value,
            number,
        })
    }
}

impl Predicate {
    /// Per row: `None` when the row satisfies the predicate, else why not.
    fn failures(&self, column: &ArrayRef) -> std::result::Result<Vec<Option<String>>, String> {
        let target = if self.number.is_some() {
            DataType::Float64
        } else {
            DataType::Utf8
        };
        let values = arrow::compute::cast(column, &target).map_err(|e| {
            format!(
                "column {} ({}) cannot be compared with {}: {e}",
                self.column,
                column.data_type(),
                self.value
            )
        })?;
        let why = |shown: String| Some(format!("{} is {shown}, the filter is {self}", self.column));
        Ok(match self.number {
            Some(bound) => {
                let v = values.as_primitive::<arrow::datatypes::Float64Type>();
                (0..v.len())
                    .map(|i| match v.is_null(i) {
                        true => why("null".into()),
                        false => {
                            let x = v.value(i);
                            let ok = x.partial_cmp(&bound).is_some_and(|o| self.op.holds(o));
                            if ok { None } else { why(x.to_string()) }
                        }
                    })
                    .collect()
            }
            None => {
                let v = values.as_string::<i32>();
                (0..v.len())
                    .map(|i| match v.is_null(i) {
                        true => why("null".into()),
                        false if self.op.holds(v.value(i).cmp(self.value.as_str())) => None,
                        false => why(format!("{:?}", v.value(i))),
                    })
                    .collect()
            }
        })
    }
}

/// What a `shard filter` run did.
#[derive(Debug, Clone, Serialize)]
pub struct FilterSummary {
    /// The source dataset.
    pub source: String,
    /// The new dataset.
    pub dataset: String,
    /// The predicates, as written.
    pub predicates: Vec<String>,
    /// Units of the source.
    pub units_planned: usize,
    /// Of those, already committed in the output before this run.
    pub units_skipped: usize,
    /// Committed by this run.
    pub units_committed: usize,
    /// Rows over the units committed by this run (`read`: the source rows, `rejected`: the rows
    /// that failed a predicate).
    pub counts: UnitCounts,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

/// Writes into `out` the rows of `source` that satisfy every predicate (see the module docs).
/// An unknown column or a column that cannot be compared is [`ShardError::FilterRequest`].
pub async fn filter_dataset(
    source: &Dataset,
    out: &str,
    predicates: &[Predicate],
    settings: WriterSettings,
    progress: Option<&ProgressBar>,
) -> Result<FilterSummary> {
    let started = Instant::now();
    let request = |detail: String| ShardError::FilterRequest {
        url: source.root().url().to_string(),
        detail,
    };
    if predicates.is_empty() {
        return Err(request(
            "give at least one predicate (--where COLUMN OP VALUE)".into(),
        ));
    }
    check_columns(source, predicates).await.map_err(request)?;
    let written: Vec<String> = predicates.iter().map(ToString::to_string).collect();
    let config = serde_json::json!({
        "filter": {
            "source": source.root().url(),
            "source_fingerprint": source.manifest().config_fingerprint,
            "where": written,
        }
    });
    let fingerprint = blake3::hash(config.to_string().as_bytes())
        .to_hex()
        .to_string();
    let manifest = DatasetManifest::new(fingerprint, config);
    let writer = DatasetWriter::open(StoreRoot::parse(out)?, manifest, settings).await?;
    let committed = writer.committed_units().await?;
    let todo: Vec<&CommitRecord> = source
        .commits()
        .iter()
        .filter(|c| !committed.contains(&c.unit.id))
        .collect();
    if let Some(p) = progress {
        p.set_length(todo.iter().map(|c| c.counts.accepted).sum());
    }
    let mut counts = UnitCounts::default();
    for record in &todo {
        let unit = filter_unit(source, &writer, record, predicates, progress)
            .await
            .map_err(|e| match e {
                ShardError::FilterRequest { detail, .. } => request(detail),
                other => other,
            })?;
        counts.merge(&unit.counts);
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    Ok(FilterSummary {
        source: source.root().url().to_string(),
        dataset: writer.root().url().to_string(),
        predicates: written,
        units_planned: source.commits().len(),
        units_skipped: source.commits().len() - todo.len(),
        units_committed: todo.len(),
        counts,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// Checks the predicates against the first shard's schema before anything is written: each
/// column exists and can be compared with its value.
async fn check_columns(
    source: &Dataset,
    predicates: &[Predicate],
) -> std::result::Result<(), String> {
    let Some(shard) = source.shards().next() else {
        return Ok(());
    };
    let reader = ShardReader::open(source.root(), &shard.path, Some(shard.bytes))
        .await
        .map_err(|e| e.to_string())?;
    for p in predicates {
        let field = reader
            .schema()
            .field_with_name(&p.column)
            .map_err(|_| format!("{} has no column {:?} (for {p})", shard.path, p.column))?;
        let target = match p.number {
            Some(_) => DataType::Float64,
            None => DataType::Utf8,
        };
        if !arrow::compute::can_cast_types(field.data_type(), &target) {
            return Err(format!(
                "column {} ({}) cannot be compared with {}",
                p.column,
                field.data_type(),
                p.value
            ));
        }
    }
    Ok(())
}

/// One source unit into the output unit of the same id.
async fn filter_unit(
    source: &Dataset,
    writer: &DatasetWriter,
    record: &CommitRecord,
    predicates: &[Predicate],
    progress: Option<&ProgressBar>,
) -> Result<CommitRecord> {
    let root = source.root();
    let spec = UnitSpec {
        id: record.unit.id.clone(),
        source: format!("{}#{}", root.url(), record.unit.id),
        kind: "dataset".into(),
        start: None,
        end: None,
    };
    let mut unit = None;
    let mut read = 0u64;
    for shard in &record.shards {
        let reader = ShardReader::open(root, &shard.path, Some(shard.bytes)).await?;
        let unit = match &mut unit {
            Some(u) => u,
            None => unit.insert(
                writer
                    .begin_unit(spec.clone(), reader.schema().clone(), WorkerInfo::default())
                    .await?,
            ),
        };
        for rg in 0..reader.num_row_groups() {
            let batch = reader.read_row_group(rg, None).await?;
            read += batch.num_rows() as u64;
            let failures = row_failures(&batch, predicates, &shard.path)?;
            let keep = BooleanArray::from(failures.iter().map(Option::is_none).collect::<Vec<_>>());
            let kept = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| ShardError::arrow("filtering rows", e))?;
            if kept.num_rows() > 0 {
                unit.write(&kept).await?;
            }
            for r in rejections(&batch, failures)? {
                unit.reject(&r);
            }
            if let Some(p) = progress {
                p.inc(batch.num_rows() as u64);
            }
        }
    }
    let unit = match unit {
        Some(u) => u,
        None => {
            let schema = flipstream_schemas::shard_schema();
            writer
                .begin_unit(spec, schema, WorkerInfo::default())
                .await?
        }
    };
    unit.commit(read, 0).await
}

/// Per row: `None` when it satisfies every predicate, else why not (the first it fails).
fn row_failures(
    batch: &RecordBatch,
    predicates: &[Predicate],
    path: &str,
) -> Result<Vec<Option<String>>> {
    let mut out = vec![None; batch.num_rows()];
    for p in predicates {
        let column = batch
            .column_by_name(&p.column)
            .ok_or_else(|| ShardError::FilterRequest {
                url: String::new(),
                detail: format!("{path} has no column {:?} (for {p})", p.column),
            })?;
        let failures = p
            .failures(column)
            .map_err(|detail| ShardError::FilterRequest {
                url: String::new(),
                detail,
            })?;
        for (slot, failure) in out.iter_mut().zip(failures) {
            if slot.is_none() {
                *slot = failure;
            }
        }
    }
    Ok(out)
}

/// The rejections of the rows that failed.
fn rejections(batch: &RecordBatch, failures: Vec<Option<String>>) -> Result<Vec<Rejection>> {
    let text = |name: &str| -> Result<Option<ArrayRef>> {
        batch
            .column_by_name(name)
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .transpose()
            .map_err(|e| ShardError::arrow("reading key, source and url", e))
    };
    let (keys, sources, urls) = (
        text(columns::KEY)?,
        text(columns::SOURCE)?,
        text(columns::URL)?,
    );
    let value = |a: &Option<ArrayRef>, i: usize| {
        a.as_ref()
            .map(|a| a.as_string::<i32>())
            .filter(|a| !a.is_null(i))
            .map(|a| a.value(i).to_string())
    };
    Ok(failures
        .into_iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|detail| (i, detail)))
        .map(|(i, detail)| Rejection {
            key: value(&keys, i).unwrap_or_default(),
            source: value(&sources, i).unwrap_or_default(),
            url: value(&urls, i),
            reason: RejectReason::ColumnFilter,
            detail,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn predicates_parse_and_refuse_what_they_cannot_compare() {
        let p: Predicate = "similarity >= 0.28".parse().unwrap();
        assert_eq!(
            (p.column.as_str(), p.op, p.value.as_str()),
            ("similarity", Op::Ge, "0.28")
        );
        assert_eq!(p.to_string(), "similarity>=0.28");
        let p: Predicate = "label_color==red".parse().unwrap();
        assert_eq!((p.op, p.number), (Op::Eq, None));
        assert_eq!("a<1".parse::<Predicate>().unwrap().op, Op::Lt);
        assert_eq!("a!=b".parse::<Predicate>().unwrap().op, Op::Ne);
        for bad in [
            "similarity",
            "similarity>=",
            ">=1",
            "label_color<red",
            "x>NaN",
        ] {
            assert!(bad.parse::<Predicate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_fail_their_first_predicate_and_nulls_never_pass() {
        let sim: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.3),
            Some(0.1),
            None,
            Some(0.5),
        ]));
        let color: ArrayRef = Arc::new(StringArray::from(vec!["red", "red", "red", "blue"]));
        let batch =
            RecordBatch::try_from_iter([("similarity", sim), ("label_color", color)]).unwrap();
        let preds: Vec<Predicate> = ["similarity>=0.28", "label_color==red"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let f = row_failures(&batch, &preds, "s").unwrap();
        assert_eq!(f[0], None);
        assert_eq!(
            f[1].as_deref(),
            Some("similarity is 0.1, the filter is similarity>=0.28")
        );
        assert_eq!(
            f[2].as_deref(),
            Some("similarity is null, the filter is similarity>=0.28")
        );
        assert_eq!(
            f[3].as_deref(),
            Some("label_color is \"blue\", the filter is label_color==red")
        );
        let missing: Predicate = "nope>1".parse().unwrap();
        let e = row_failures(&batch, &[missing], "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"nope\""), "{e}");
    }
}
