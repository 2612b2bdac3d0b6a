//! The statistics report: what `report.json` holds (format `flipstream-stats`, version
//! [`REPORT_VERSION`]). Every field is documented in `docs/stats.md`; fields are only ever added
//! within a version, never renamed or removed.

use serde::{Deserialize, Serialize};

use super::histogram::DistributionSummary;
use super::metrics::Metric;
use super::topk::Counter;

/// `format` tag of [`StatsReport`].
pub const REPORT_FORMAT: &str = "flipstream-stats";
/// Version of the report layout.
pub const REPORT_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// Always [`REPORT_VERSION`] for this build.
    pub report_version: u32,
    /// RFC 3339 time the report was made.
    pub generated_at: String,
    /// Program and version that made it.
    pub generated_by: String,
    /// What was measured.
    pub dataset: DatasetInfo,
    /// Item accounting and sizes, from the commit records.
    pub totals: Totals,
    /// Rejections per reason, most frequent first.
    pub rejections: Vec<ReasonSummary>,
    /// Duplicates removed during ingest and left among accepted rows.
    pub duplicates: Duplicates,
    /// Ingest speed, when the commit records carry timings.
    pub ingest: Option<IngestThroughput>,
    /// Accepted rows per stored image format, most frequent first.
    pub image_formats: Vec<ValueCount>,
    /// Distributions of image and caption measures over accepted rows.
    pub distributions: Distributions,
    /// Most frequent caption words.
    pub caption_words: WordSummary,
    /// One entry per passthrough column, by name.
    pub passthrough: Vec<PassthroughSummary>,
    /// One entry per score sidecar (`flipstream score`), by name; absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<ScoreSummary>,
    /// One entry per committed shard, in canonical order.
    pub shards: Vec<ShardSummary>,
    /// How shard outliers were found.
    pub outliers: OutlierSummary,
    /// What the report cost to make.
    pub scan: ScanSummary,
    /// Sampled rows with thumbnails (`--sample-images`); empty otherwise.
    pub samples: Vec<SampleSummary>,
    /// Things the report could not use, one line each (e.g. an unreadable split view).
    pub warnings: Vec<String>,
}

/// Identity of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The dataset URL as given (local paths made absolute).
    pub url: String,
    /// Short name: the last path segment of the URL.
    pub name: String,
    /// From the manifest.
    pub created_at: String,
    /// From the manifest.
    pub created_by: String,
    /// From the manifest.
    pub config_fingerprint: String,
    /// Committed units.
    pub units: u64,
    /// Committed shards.
    pub shards: u64,
    /// Committed row groups.
    pub row_groups: u64,
    /// The train/validation split view, when one was written.
    pub split: Option<SplitInfo>,
}

/// Summary of `_flipstream/split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Fraction of rows assigned to validation.
    pub val_fraction: f64,
    /// Hash seed.
    pub seed: u64,
    /// Rows in train.
    pub train_rows: u64,
    /// Rows in val.
    pub val_rows: u64,
}

/// Item accounting and stored sizes, summed over committed units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Input items read.
    pub read: u64,
    /// Items stored as shard rows.
    pub accepted: u64,
    /// Items stored as rejection rows.
    pub rejected: u64,
    /// `accepted / read` (0 when nothing was read).
    pub accepted_share: f64,
    /// `rejected / read`.
    pub rejected_share: f64,
    /// Bytes of source images read by ingest.
    pub input_bytes: u64,
    /// Size of all shard files.
    pub shard_bytes: u64,
    /// Size of all rejection files.
    pub rejection_bytes: u64,
    /// `shard_bytes + rejection_bytes`: the dataset's size.
    pub stored_bytes: u64,
    /// Encoded image bytes inside the shards.
    pub image_bytes: u64,
    /// `image_bytes / accepted` (`null` when nothing was accepted).
    pub mean_image_bytes: Option<f64>,
}

/// One rejection reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonSummary {
    /// The reason code (`too_small`, `decode_error`, …).
    pub reason: String,
    /// What the code means.
    pub description: String,
    /// Items rejected for it.
    pub count: u64,
    /// `count / read`.
    pub share_of_read: f64,
    /// Units with at least one such rejection.
    pub units: u64,
    /// A few rejected items, from the first units (canonical order) that have this reason.
    pub examples: Vec<RejectionExample>,
}

/// One rejected item, as stored in a rejection file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionExample {
    /// Unit the item belongs to.
    pub unit: String,
    /// The item's key.
    pub key: String,
    /// Its URL, when it has one.
    pub url: Option<String>,
    /// What exactly happened.
    pub detail: String,
}

