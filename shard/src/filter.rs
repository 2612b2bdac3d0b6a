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
//!
//! **Scores.** With a score sidecar ([`crate::scores`], made by `flipstream score`), predicates
//! may name its column `clip_score`, read by key beside each row group and never stored in the
//! new shards: `--min-clip-score X` is `clip_score>=X`, and `--clip-score-top F` resolves to the
//! threshold that keeps the top fraction `F` of the scored rows ([`top_fraction_threshold`]).
//! Rows that fail a score predicate are rejections `low_clip_score`; a row without a score (its
//! image could not be decoded when it was scored) fails it as `null`. Every source unit must
//! have been scored.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use std::collections::HashMap;
use std::sync::Arc;

use crate::progress::Progress;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float32Array, RecordBatch};
use arrow::datatypes::DataType;
use flipstream_schemas::{
    CLIP_SCORE_COLUMN, CommitRecord, DatasetManifest, RejectReason, UnitCounts, UnitSpec,
    WorkerInfo, columns,
};
use serde::Serialize;

use crate::commit::{DatasetWriter, Rejection};
use crate::dataset::Dataset;
use crate::error::{Result, ShardError};
use crate::reader::ShardReader;
use crate::scores::{ScoreSidecar, top_fraction_threshold};
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
    /// `column>=bound`, for a bound read from a float32 column (written as the float32 it is,
    /// compared exactly).
    pub fn at_least(column: &str, bound: f32) -> Self {
        Predicate {
            column: column.to_string(),
            op: Op::Ge,
            value: bound.to_string(),
            number: Some(f64::from(bound)),
        }
    }

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
                // a float32 column shows its values as float32 (0.12, not 0.11999999731779099)
                let single = column.data_type() == &DataType::Float32;
                let show = |x: f64| {
                    if single {
                        (x as f32).to_string()
                    } else {
                        x.to_string()
                    }
                };
                (0..v.len())
                    .map(|i| match v.is_null(i) {
                        true => why("null".into()),
                        false => {
                            let x = v.value(i);
                            let ok = x.partial_cmp(&bound).is_some_and(|o| self.op.holds(o));
                            if ok { None } else { why(show(x)) }
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

/// What `shard filter` keeps.
#[derive(Debug, Clone, Default)]
pub struct FilterSpec {
    /// Every kept row satisfies all of them; they may name `clip_score` when `scores` is set.
    pub predicates: Vec<Predicate>,
    /// The score sidecar whose `clip_score` the predicates read.
    pub scores: Option<ScoreSidecar>,
    /// Keep the top fraction of the scored rows: resolved to a `clip_score>=T` predicate.
    pub clip_score_top: Option<f64>,
}

/// What a `shard filter` run did.
#[derive(Debug, Clone, Serialize)]
pub struct FilterSummary {
    /// The source dataset.
    pub source: String,
    /// The new dataset.
    pub dataset: String,
    /// The predicates, as written (`--clip-score-top` as its resolved `clip_score>=T`).
    pub predicates: Vec<String>,
    /// The score sidecar read, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<String>,
    /// The threshold `--clip-score-top` resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_score_threshold: Option<f32>,
    /// Units of the source.
    pub units_planned: usize,
    /// Of those, already committed in the output before this run.
    pub units_skipped: usize,
    /// Committed by this run.
    pub units_committed: usize,
    /// Rows over the units committed by this run (`read`: the source rows, `rejected`: the rows
    /// that failed a predicate).
    pub counts: UnitCounts,
    /// Of the rejected rows, those that failed a score predicate (`low_clip_score`).
    pub low_clip_score: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

/// Why a row was left out.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    reason: RejectReason,
    detail: String,
}

/// Writes into `out` the rows of `source` that satisfy every predicate of `spec` (see the module
/// docs). An unknown column, a column that cannot be compared, or a score predicate without
/// (complete) scores is [`ShardError::FilterRequest`].
pub async fn filter_dataset(
    source: &Dataset,
    out: &str,
    spec: &FilterSpec,
    settings: WriterSettings,
    progress: &dyn Progress,
) -> Result<FilterSummary> {
    let started = Instant::now();
    let request = |detail: String| ShardError::FilterRequest {
        url: source.root().url().to_string(),
        detail,
    };
    let (predicates, threshold, scores) = resolve_predicates(source, spec).await?;
    if predicates.is_empty() {
        return Err(request(
            "give at least one predicate (--where COLUMN OP VALUE, --min-clip-score or \
             --clip-score-top)"
                .into(),
        ));
    }
    check_columns(source, &predicates, scores.is_some())
        .await
        .map_err(request)?;
    let written: Vec<String> = predicates.iter().map(ToString::to_string).collect();
    let manifest = output_manifest(source, &written, scores);
    let writer = DatasetWriter::open(StoreRoot::parse(out)?, manifest, settings).await?;
    let committed = writer.committed_units().await?;
    let todo: Vec<&CommitRecord> = source
        .commits()
        .iter()
        .filter(|c| !committed.contains(&c.unit.id))
        .collect();
    progress.set_total(todo.iter().map(|c| c.counts.accepted).sum());
    let mut counts = UnitCounts::default();
    let mut low_clip_score = 0;
    for record in &todo {
        let (unit, low) = filter_unit(source, &writer, record, &predicates, scores, progress)
            .await
            .map_err(|e| match e {
                ShardError::FilterRequest { detail, .. } => request(detail),
                other => other,
            })?;
        counts.merge(&unit.counts);
        low_clip_score += low;
    }
    progress.finish();
    Ok(FilterSummary {
        source: source.root().url().to_string(),
        dataset: writer.root().url().to_string(),
        predicates: written,
        scores: scores.map(|s| s.manifest().name.clone()),
        clip_score_threshold: threshold,
        units_planned: source.commits().len(),
        units_skipped: source.commits().len() - todo.len(),
        units_committed: todo.len(),
        counts,
        low_clip_score,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The manifest of the output: the source, its fingerprint, the predicates and the scores'
/// model, so that a re-run with anything else is refused.
fn output_manifest(
    source: &Dataset,
    written: &[String],
    scores: Option<&ScoreSidecar>,
) -> DatasetManifest {
    let mut filter = serde_json::json!({
        "source": source.root().url(),
        "source_fingerprint": source.manifest().config_fingerprint,
        "where": written,
    });
    if let Some(s) = scores {
        filter["scores"] = serde_json::json!({
            "name": s.manifest().name,
            "model": s.manifest().model,
        });
    }
    let config = serde_json::json!({ "filter": filter });
    let fingerprint = blake3::hash(config.to_string().as_bytes())
        .to_hex()
        .to_string();
    DatasetManifest::new(fingerprint, config)
}

/// The predicates with `--clip-score-top` resolved, its threshold, and the score sidecar when a
/// predicate reads it (a sidecar given but not used is left out, so it changes nothing). Without
/// a sidecar, `clip_score` is an ordinary column of the shards. Score predicates compare numbers,
/// and need a sidecar that covers every unit of the source.
async fn resolve_predicates<'a>(
    source: &Dataset,
    spec: &'a FilterSpec,
) -> Result<(Vec<Predicate>, Option<f32>, Option<&'a ScoreSidecar>)> {
    let request = |detail: String| ShardError::FilterRequest {
        url: source.root().url().to_string(),
        detail,
    };
    let mut predicates = spec.predicates.clone();
    let on_scores = predicates.iter().any(|p| p.column == CLIP_SCORE_COLUMN);
    let Some(scores) = spec
        .scores
        .as_ref()
        .filter(|_| on_scores || spec.clip_score_top.is_some())
    else {
        if spec.clip_score_top.is_some() {
            return Err(request(
                "--clip-score-top needs a score sidecar: compute it with `flipstream score \
                 DATASET --run RUN`"
                    .into(),
            ));
        }
        return Ok((predicates, None, None));
    };
    if let Some(p) = predicates
        .iter()
        .find(|p| p.column == CLIP_SCORE_COLUMN && p.number.is_none())
    {
        return Err(request(format!(
            "{p}: {CLIP_SCORE_COLUMN} compares with numbers"
        )));
    }
    let missing = scores.missing_units(source).await?;
    if let Some(first) = missing.first() {
        return Err(request(format!(
            "{} of {} units have no scores in {} (first: {first}); finish `flipstream score` first",
            missing.len(),
            source.commits().len(),
            scores.dir(),
        )));
    }
    // only the top fraction needs every score before filtering; each unit reads its own later
    let Some(fraction) = spec.clip_score_top else {
        return Ok((predicates, None, Some(scores)));
    };
    let all = scores.read_all(source).await?;
    let threshold = top_fraction_threshold(&all.scores, fraction).ok_or_else(|| {
        request(format!(
            "--clip-score-top {fraction}: needs a fraction in (0, 1] and at least one score \
             ({} scores)",
            all.scores.len()
        ))
    })?;
    predicates.push(Predicate::at_least(CLIP_SCORE_COLUMN, threshold));
    Ok((predicates, Some(threshold), Some(scores)))
}

/// Checks the predicates against the first shard's schema before anything is written: each
/// column exists and can be compared with its value. With scores, `clip_score` is theirs.
async fn check_columns(
    source: &Dataset,
    predicates: &[Predicate],
    with_scores: bool,
) -> std::result::Result<(), String> {
    let Some(shard) = source.shards().next() else {
        return Ok(());
    };
    let reader = ShardReader::open(source.root(), &shard.path, Some(shard.bytes))
        .await
        .map_err(|e| e.to_string())?;
    let schema = reader.schema();
    if with_scores && schema.field_with_name(CLIP_SCORE_COLUMN).is_ok() {
        return Err(format!(
            "{} has its own column {CLIP_SCORE_COLUMN:?}, which the score sidecar's would hide",
            shard.path
        ));
    }
    for p in predicates {
        if with_scores && p.column == CLIP_SCORE_COLUMN {
            continue;
        }
        let field = schema.field_with_name(&p.column).map_err(|_| {
            let hint = match p.column == CLIP_SCORE_COLUMN {
                true => "; to read a score sidecar, add --scores NAME",
                false => "",
            };
            format!(
                "{} has no column {:?} (for {p}){hint}",
                shard.path, p.column
            )
        })?;
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

/// One source unit into the output unit of the same id; also the rows that failed a score
/// predicate.
async fn filter_unit(
    source: &Dataset,
    writer: &DatasetWriter,
    record: &CommitRecord,
    predicates: &[Predicate],
    scores: Option<&ScoreSidecar>,
    progress: &dyn Progress,
) -> Result<(CommitRecord, u64)> {
    let root = source.root();
    let spec = UnitSpec {
        id: record.unit.id.clone(),
        source: format!("{}#{}", root.url(), record.unit.id),
        kind: "dataset".into(),
        start: None,
        end: None,
    };
    let unit_scores = match scores {
        Some(s) => Some(s.read_unit(&record.unit.id).await?.unwrap_or_default()),
        None => None,
    };
    let mut unit = None;
    let (mut read, mut low) = (0u64, 0u64);
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
            let failures = row_failures(&batch, predicates, &shard.path, unit_scores.as_ref())?;
            let keep = BooleanArray::from(failures.iter().map(Option::is_none).collect::<Vec<_>>());
            let kept = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| ShardError::arrow("filtering rows", e))?;
            if kept.num_rows() > 0 {
                unit.write(&kept).await?;
            }
            for r in rejections(&batch, failures)? {
                low += u64::from(r.reason == RejectReason::LowClipScore);
                unit.reject(&r);
            }
            progress.advance(batch.num_rows() as u64);
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
    Ok((unit.commit(read, 0).await?, low))
}

/// The `clip_score` of each row of `batch`, looked up by key (null when the sidecar has none).
fn score_column(batch: &RecordBatch, scores: &HashMap<String, f32>) -> Result<ArrayRef> {
    let keys = batch
        .column_by_name(columns::KEY)
        .map(|c| arrow::compute::cast(c, &DataType::Utf8))
        .transpose()
        .map_err(|e| ShardError::arrow("reading keys", e))?
        .ok_or_else(|| ShardError::FilterRequest {
            url: String::new(),
            detail: "the shard has no key column to look scores up by".into(),
        })?;
    let keys = keys.as_string::<i32>();
    let values: Float32Array = (0..keys.len())
        .map(|i| {
            (!keys.is_null(i))
                .then(|| scores.get(keys.value(i)).copied())
                .flatten()
        })
        .collect();
    Ok(Arc::new(values))
}

/// Per row: `None` when it satisfies every predicate, else why not (the first it fails).
/// `scores` supplies the `clip_score` column.
fn row_failures(
    batch: &RecordBatch,
    predicates: &[Predicate],
    path: &str,
    scores: Option<&HashMap<String, f32>>,
) -> Result<Vec<Option<Failure>>> {
    let mut out = vec![None; batch.num_rows()];
    let mut score_values = None;
    for p in predicates {
        let (column, reason) = match scores {
            Some(map) if p.column == CLIP_SCORE_COLUMN => {
                let column = match &score_values {
                    Some(c) => c,
                    None => score_values.insert(score_column(batch, map)?),
                };
                // a lower bound on the score leaves out low scores; any other comparison is an
                // ordinary column predicate
                let reason = match p.op {
                    Op::Ge | Op::Gt => RejectReason::LowClipScore,
                    _ => RejectReason::ColumnFilter,
                };
                (column.clone(), reason)
            }
            _ => {
                let column =
                    batch
                        .column_by_name(&p.column)
                        .ok_or_else(|| ShardError::FilterRequest {
                            url: String::new(),
                            detail: format!("{path} has no column {:?} (for {p})", p.column),
                        })?;
                (column.clone(), RejectReason::ColumnFilter)
            }
        };
        let failures = p
            .failures(&column)
            .map_err(|detail| ShardError::FilterRequest {
                url: String::new(),
                detail,
            })?;
        for (slot, failure) in out.iter_mut().zip(failures) {
            if slot.is_none() {
                *slot = failure.map(|detail| Failure { reason, detail });
            }
        }
    }
    Ok(out)
}

/// The rejections of the rows that failed.
fn rejections(batch: &RecordBatch, failures: Vec<Option<Failure>>) -> Result<Vec<Rejection>> {
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
        .filter_map(|(i, f)| f.map(|f| (i, f)))
        .map(|(i, f)| Rejection {
            key: value(&keys, i).unwrap_or_default(),
            source: value(&sources, i).unwrap_or_default(),
            url: value(&urls, i),
            reason: f.reason,
            detail: f.detail,
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
        let f = row_failures(&batch, &preds, "s", None).unwrap();
        let detail = |i: usize| f[i].as_ref().map(|f| f.detail.as_str());
        assert_eq!(f[0], None);
        assert_eq!(
            detail(1),
            Some("similarity is 0.1, the filter is similarity>=0.28")
        );
        assert_eq!(
            detail(2),
            Some("similarity is null, the filter is similarity>=0.28")
        );
        assert_eq!(
            detail(3),
            Some("label_color is \"blue\", the filter is label_color==red")
        );
        assert!(
            f.iter()
                .flatten()
                .all(|f| f.reason == RejectReason::ColumnFilter)
        );
        let missing: Predicate = "nope>1".parse().unwrap();
        let e = row_failures(&batch, &[missing], "s", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"nope\""), "{e}");
    }

    #[test]
    fn score_predicates_read_the_sidecar_by_key_and_reject_as_low_clip_score() {
        let key: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let color: ArrayRef = Arc::new(StringArray::from(vec!["red", "red", "blue"]));
        let batch = RecordBatch::try_from_iter([("key", key), ("label_color", color)]).unwrap();
        let scores: HashMap<String, f32> = [("a".to_string(), 0.31), ("b".to_string(), 0.12)]
            .into_iter()
            .collect();
        let preds = vec![
            Predicate::at_least(CLIP_SCORE_COLUMN, 0.25),
            "label_color==red".parse().unwrap(),
        ];
        let f = row_failures(&batch, &preds, "s", Some(&scores)).unwrap();
        assert_eq!(f[0], None);
        let b = f[1].as_ref().unwrap();
        assert_eq!(b.reason, RejectReason::LowClipScore);
        assert!(b.detail.starts_with("clip_score is 0.12"), "{}", b.detail);
        // no score for c: it fails the score predicate first, as null
        let c = f[2].as_ref().unwrap();
        assert_eq!(c.reason, RejectReason::LowClipScore);
        assert!(c.detail.starts_with("clip_score is null"), "{}", c.detail);
    }
}
