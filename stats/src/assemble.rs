//! Turns the commit records and the merged scan state into a [`StatsReport`].

use std::collections::{BTreeMap, BTreeSet};

use flipstream_schemas::{CommitRecord, RejectReason, SplitManifest, UnitCounts, chain_counts};

use super::StatsOptions;
use super::distinct;
use super::metrics::Metric;
use super::outliers::{self, RobustScores, THRESHOLD};
use super::report::*;
use super::scan::ScanResult;
use super::state::{ColumnKind, ScanState, WORD_CAPACITY};
use flipstream_shard::dataset::Dataset;

/// Everything [`assemble`] needs.
pub(crate) struct Inputs<'a> {
    /// The dataset (manifest and commit records).
    pub dataset: &'a Dataset,
    /// The scan.
    pub scan: &'a ScanResult,
    /// Rejection examples by reason code.
    pub examples: BTreeMap<String, Vec<RejectionExample>>,
    /// Bytes fetched for the examples.
    pub rejection_bytes_fetched: u64,
    /// Sampled rows.
    pub samples: Vec<SampleSummary>,
    /// Bytes fetched for the samples.
    pub sample_bytes_fetched: u64,
    /// The split view, if any.
    pub split: Option<SplitManifest>,
    /// The score sidecars' summaries.
    pub scores: Vec<ScoreSummary>,
    /// Seconds the whole computation took.
    pub elapsed_s: f64,
    /// Object-store retries during the computation.
    pub store_retries: u64,
    /// The options used.
    pub options: &'a StatsOptions,
    /// Warnings so far.
    pub warnings: Vec<String>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn totals(commits: &[CommitRecord], counts: &UnitCounts) -> Totals {
    let shard_bytes: u64 = commits
        .iter()
        .flat_map(|c| &c.shards)
        .map(|s| s.bytes)
        .sum();
    let rejection_bytes: u64 = commits
        .iter()
        .filter_map(|c| c.rejections.as_ref())
        .map(|r| r.bytes)
        .sum();
    let image_bytes: u64 = commits
        .iter()
        .flat_map(|c| &c.shards)
        .map(|s| s.image_bytes)
        .sum();
    Totals {
        read: counts.read,
        accepted: counts.accepted,
        rejected: counts.rejected,
        accepted_share: share(counts.accepted, counts.read),
        rejected_share: share(counts.rejected, counts.read),
        input_bytes: counts.input_bytes,
        shard_bytes,
        rejection_bytes,
        stored_bytes: shard_bytes + rejection_bytes,
        image_bytes,
        mean_image_bytes: (counts.accepted > 0)
            .then(|| image_bytes as f64 / counts.accepted as f64),
    }
}