/// Duplicates: what ingest removed, and what remains among accepted rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Items rejected as exact duplicates (`duplicate_exact`).
    pub rejected_exact: u64,
    /// Items rejected as near duplicates (`duplicate_near`).
    pub rejected_near: u64,
    /// Estimated distinct `content_hash` values among accepted rows (HyperLogLog).
    pub distinct_content_hashes: u64,
    /// Estimated distinct `phash` values among accepted rows.
    pub distinct_phashes: u64,
    /// Relative standard error of the two estimates above.
    pub estimate_standard_error: f64,
    /// `accepted − distinct_content_hashes` (at least 0): accepted rows that repeat another
    /// accepted row's bytes, estimated.
    pub residual_exact_estimate: u64,
    /// `accepted − distinct_phashes` (at least 0): accepted rows whose perceptual hash equals
    /// another's (Hamming distance 0), estimated.
    pub residual_near_estimate: u64,
}

/// Ingest speed from the commit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestThroughput {
    /// Sum of the units' `elapsed_s`.
    pub worker_seconds: f64,
    /// `read / worker_seconds`.
    pub items_per_worker_second: f64,
    /// `accepted / worker_seconds`.
    pub accepted_per_worker_second: f64,
    /// `input_bytes / worker_seconds`.
    pub input_bytes_per_worker_second: f64,
    /// Earliest `started_at`.
    pub first_started_at: Option<String>,
    /// Latest `finished_at`.
    pub last_finished_at: Option<String>,
    /// Seconds from the first start to the last finish (all workers together).
    pub wall_seconds: Option<f64>,
    /// `read / wall_seconds`.
    pub items_per_second: Option<f64>,
    /// Distinct (worker index, host) pairs that committed units.
    pub workers: u64,
}

/// A value and how many rows have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueCount {
    /// The value.
    pub value: String,
    /// Rows.
    pub count: u64,
}

/// Distributions of the measures in [`Metric`], over accepted rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distributions {
    /// Stored width, pixels.
    pub width: DistributionSummary,
    /// Stored height, pixels.
    pub height: DistributionSummary,
    /// Source width, pixels.
    pub orig_width: DistributionSummary,
    /// Source height, pixels.
    pub orig_height: DistributionSummary,
    /// Stored width / height.
    pub aspect_ratio: DistributionSummary,
    /// Source width / height.
    pub orig_aspect_ratio: DistributionSummary,
    /// Stored width × height / 10^6.
    pub megapixels: DistributionSummary,
    /// Source width × height / 10^6.
    pub orig_megapixels: DistributionSummary,
    /// Stored (encoded) image size, bytes.
    pub image_bytes: DistributionSummary,
    /// Caption length, characters.
    pub caption_chars: DistributionSummary,
    /// Caption length, whitespace-separated words.
    pub caption_words: DistributionSummary,
}

impl Distributions {
    /// The summary of one metric.
    pub fn get(&self, m: Metric) -> &DistributionSummary {
        match m {
            Metric::Width => &self.width,
            Metric::Height => &self.height,
            Metric::OrigWidth => &self.orig_width,
            Metric::OrigHeight => &self.orig_height,
            Metric::AspectRatio => &self.aspect_ratio,
            Metric::OrigAspectRatio => &self.orig_aspect_ratio,
            Metric::Megapixels => &self.megapixels,
            Metric::OrigMegapixels => &self.orig_megapixels,
            Metric::ImageBytes => &self.image_bytes,
            Metric::CaptionChars => &self.caption_chars,
            Metric::CaptionWords => &self.caption_words,
        }
    }
}

/// The frequent caption words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordSummary {
    /// Counters the summary keeps (its fixed size).
    pub capacity: u64,
    /// True when every listed count is exact.
    pub exact: bool,
    /// Upper bound on the count of any word not listed.
    pub floor: u64,
    /// Word occurrences counted (after leaving out stopwords, numbers and single letters).
    pub words_counted: u64,
    /// The most frequent words, most frequent first.
    pub top: Vec<Counter>,
}

/// One passthrough column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassthroughSummary {
    /// Column name.
    pub column: String,
    /// Arrow type as stored (the first seen when shards differ).
    pub data_type: String,
    /// `numeric`, `text` or `boolean`.
    pub kind: String,
    /// Rows of shards that have the column.
    pub rows: u64,
    /// Null values among them.
    pub nulls: u64,
    /// Distribution, for numeric columns.
    pub numeric: Option<DistributionSummary>,
    /// Most frequent values, for text columns.
    pub text: Option<TextSummary>,
    /// True / false counts, for boolean columns.
    pub boolean: Option<BooleanSummary>,
}

