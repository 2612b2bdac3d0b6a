//! Dataset statistics: the report people read before spending GPU time on a dataset.
//!
//! [`compute_stats`] reads a committed dataset's commit records (counts, sizes, timings), a few
//! rejection files (examples per reason) and every shard row group, but only the small columns
//! (`state::SCAN_COLUMNS` plus passthrough columns; never `image` except for the optional
//! sampled thumbnails). Row groups are read concurrently (bounded) and summarised into fixed-size
//! mergeable state ([`histogram`], `sketch`, `topk`, `distinct`), so memory does not grow
//! with the number of rows and the result does not depend on the concurrency.
//!
//! The result is a [`StatsReport`] (`report.json`, documented field by field in `docs/stats.md`).
//! What the human-readable reports say is decided once, as a document of sections (`sections`
//! builds it, `document` holds its types), and written twice: as Markdown ([`render_markdown`])
//! and as a self-contained HTML page with SVG charts ([`render_html`]). [`write_report`] writes all
//! three (and the thumbnails) to a folder.
//!
//! Public modules: [`report`] (the JSON types), [`metrics`] (the measures and their bins),
//! [`histogram`] (their binned counts) and [`format`](mod@format) (figures as text, also used by the CLI).
//! Inside: `state` (per-row-group state, merged with `sketch`, `topk`, `distinct`, `words`),
//! `scan` (the concurrent read), `rejections` (examples), `samples` (thumbnails), `outliers`
//! (median/MAD scores), `assemble` (state → report), `sections` and `document` (the report as a
//! document), `markdown` and `html` (the two writers), `charts` (SVG). Generated datasets for its tests and benchmarks are in
//! `flipstream-testkit`.

mod assemble;
mod charts;
mod distinct;
mod document;
pub mod format;
pub mod histogram;
mod html;
mod markdown;
pub mod metrics;
mod outliers;
mod rejections;
pub mod report;
mod samples;
mod scan;
mod sections;
mod sketch;
mod state;
mod topk;
mod words;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use flipstream_schemas::layout;
use flipstream_shard::progress::Progress;

pub use html::render_html;
pub use markdown::render_markdown;
pub use report::{REPORT_FORMAT, REPORT_VERSION, StatsReport};
pub use samples::Thumbnail;

use flipstream_shard::dataset::Dataset;
use flipstream_shard::error::ShardError;
use flipstream_shard::scores::ScoreSidecar;

/// Why a report could not be made. Every variant names the object it is about.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Storage, Parquet or commit-record problems (missing object, truncated file, bad record).
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The dataset has a manifest but no committed unit.
    #[error("{url} has no committed units (nothing under {dir}/): nothing to report")]
    Empty {
        /// Dataset root.
        url: String,
        /// The commit-record folder.
        dir: &'static str,
    },
    /// A shard disagrees with its commit record.
    #[error("{path}: {detail}")]
    Mismatch {
        /// Full location of the shard.
        path: String,
        /// What differs.
        detail: String,
    },
    /// A column cannot be read as the report needs it.
    #[error("{path}: column `{column}`: {detail}")]
    Column {
        /// Shard and row group.
        path: String,
        /// Column name.
        column: String,
        /// What is wrong.
        detail: String,
    },
    /// A scan task panicked or was cancelled (a bug, reported rather than hidden).
    #[error("scan task failed: {0}")]
    Task(String),
    /// A chart could not be drawn.
    #[error("chart {chart}: {detail}")]
    Chart {
        /// Which chart.
        chart: String,
        /// The drawing error.
        detail: String,
    },
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// How to make a report.
#[derive(Clone)]
pub struct StatsOptions {
    /// Row groups (and files) read at once.
    pub concurrency: usize,
    /// Rows to sample for a thumbnail grid (0: none; only then are images read).
    pub sample_images: usize,
    /// Example rejected items per reason.
    pub examples_per_reason: usize,
    /// Caption words listed.
    pub top_words: usize,
    /// Values listed per text passthrough column.
    pub top_values: usize,
    /// Progress in rows (default: none).
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for StatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsOptions")
            .field("concurrency", &self.concurrency)
            .field("sample_images", &self.sample_images)
            .field("examples_per_reason", &self.examples_per_reason)
            .field("top_words", &self.top_words)
            .field("top_values", &self.top_values)
            .finish_non_exhaustive()
    }
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            sample_images: 0,
            examples_per_reason: 3,
            top_words: 50,
            top_values: 20,
            progress: Arc::new(()),
        }
    }
}

/// A report and the thumbnails it refers to.
#[derive(Debug, Clone)]
pub struct StatsOutput {
    /// The report.
    pub report: StatsReport,
    /// Thumbnails of the sampled rows (empty without `sample_images`).
    pub thumbnails: Vec<Thumbnail>,
}

/// Opens the dataset at `url` and makes its report (its `scan.store_retries` include opening).
pub async fn dataset_stats(url: &str, options: &StatsOptions) -> Result<StatsOutput, StatsError> {
    let retries_before = flipstream_shard::store::retry_counts().retries;
    let ds = Dataset::open(url).await?;
    let mut out = compute_stats(&ds, options).await?;
    out.report.scan.store_retries =
        flipstream_shard::store::retry_counts().retries - retries_before;
    Ok(out)
}