fn reasons(
    commits: &[CommitRecord],
    counts: &UnitCounts,
    mut examples: BTreeMap<String, Vec<RejectionExample>>,
) -> Vec<ReasonSummary> {
    // A unit and its retry units count as one (the rejections retries superseded are gone).
    let chains = chain_counts(commits);
    let mut out: Vec<ReasonSummary> = counts
        .rejected_by_reason
        .iter()
        .filter(|&(_, &n)| n > 0)
        .map(|(code, &count)| ReasonSummary {
            reason: code.clone(),
            description: RejectReason::from_code(code)
                .map_or(
                    "unknown reason code (written by a newer flipstream?)",
                    RejectReason::description,
                )
                .to_string(),
            count,
            share_of_read: share(count, counts.read),
            units: chains
                .values()
                .filter(|c| c.rejected_by_reason.get(code).is_some_and(|&n| n > 0))
                .count() as u64,
            examples: examples.remove(code).unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    out
}

fn ingest(commits: &[CommitRecord], counts: &UnitCounts) -> Option<IngestThroughput> {
    let worker_seconds: f64 = commits
        .iter()
        .map(|c| c.elapsed_s)
        .filter(|s| s.is_finite() && *s > 0.0)
        .sum();
    if worker_seconds <= 0.0 {
        return None;
    }
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let first = commits
        .iter()
        .filter_map(|c| parse(&c.started_at).map(|t| (t, &c.started_at)))
        .min_by_key(|(t, _)| *t);
    let last = commits
        .iter()
        .filter_map(|c| parse(&c.finished_at).map(|t| (t, &c.finished_at)))
        .max_by_key(|(t, _)| *t);
    let wall_seconds = match (first, last) {
        (Some((a, _)), Some((b, _))) if b > a => Some((b - a).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let workers: BTreeSet<(u32, &str)> = commits
        .iter()
        .map(|c| (c.worker.index, c.worker.host.as_str()))
        .collect();
    Some(IngestThroughput {
        worker_seconds,
        items_per_worker_second: counts.read as f64 / worker_seconds,
        accepted_per_worker_second: counts.accepted as f64 / worker_seconds,
        input_bytes_per_worker_second: counts.input_bytes as f64 / worker_seconds,
        first_started_at: first.map(|(_, s)| s.clone()),
        last_finished_at: last.map(|(_, s)| s.clone()),
        wall_seconds,
        items_per_second: wall_seconds
            .filter(|w| *w > 0.0)
            .map(|w| counts.read as f64 / w),
        workers: workers.len() as u64,
    })
}

fn distributions(state: &ScanState) -> Distributions {
    let s = |m: Metric| state.metrics[m.index()].summary();
    Distributions {
        width: s(Metric::Width),
        height: s(Metric::Height),
        orig_width: s(Metric::OrigWidth),
        orig_height: s(Metric::OrigHeight),
        aspect_ratio: s(Metric::AspectRatio),
        orig_aspect_ratio: s(Metric::OrigAspectRatio),
        megapixels: s(Metric::Megapixels),
        orig_megapixels: s(Metric::OrigMegapixels),
        image_bytes: s(Metric::ImageBytes),
        caption_chars: s(Metric::CaptionChars),
        caption_words: s(Metric::CaptionWords),
    }
}

fn passthrough(state: &ScanState, top_values: usize) -> Vec<PassthroughSummary> {
    state
        .columns
        .iter()
        .map(|(name, c)| PassthroughSummary {
            column: name.clone(),
            data_type: c.data_type.clone(),
            kind: c.kind.as_str().to_string(),
            rows: c.rows,
            nulls: c.nulls,
            numeric: (c.kind == ColumnKind::Numeric).then(|| c.numeric.summary()),
            text: (c.kind == ColumnKind::Text).then(|| TextSummary {
                distinct: c.text.is_exact().then_some(c.text.items().len() as u64),
                exact: c.text.is_exact(),
                top: c.text.items().iter().take(top_values).cloned().collect(),
            }),
            boolean: (c.kind == ColumnKind::Boolean).then_some(BooleanSummary {
                true_count: c.trues,
                false_count: c.falses,
            }),
        })
        .collect()
}

fn outlier_metric(name: &str, scores: &RobustScores, flagged: u64) -> OutlierMetric {
    OutlierMetric {
        metric: name.to_string(),
        values: scores.z.len() as u64,
        median: scores.median,
        mad: scores.mad,
        spread: scores.spread.as_str().to_string(),
        flagged_shards: flagged,
    }
}

/// The per-shard table and the outlier summary.
fn shards(commits: &[CommitRecord]) -> (Vec<ShardSummary>, OutlierSummary) {
    // A retry unit's shards take the share of its original unit with all its retries: a retry
    // unit alone holds only failures re-tried, not a sample of its input.
    let chains = chain_counts(commits);
    let unit_share: Vec<f64> = commits
        .iter()
        .map(|c| {
            let chain = &chains[c.origin()];
            share(chain.rejected, chain.read)
        })
        .collect();
    let unit_scores = outliers::robust_scores(&unit_share);
    let mut rows = Vec::new();
    for (u, c) in commits.iter().enumerate() {
        for s in &c.shards {
            rows.push(ShardSummary {
                unit: c.unit.id.clone(),
                path: s.path.clone(),
                rows: s.rows,
                row_groups: s.row_groups.len() as u64,
                bytes: s.bytes,
                image_bytes: s.image_bytes,
                mean_image_bytes: if s.rows == 0 {
                    0.0
                } else {
                    s.image_bytes as f64 / s.rows as f64
                },
                unit_rejection_share: unit_share[u],
                robust_z: ShardScores {
                    mean_image_bytes: 0.0,
                    unit_rejection_share: unit_scores.z[u],
                },
                outlier: Vec::new(),
            });
        }
    }
    let means: Vec<f64> = rows.iter().map(|r| r.mean_image_bytes).collect();
    let byte_scores = outliers::robust_scores(&means);
    let (mut flagged_bytes, mut flagged_share, mut flagged_any) = (0, 0, 0);
    for (row, z) in rows.iter_mut().zip(&byte_scores.z) {
        row.robust_z.mean_image_bytes = *z;
        if z.abs() > THRESHOLD {
            row.outlier.push("mean_image_bytes".to_string());
            flagged_bytes += 1;
        }
        if row.robust_z.unit_rejection_share.abs() > THRESHOLD {
            row.outlier.push("unit_rejection_share".to_string());
            flagged_share += 1;
        }
        flagged_any += u64::from(!row.outlier.is_empty());
    }
    let summary = OutlierSummary {
        method: "modified_z".to_string(),
        threshold: THRESHOLD,
        metrics: vec![
            outlier_metric("mean_image_bytes", &byte_scores, flagged_bytes),
            outlier_metric("unit_rejection_share", &unit_scores, flagged_share),
        ],
        flagged_shards: flagged_any,
    };
    (rows, summary)
}

/// Builds the report.
pub(crate) fn assemble(inputs: Inputs<'_>) -> StatsReport {
    let ds = inputs.dataset;
    let commits = ds.commits();
    let counts = ds.totals();
    let state = &inputs.scan.state;
    let totals = totals(commits, &counts);
    let (shard_rows, outlier_summary) = shards(commits);
    let scan = scan_summary(&inputs, totals.stored_bytes);
    let mut warnings = inputs.warnings;
    if state.rows != counts.accepted {
        warnings.push(format!(
            "the shards hold {} rows but the commit records count {} accepted items",
            state.rows, counts.accepted
        ));
    }
    StatsReport {
        format: REPORT_FORMAT.to_string(),
        report_version: REPORT_VERSION,
        generated_at: flipstream_schemas::now_rfc3339(),
        generated_by: flipstream_schemas::metadata::writer_id(),
        dataset: dataset_info(ds, inputs.split.as_ref()),
        rejections: reasons(commits, &counts, inputs.examples),
        duplicates: duplicates(state, &counts),
        ingest: ingest(commits, &counts),
        image_formats: image_formats(state),
        distributions: distributions(state),
        caption_words: caption_words(state, inputs.options.top_words),
        passthrough: passthrough(state, inputs.options.top_values),
        scores: inputs.scores,
        shards: shard_rows,
        outliers: outlier_summary,
        scan,
        totals,
        samples: inputs.samples,
        warnings,
    }
}

/// Where the dataset is, who made it, and its layout.
fn dataset_info(ds: &Dataset, split: Option<&SplitManifest>) -> DatasetInfo {
    let manifest = ds.manifest();
    DatasetInfo {
        url: ds.root().url().to_string(),
        name: super::dataset_name(ds.root().url()),
        created_at: manifest.created_at.clone(),
        created_by: manifest.created_by.clone(),
        config_fingerprint: manifest.config_fingerprint.clone(),
        units: ds.commits().len() as u64,
        shards: ds.shards().count() as u64,
        row_groups: ds.shards().map(|s| s.row_groups.len() as u64).sum(),
        split: split.map(|s| SplitInfo {
            val_fraction: s.val_fraction,
            seed: s.seed,
            train_rows: s.train_rows,
            val_rows: s.val_rows,
        }),
    }
}

/// Stored image formats, most frequent first.
fn image_formats(state: &ScanState) -> Vec<ValueCount> {
    let mut formats: Vec<ValueCount> = state
        .formats
        .iter()
        .map(|(value, &count)| ValueCount {
            value: value.clone(),
            count,
        })
        .collect();
    formats.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    formats
}

/// Duplicates rejected by ingest, and the estimate of those left in the shards.
fn duplicates(state: &ScanState, counts: &UnitCounts) -> Duplicates {
    let reason_count = |code: RejectReason| {
        counts
            .rejected_by_reason
            .get(code.code())
            .copied()
            .unwrap_or(0)
    };
    let distinct_content = state.content_hashes.estimate();
    let distinct_phash = state.phashes.estimate();
    Duplicates {
        rejected_exact: reason_count(RejectReason::DuplicateExact),
        rejected_near: reason_count(RejectReason::DuplicateNear),
        distinct_content_hashes: distinct_content,
        distinct_phashes: distinct_phash,
        estimate_standard_error: distinct::STANDARD_ERROR,
        residual_exact_estimate: state.rows.saturating_sub(distinct_content),
        residual_near_estimate: state.rows.saturating_sub(distinct_phash),
    }
}

/// The `top` most frequent caption words.
fn caption_words(state: &ScanState, top: usize) -> WordSummary {
    WordSummary {
        capacity: WORD_CAPACITY as u64,
        exact: state.words.is_exact(),
        floor: state.words.floor(),
        words_counted: state.words_counted,
        top: state.words.items().iter().take(top).cloned().collect(),
    }
}

/// What the scan read and fetched, and how fast.
fn scan_summary(inputs: &Inputs<'_>, dataset_bytes: u64) -> ScanSummary {
    let scan = inputs.scan;
    let rows = scan.state.rows;
    let bytes_fetched =
        scan.bytes_fetched + inputs.rejection_bytes_fetched + inputs.sample_bytes_fetched;
    ScanSummary {
        columns: scan.columns.clone(),
        shards: scan.shards,
        row_groups: scan.row_groups,
        rows,
        shard_bytes_fetched: scan.bytes_fetched,
        rejection_bytes_fetched: inputs.rejection_bytes_fetched,
        sample_bytes_fetched: inputs.sample_bytes_fetched,
        bytes_fetched,
        dataset_bytes,
        fetched_share: share(bytes_fetched, dataset_bytes),
        elapsed_s: inputs.elapsed_s,
        rows_per_s: if inputs.elapsed_s > 0.0 {
            rows as f64 / inputs.elapsed_s
        } else {
            0.0
        },
        concurrency: inputs.options.concurrency as u64,
        store_retries: inputs.store_retries,
    }
}