/// The scores of one score sidecar (`scores/<name>/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    /// The sidecar's name.
    pub name: String,
    /// The score column (`clip_score`).
    pub column: String,
    /// The scoring run directory.
    pub run: String,
    /// The scoring checkpoint's folder name.
    pub checkpoint: String,
    /// Its optimizer steps.
    pub step: u64,
    /// Committed units without a score file (scoring not finished).
    pub units_missing: u64,
    /// Accepted rows of scored units without a score (images the scorer could not decode).
    pub rows_unscored: u64,
    /// The distribution of the scores.
    pub distribution: DistributionSummary,
}

/// Frequent values of a text column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSummary {
    /// Number of distinct values when it is known exactly (low cardinality), else `null`.
    pub distinct: Option<u64>,
    /// True when the listed counts are exact.
    pub exact: bool,
    /// Most frequent values, most frequent first.
    pub top: Vec<Counter>,
}

/// Counts of a boolean column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BooleanSummary {
    /// Rows with `true`.
    pub true_count: u64,
    /// Rows with `false`.
    pub false_count: u64,
}

/// One committed shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// Unit the shard belongs to.
    pub unit: String,
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// Row groups.
    pub row_groups: u64,
    /// File size.
    pub bytes: u64,
    /// Encoded image bytes inside.
    pub image_bytes: u64,
    /// `image_bytes / rows`.
    pub mean_image_bytes: f64,
    /// The unit's `rejected / read`.
    pub unit_rejection_share: f64,
    /// Robust z-scores of the two measures (see [`OutlierSummary`]).
    pub robust_z: ShardScores,
    /// Measures on which the shard is an outlier (empty when it is not one).
    pub outlier: Vec<String>,
}

/// Robust z-scores of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardScores {
    /// Of `mean_image_bytes`, over shards.
    pub mean_image_bytes: f64,
    /// Of `unit_rejection_share`, over units.
    pub unit_rejection_share: f64,
}

/// How outliers were found: modified z-scores `0.6745 · (x − median) / MAD` (Iglewicz & Hoaglin);
/// when the MAD is 0, `(x − median) / (1.2533 · mean absolute deviation)`; `|z|` above `threshold`
/// is an outlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierSummary {
    /// `modified_z`.
    pub method: String,
    /// Cut-off on `|z|`.
    pub threshold: f64,
    /// Per measure: the robust centre and spread used.
    pub metrics: Vec<OutlierMetric>,
    /// Shards flagged on at least one measure.
    pub flagged_shards: u64,
}

/// Centre and spread of one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierMetric {
    /// `mean_image_bytes` (over shards) or `unit_rejection_share` (over units).
    pub metric: String,
    /// Values it was computed over.
    pub values: u64,
    /// Median.
    pub median: f64,
    /// Median absolute deviation.
    pub mad: f64,
    /// `mad`, `mean_abs_dev` (MAD was 0) or `none` (all values equal: nothing is an outlier).
    pub spread: String,
    /// Shards flagged on this measure.
    pub flagged_shards: u64,
}

/// What making the report read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Shard columns read (never `image`, except for sampled rows).
    pub columns: Vec<String>,
    /// Shards opened.
    pub shards: u64,
    /// Row groups read.
    pub row_groups: u64,
    /// Rows read.
    pub rows: u64,
    /// Bytes fetched from shards (footers and the chunks of the columns above).
    pub shard_bytes_fetched: u64,
    /// Bytes fetched from rejection files (for examples).
    pub rejection_bytes_fetched: u64,
    /// Bytes fetched for sampled images.
    pub sample_bytes_fetched: u64,
    /// Sum of the three.
    pub bytes_fetched: u64,
    /// The dataset's size (`totals.stored_bytes`).
    pub dataset_bytes: u64,
    /// `bytes_fetched / dataset_bytes`.
    pub fetched_share: f64,
    /// Wall-clock seconds of the scan.
    pub elapsed_s: f64,
    /// `rows / elapsed_s`.
    pub rows_per_s: f64,
    /// Row groups read at once.
    pub concurrency: u64,
    /// Object-store operations re-issued after transient failures during the scan.
    #[serde(default)]
    pub store_retries: u64,
}

/// A sampled row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSummary {
    /// Key.
    pub key: String,
    /// Caption.
    pub caption: String,
    /// Shard path.
    pub shard: String,
    /// Row group in the shard.
    pub row_group: u64,
    /// Row in the row group.
    pub row: u64,
    /// Stored format.
    pub image_format: String,
    /// Stored width.
    pub width: u64,
    /// Stored height.
    pub height: u64,
    /// Encoded size.
    pub image_bytes: u64,
    /// Thumbnail file, relative to the report folder (`samples/00.jpg`); `null` when the image
    /// could not be decoded.
    pub thumbnail: Option<String>,
    /// Why there is no thumbnail.
    pub error: Option<String>,
}
