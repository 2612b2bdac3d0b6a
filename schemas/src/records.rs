//! JSON records of a dataset: the manifest, the per-unit commit record and the split view.
//!
//! All records carry a `format` tag and the schema version so that a stray JSON file is never
//! mistaken for one of ours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{RejectReason, SCHEMA_VERSION};

/// `format` tag of [`DatasetManifest`].
pub const MANIFEST_FORMAT: &str = "flipstream-dataset";
/// `format` tag of [`CommitRecord`].
pub const COMMIT_FORMAT: &str = "flipstream-commit";
/// `format` tag of [`SplitManifest`].
pub const SPLIT_FORMAT: &str = "flipstream-split";

/// Describes how a dataset was made. Written once, by the first worker to start; every later
/// worker (or re-run) checks that its own configuration has the same fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// Program and version (`flipstream 0.1.0`).
    pub created_by: String,
    /// Hex fingerprint of the resolved configuration that determines the dataset's content.
    pub config_fingerprint: String,
    /// The resolved configuration (ingest options and inputs), for people and for re-runs.
    pub config: serde_json::Value,
}

impl DatasetManifest {
    /// A manifest for `config`, stamped now.
    pub fn new(config_fingerprint: String, config: serde_json::Value) -> Self {
        Self {
            format: MANIFEST_FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            created_at: now_rfc3339(),
            created_by: crate::metadata::writer_id(),
            config_fingerprint,
            config,
        }
    }
}

/// A deterministic unit of work: one input file, or a slice `[start, end)` of its items.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// Path-safe id, unique in the dataset (see [`crate::layout::sanitize_unit_id`]).
    pub id: String,
    /// URI of the input (local path or object store URL).
    pub source: String,
    /// Source kind: `webdataset`, `parquet`, `folder`, `url_list`.
    pub kind: String,
    /// First item (row, file, member) of the slice, when the unit is a slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// One past the last item of the slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

/// A written file with its size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
}

/// A written shard: a [`FileEntry`] plus what readers need to plan without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the whole file, hex.
    pub blake3: String,
    /// Rows in each row group, in order (sums to `rows`).
    pub row_groups: Vec<u64>,
    /// Sum of the encoded image sizes stored in the shard.
    pub image_bytes: u64,
}

/// What happened to the items of a unit. Invariant: `accepted + rejected == read` and the
/// per-reason counts sum to `rejected` ([`UnitCounts::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitCounts {
    /// Items read from the source.
    pub read: u64,
    /// Items written to shards.
    pub accepted: u64,
    /// Items written to the rejection file.
    pub rejected: u64,
    /// Rejections per reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Bytes of source images read (downloaded or read from files).
    pub input_bytes: u64,
}

impl UnitCounts {
    /// Records one rejection.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejected += 1;
        *self
            .rejected_by_reason
            .entry(reason.code().to_string())
            .or_insert(0) += 1;
    }

    /// Adds another unit's counts.
    pub fn merge(&mut self, other: &UnitCounts) {
        self.read += other.read;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.input_bytes += other.input_bytes;
        for (k, v) in &other.rejected_by_reason {
            *self.rejected_by_reason.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Checks the accounting identity; the error says which side is off.
    pub fn check(&self) -> Result<(), String> {
        if self.accepted + self.rejected != self.read {
            return Err(format!(
                "accepted ({}) + rejected ({}) != read ({})",
                self.accepted, self.rejected, self.read
            ));
        }
        let by_reason: u64 = self.rejected_by_reason.values().sum();
        if by_reason != self.rejected {
            return Err(format!(
                "rejections by reason sum to {by_reason}, rejected is {}",
                self.rejected
            ));
        }
        Ok(())
    }
}

/// Who ran a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerInfo {
    /// `--worker-index`.
    pub index: u32,
    /// `--num-workers`.
    pub count: u32,
    /// Host name, when known.
    #[serde(default)]
    pub host: String,
}

/// Written after all of a unit's files: the unit is part of the dataset if and only if this
/// record exists. It names every file of the unit with size and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRecord {
    /// Always [`COMMIT_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// The unit.
    pub unit: UnitSpec,
    /// Fingerprint of the configuration the unit was made with (matches the manifest's).
    pub config_fingerprint: String,
    /// Shards in order. May be empty when every item was rejected.
    pub shards: Vec<ShardEntry>,
    /// The rejection file, absent when nothing was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejections: Option<FileEntry>,
    /// Item accounting.
    pub counts: UnitCounts,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Wall-clock seconds spent on the unit.
    pub elapsed_s: f64,
    /// The worker that ran it.
    pub worker: WorkerInfo,
}