/// Makes the report of an opened dataset; see the module docs.
pub async fn compute_stats(
    ds: &Dataset,
    options: &StatsOptions,
) -> Result<StatsOutput, StatsError> {
    if ds.commits().is_empty() {
        return Err(StatsError::Empty {
            url: ds.root().url().to_string(),
            dir: layout::COMMITS_DIR,
        });
    }
    let started = Instant::now();
    let retries_before = flipstream_shard::store::retry_counts().retries;
    let root = ds.root();
    options.progress.set_total(ds.rows());
    let scan = scan::scan_shards(
        root,
        ds.commits(),
        options.concurrency,
        options.progress.as_ref(),
    )
    .await?;
    let plans = rejections::plan_examples(ds.commits(), options.examples_per_reason);
    let (examples, rejection_bytes) =
        rejections::read_examples(root, &plans, options.concurrency).await?;
    let (samples, thumbnails, sample_bytes) = if options.sample_images > 0 {
        samples::read_samples(
            root,
            &ds.row_groups(),
            options.sample_images,
            options.concurrency,
        )
        .await?
    } else {
        (Vec::new(), Vec::new(), 0)
    };
    let mut warnings = Vec::new();
    let split = match ds.split_manifest().await {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("split view ignored: {e}"));
            None
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    options.progress.finish();
    let scores = score_summaries(ds, &mut warnings).await;
    let report = assemble::assemble(assemble::Inputs {
        dataset: ds,
        scan: &scan,
        examples,
        rejection_bytes_fetched: rejection_bytes,
        samples,
        sample_bytes_fetched: sample_bytes,
        split,
        scores,
        elapsed_s: elapsed,
        store_retries: flipstream_shard::store::retry_counts().retries - retries_before,
        options,
        warnings,
    });
    Ok(StatsOutput { report, thumbnails })
}

/// The distribution of every score sidecar's scores; a sidecar that cannot be read becomes a
/// warning, not a failed report.
async fn score_summaries(ds: &Dataset, warnings: &mut Vec<String>) -> Vec<report::ScoreSummary> {
    let names = match ScoreSidecar::names(ds.root()).await {
        Ok(names) => names,
        Err(e) => {
            warnings.push(format!("score sidecars ignored: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        let read = async {
            let Some(sidecar) = ScoreSidecar::open(ds, &name).await? else {
                return Ok(None);
            };
            let column = sidecar.read_all(ds).await?;
            Ok::<_, ShardError>(Some((sidecar, column)))
        };
        match read.await {
            Ok(None) => {}
            Ok(Some((sidecar, column))) => {
                let mut distribution = histogram::Distribution::new(None);
                for &s in &column.scores {
                    distribution.add(f64::from(s));
                }
                let m = sidecar.manifest();
                out.push(report::ScoreSummary {
                    name,
                    column: m.column.clone(),
                    run: m.model.run.clone(),
                    checkpoint: m.model.checkpoint.clone(),
                    step: m.model.step,
                    units_missing: column.units_missing.len() as u64,
                    rows_unscored: column.rows_unscored,
                    distribution: distribution.summary(),
                });
            }
            Err(e) => warnings.push(format!("scores/{name} ignored: {e}")),
        }
    }
    out
}

/// Files written by [`write_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `report.json`.
    pub json: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Thumbnails under `samples/`.
    pub thumbnails: Vec<PathBuf>,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StatsError> {
    std::fs::write(path, bytes).map_err(|source| StatsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `report.json`, `report.md`, `report.html` and the thumbnails into `dir` (created if
/// needed; existing report files are replaced).
pub fn write_report(dir: &Path, output: &StatsOutput) -> Result<ReportFiles, StatsError> {
    std::fs::create_dir_all(dir).map_err(|source| StatsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = dir.join("report.json");
    let body = serde_json::to_vec_pretty(&output.report).map_err(|e| StatsError::Io {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    write_file(&json, &body)?;
    // one document, written twice
    let doc = sections::build(&output.report);
    let markdown = dir.join("report.md");
    write_file(&markdown, markdown::write_document(&doc).as_bytes())?;
    let html = dir.join("report.html");
    write_file(
        &html,
        html::write_document(&doc, &output.thumbnails)?.as_bytes(),
    )?;
    let mut thumbnails = Vec::new();
    if !output.thumbnails.is_empty() {
        let samples = dir.join("samples");
        std::fs::create_dir_all(&samples).map_err(|source| StatsError::Io {
            path: samples.clone(),
            source,
        })?;
        for t in &output.thumbnails {
            let path = dir.join(&t.file_name);
            write_file(&path, &t.jpeg)?;
            thumbnails.push(path);
        }
    }
    Ok(ReportFiles {
        json,
        markdown,
        html,
        thumbnails,
    })
}

/// Short name of a dataset URL: its last path segment (`s3://bucket/laion/part1` → `part1`),
/// made safe for a folder name.
pub fn dataset_name(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed
        .rsplit(['/', '\\'])
        .find(|s| !s.is_empty() && !s.ends_with(':'))
        .unwrap_or("dataset");
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("dataset{safe}")
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_last_segment() {
        assert_eq!(dataset_name("s3://bucket/laion/part1/"), "part1");
        assert_eq!(dataset_name("/data/my ds"), "my_ds");
        assert_eq!(dataset_name("memory://x"), "x");
        assert_eq!(dataset_name("s3://"), "dataset");
        assert_eq!(dataset_name(".."), "dataset..");
    }
}
