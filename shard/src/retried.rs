//! Units whose failures were re-tried (`flipstream ingest --retry-failed`).
//!
//! A retry unit re-reads the items that an earlier unit rejected for a transient reason and
//! fetches them again; every such item is then a shard row or a rejection row of the retry unit,
//! and its rejection row in the earlier unit is *superseded* (see
//! [`flipstream_schemas::RetryInfo`]). The files of the earlier unit are never rewritten: a reader
//! that looks at rejection rows skips the keys the retry unit holds. This module finds, for a
//! unit, the retry unit that superseded part of it, the rejections of it still in force, and the
//! keys to skip.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, UInt64Type};
use flipstream_schemas::{CommitRecord, columns};

use crate::error::{Result, ShardError};
use crate::reader::{ShardReader, for_each_text_row};
use crate::store::StoreRoot;

/// For each unit that a retry unit re-tried, that retry unit (at most one per unit: round `k+1`
/// re-tries round `k`).
pub fn retried_by(commits: &[CommitRecord]) -> HashMap<&str, &CommitRecord> {
    commits
        .iter()
        .filter_map(|c| c.retry.as_ref().map(|r| (r.of.as_str(), c)))
        .collect()
}

/// The rejections of `record` per reason that are still in force: its own, less those its retry
/// unit `child` superseded.
pub fn live_rejections(
    record: &CommitRecord,
    child: Option<&CommitRecord>,
) -> BTreeMap<String, u64> {
    let mut live = record.counts.rejected_by_reason.clone();
    if let Some(retry) = child.and_then(|c| c.retry.as_ref()) {
        for (reason, n) in &retry.superseded_by_reason {
            if let Some(count) = live.get_mut(reason) {
                *count = count.saturating_sub(*n);
            }
        }
        live.retain(|_, n| *n > 0);
    }
    live
}

/// Every key of a unit: its shard rows and its rejection rows (only the `key` column is read).
/// For a retry unit these are the keys whose rejections in the unit it re-tried are superseded.
pub async fn unit_keys(root: &StoreRoot, record: &CommitRecord) -> Result<HashSet<String>> {
    let files = record
        .shards
        .iter()
        .map(|s| (s.path.as_str(), s.bytes))
        .chain(record.rejections.iter().map(|r| (r.path.as_str(), r.bytes)));
    let mut keys = HashSet::new();
    for (path, bytes) in files {
        for_each_text_row(root, path, bytes, &[columns::KEY], |row| {
            keys.insert(row[0].to_string());
        })
        .await?;
    }
    Ok(keys)
}

/// The rejection rows of a unit as key → reason code (the `key` and `reason` columns only).
pub async fn rejection_reasons(
    root: &StoreRoot,
    record: &CommitRecord,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    if let Some(file) = &record.rejections {
        let names = [columns::KEY, columns::REASON];
        for_each_text_row(root, &file.path, file.bytes, &names, |row| {
            out.insert(row[0].to_string(), row[1].to_string());
        })
        .await?;
    }
    Ok(out)
}

/// An accepted row's identity for duplicate checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedHash {
    /// Row key.
    pub key: String,
    /// BLAKE3 of the original image bytes.
    pub content_hash: [u8; 32],
    /// Perceptual hash.
    pub phash: u64,
}

/// The `key`, `content_hash` and `phash` of every shard row of a unit (the images are not read):
/// what a retry unit checks its recovered images against, so that an image accepted once is not
/// accepted again.
pub async fn accepted_hashes(root: &StoreRoot, record: &CommitRecord) -> Result<Vec<AcceptedHash>> {
    let mut out = Vec::new();
    let names = [columns::KEY, columns::CONTENT_HASH, columns::PHASH];
    for shard in &record.shards {
        let reader = ShardReader::open(root, &shard.path, Some(shard.bytes)).await?;
        for rg in 0..reader.num_row_groups() {
            let batch = reader.read_row_group(rg, Some(&names)).await?;
            let bad = |detail: String| ShardError::BadRecord {
                path: root.location(&shard.path),
                detail: format!("row group {rg}: {detail}"),
            };
            let keys = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| bad(format!("key column is not text: {e}")))?;
            let keys = keys.as_string::<i32>();
            let hashes = batch
                .column(1)
                .as_fixed_size_binary_opt()
                .ok_or_else(|| bad("content_hash is not fixed-size binary".into()))?;
            let phashes = batch
                .column(2)
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad("phash is not uint64".into()))?;
            for i in 0..batch.num_rows() {
                let Ok(content_hash) = <[u8; 32]>::try_from(hashes.value(i)) else {
                    return Err(bad(format!("content_hash of row {i} is not 32 bytes")));
                };
                out.push(AcceptedHash {
                    key: keys.value(i).to_string(),
                    content_hash,
                    phash: phashes.value(i),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipstream_schemas::{RejectReason, RetryInfo, UnitCounts, UnitSpec, WorkerInfo};

    fn record(id: &str, retry: Option<RetryInfo>, reasons: &[RejectReason]) -> CommitRecord {
        let mut counts = UnitCounts::default();
        for &r in reasons {
            counts.reject(r);
        }
        counts.read = counts.rejected;
        CommitRecord {
            format: flipstream_schemas::records::COMMIT_FORMAT.into(),
            schema_version: flipstream_schemas::SCHEMA_VERSION,
            unit: UnitSpec {
                id: id.into(),
                source: "file:///x.parquet".into(),
                kind: "url_list".into(),
                start: None,
                end: None,
            },
            config_fingerprint: "f".into(),
            shards: vec![],
            rejections: None,
            counts,
            started_at: String::new(),
            finished_at: String::new(),
            elapsed_s: 0.0,
            worker: WorkerInfo::default(),
            retry,
        }
    }

    #[test]
    fn live_rejections_drop_what_the_retry_superseded() {
        use RejectReason::*;
        let a = record(
            "a",
            None,
            &[DownloadError, DownloadError, HttpStatus, TooSmall],
        );
        let retry = RetryInfo {
            of: "a".into(),
            origin: "a".into(),
            round: 1,
            superseded_by_reason: [("download_error".into(), 2), ("http_status".into(), 1)].into(),
        };
        let b = record("a.retry1", Some(retry), &[HttpStatus]);
        let commits = [a.clone(), b.clone()];
        let by = retried_by(&commits);
        assert_eq!(by.len(), 1);
        assert_eq!(by["a"].unit.id, "a.retry1");
        assert_eq!(
            live_rejections(&a, by.get("a").copied()),
            [("too_small".to_string(), 1)].into()
        );
        assert_eq!(live_rejections(&b, None), b.counts.rejected_by_reason);
    }
}