impl CommitRecord {
    /// Rows over all shards.
    pub fn shard_rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    /// Checks internal consistency: format tag, version, counts identity, shard rows vs accepted,
    /// rejection rows vs rejected, row groups summing to rows.
    pub fn check(&self) -> Result<(), String> {
        if self.format != COMMIT_FORMAT {
            return Err(format!(
                "format is {:?}, expected {COMMIT_FORMAT:?}",
                self.format
            ));
        }
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema version {} is not supported (this build reads {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        self.counts.check()?;
        if self.shard_rows() != self.counts.accepted {
            return Err(format!(
                "shards hold {} rows but {} items were accepted",
                self.shard_rows(),
                self.counts.accepted
            ));
        }
        let rejection_rows = self.rejections.as_ref().map_or(0, |r| r.rows);
        if rejection_rows != self.counts.rejected {
            return Err(format!(
                "rejection file holds {rejection_rows} rows but {} items were rejected",
                self.counts.rejected
            ));
        }
        for s in &self.shards {
            let sum: u64 = s.row_groups.iter().sum();
            if sum != s.rows {
                return Err(format!(
                    "{}: row groups sum to {sum}, rows is {}",
                    s.path, s.rows
                ));
            }
        }
        Ok(())
    }
}

/// Which side of a train/validation split a row is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training rows.
    Train,
    /// Held-out rows.
    Val,
}

impl Split {
    /// `train` or `val`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// A train/validation split as a *view*: no data is copied. A row is in `val` when
/// [`split_of`] says so; the per-row-group counts let loaders plan equal shares without scanning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitManifest {
    /// Always [`SPLIT_FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for this build.
    pub schema_version: u32,
    /// Fraction of rows in validation, in [0, 1].
    pub val_fraction: f64,
    /// Seed of the key hash.
    pub seed: u64,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// Rows in train.
    pub train_rows: u64,
    /// Rows in val.
    pub val_rows: u64,
    /// Per shard and row group: rows on each side.
    pub row_groups: Vec<SplitRowGroup>,
}

/// Row counts of one row group on each side of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitRowGroup {
    /// Shard path relative to the dataset root.
    pub shard: String,
    /// Row group index in the shard.
    pub row_group: u32,
    /// Rows in train.
    pub train: u64,
    /// Rows in val.
    pub val: u64,
}

/// The split a key belongs to: `val` when `(xxh3_64(key, seed) >> 11) / 2^53 < val_fraction`.
///
/// Stable across runs, machines and dataset sizes: adding data never moves an existing row, and
/// other tools reproduce it (Python: `xxhash.xxh3_64_intdigest(key, seed) >> 11`).
pub fn split_of(key: &str, seed: u64, val_fraction: f64) -> Split {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed);
    // 53 high bits → uniform in [0, 1)
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < val_fraction {
        Split::Val
    } else {
        Split::Train
    }
}

/// Current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CommitRecord {
        let mut counts = UnitCounts {
            read: 5,
            accepted: 3,
            ..Default::default()
        };
        counts.reject(RejectReason::TooSmall);
        counts.reject(RejectReason::DecodeError);
        CommitRecord {
            format: COMMIT_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            unit: UnitSpec {
                id: "a-s0".into(),
                source: "file:///x/a.tar".into(),
                kind: "webdataset".into(),
                start: None,
                end: None,
            },
            config_fingerprint: "abc".into(),
            shards: vec![ShardEntry {
                path: "shards/a-s0-00000.parquet".into(),
                rows: 3,
                bytes: 100,
                blake3: "00".into(),
                row_groups: vec![2, 1],
                image_bytes: 50,
            }],
            rejections: Some(FileEntry {
                path: "rejections/a-s0.parquet".into(),
                rows: 2,
                bytes: 10,
                blake3: "11".into(),
            }),
            counts,
            started_at: now_rfc3339(),
            finished_at: now_rfc3339(),
            elapsed_s: 0.5,
            worker: WorkerInfo::default(),
        }
    }

    #[test]
    fn commit_record_round_trips_and_checks() {
        let r = record();
        r.check().unwrap();
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: CommitRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn commit_record_check_catches_inconsistency() {
        let mut r = record();
        r.counts.accepted = 4;
        assert!(r.check().unwrap_err().contains("read"));
        let mut r = record();
        r.shards[0].row_groups = vec![1, 1];
        assert!(r.check().unwrap_err().contains("row groups"));
        let mut r = record();
        r.rejections = None;
        assert!(r.check().unwrap_err().contains("rejection file"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(record()).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<CommitRecord>(v).is_err());
    }

    #[test]
    fn split_is_stable_and_close_to_fraction() {
        let n = 20_000;
        let val = (0..n)
            .filter(|i| split_of(&format!("k{i}"), 7, 0.1) == Split::Val)
            .count();
        let share = val as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.01, "share {share}");
        assert_eq!(split_of("abc", 7, 0.5), split_of("abc", 7, 0.5));
        assert_eq!(split_of("abc", 7, 0.0), Split::Train);
        assert_eq!(split_of("abc", 7, 1.0), Split::Val);
    }
}
