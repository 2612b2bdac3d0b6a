//! The commit protocol, read side: a dataset is its manifest plus its commit records.
//!
//! [`Dataset::open`] reads the manifest and every commit record (in parallel); readers then see
//! exactly the committed shards, in a canonical order (units sorted by id, shards and row groups
//! in order), whatever happened to be written next to them.

use bytes::Bytes;
use flipstream_schemas::records::MANIFEST_FORMAT;
use flipstream_schemas::{
    CommitRecord, DatasetManifest, ShardEntry, SplitManifest, UnitCounts, layout,
};
use futures::StreamExt;

use crate::error::{Result, ShardError};
use crate::store::StoreRoot;

/// How many records to fetch at once.
const RECORD_FETCH_CONCURRENCY: usize = 32;

/// A committed dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: StoreRoot,
    manifest: DatasetManifest,
    commits: Vec<CommitRecord>,
}

/// One row group of one committed shard, in the dataset's canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowGroupRef {
    /// Shard path relative to the dataset root.
    pub shard: String,
    /// Shard size in bytes (saves a HEAD request when opening it).
    pub shard_bytes: u64,
    /// Row group index within the shard.
    pub index: usize,
    /// Rows in the row group.
    pub rows: u64,
    /// The checksum of its image values, when the commit record has one
    /// ([`flipstream_schemas::checksum`]).
    pub image_checksum: Option<String>,
}

/// Reads and checks the dataset manifest.
pub async fn read_manifest(root: &StoreRoot) -> Result<DatasetManifest> {
    let bytes = root
        .get_opt(layout::MANIFEST)
        .await?
        .ok_or_else(|| ShardError::NotADataset {
            url: root.url().to_string(),
            detail: format!(
                "no {} (was it written by `flipstream ingest`?)",
                layout::MANIFEST
            ),
        })?;
    let path = root.location(layout::MANIFEST);
    let manifest: DatasetManifest =
        serde_json::from_slice(&bytes).map_err(|e| ShardError::BadRecord {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(ShardError::BadRecord {
            path,
            detail: format!("format is {:?}", manifest.format),
        });
    }
    if manifest.schema_version != flipstream_schemas::SCHEMA_VERSION {
        return Err(ShardError::BadRecord {
            path,
            detail: format!(
                "schema version {} (this build reads {})",
                manifest.schema_version,
                flipstream_schemas::SCHEMA_VERSION
            ),
        });
    }
    Ok(manifest)
}

/// Parses and checks one commit record's bytes; `path` is relative to `root`.
pub fn parse_commit(root: &StoreRoot, path: &str, bytes: &[u8]) -> Result<CommitRecord> {
    let location = root.location(path);
    let record: CommitRecord =
        serde_json::from_slice(bytes).map_err(|e| ShardError::BadRecord {
            path: location.clone(),
            detail: e.to_string(),
        })?;
    record.check().map_err(|detail| ShardError::BadRecord {
        path: location.clone(),
        detail,
    })?;
    let named = layout::unit_of_commit_path(path);
    if named != Some(record.unit.id.as_str()) {
        return Err(ShardError::BadRecord {
            path: location,
            detail: format!(
                "record is for unit {:?} but stored as {path}",
                record.unit.id
            ),
        });
    }
    Ok(record)
}

/// Every commit record under `root`, each parsed or with the error that stopped it, sorted by
/// path. For tools that report all problems (`shard verify`) rather than stop at the first. A
/// record the store would not serve is an error of the whole call, not a bad record: nothing says
/// the record is damaged.
pub async fn read_commits_lenient(root: &StoreRoot) -> Result<Vec<(String, Result<CommitRecord>)>> {
    let listed = root.list(layout::COMMITS_DIR).await?;
    let paths: Vec<String> = listed
        .into_iter()
        .map(|o| o.location.to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    let mut out: Vec<(String, Result<CommitRecord>)> = futures::stream::iter(paths)
        .map(|p| async move {
            let parsed = match root.get(&p).await {
                Ok(bytes) => parse_commit(root, &p, &bytes),
                Err(e) => Err(e),
            };
            (p, parsed)
        })
        .buffer_unordered(RECORD_FETCH_CONCURRENCY)
        .collect()
        .await;
    // a record the store would not serve (after its retries) is not known to be damaged: fail
    let unserved = out
        .iter()
        .position(|(_, r)| matches!(r, Err(e @ ShardError::Store { .. }) if !e.is_not_found()));
    if let Some((_, Err(e))) = unserved.map(|pos| out.swap_remove(pos)) {
        return Err(e);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Dataset {
    /// Opens the dataset at a URL or path.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_root(StoreRoot::parse(url)?).await
    }

    /// Opens the dataset at `root`. Fails on a missing manifest or any unreadable commit record.
    pub async fn open_root(root: StoreRoot) -> Result<Self> {
        let manifest = read_manifest(&root).await?;
        let commits: Vec<CommitRecord> = read_commits_lenient(&root)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            root,
            manifest,
            commits,
        })
    }

    /// Builds a dataset view from parts already read (e.g. a filtered list of commits).
    pub fn from_parts(
        root: StoreRoot,
        manifest: DatasetManifest,
        mut commits: Vec<CommitRecord>,
    ) -> Self {
        commits.sort_by(|a, b| a.unit.id.cmp(&b.unit.id));
        Self {
            root,
            manifest,
            commits,
        }
    }

    /// The dataset root.
    pub fn root(&self) -> &StoreRoot {
        &self.root
    }

    /// The manifest.
    pub fn manifest(&self) -> &DatasetManifest {
        &self.manifest
    }

    /// Commit records sorted by unit id.
    pub fn commits(&self) -> &[CommitRecord] {
        &self.commits
    }

    /// Committed shards in canonical order.
    pub fn shards(&self) -> impl Iterator<Item = &ShardEntry> {
        self.commits.iter().flat_map(|c| c.shards.iter())
    }

    /// Committed row groups in canonical order.
    pub fn row_groups(&self) -> Vec<RowGroupRef> {
        self.shards()
            .flat_map(|s| {
                s.row_groups
                    .iter()
                    .enumerate()
                    .map(move |(index, &rows)| RowGroupRef {
                        shard: s.path.clone(),
                        shard_bytes: s.bytes,
                        index,
                        rows,
                        image_checksum: s.image_checksums.get(index).cloned(),
                    })
            })
            .collect()
    }

    /// Accepted rows over all units.
    pub fn rows(&self) -> u64 {
        self.commits.iter().map(|c| c.counts.accepted).sum()
    }

    /// Counts summed over all units, less the rejections that retry units superseded
    /// ([`flipstream_schemas::dataset_counts`]).
    pub fn totals(&self) -> UnitCounts {
        flipstream_schemas::dataset_counts(&self.commits)
    }

    /// The split view, when `shard split` wrote one.
    pub async fn split_manifest(&self) -> Result<Option<SplitManifest>> {
        let Some(bytes) = self.root.get_opt(layout::SPLIT).await? else {
            return Ok(None);
        };
        parse_json(&self.root, layout::SPLIT, &bytes).map(Some)
    }
}

/// Parses a JSON object stored at `path`, with the location in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    root: &StoreRoot,
    path: &str,
    bytes: &Bytes,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ShardError::BadRecord {
        path: root.location(path),
        detail: e.to_string(),
    })
}

/// True for objects under `_flipstream/` and the files of score sidecars
/// (`scores/<name>/_score.json`, `scores/<name>/<unit>.parquet`): never named by a commit record,
/// never orphans. Anything else under `scores/` (a staging leftover, a stray file) is not.
fn is_sidecar_or_bookkeeping(path: &str) -> bool {
    let under = |dir: &str| {
        path.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
    };
    if under(layout::META_DIR).is_some() {
        return true;
    }
    under(layout::SCORES_DIR)
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, file)| {
            !file.contains('/') && (file == "_score.json" || file.ends_with(".parquet"))
        })
}

/// Lists every object of the dataset that no commit record names and that is not bookkeeping or
/// a score sidecar: orphans of crashed attempts and stray files. Paths relative to the root.
pub async fn unreferenced_objects(
    root: &StoreRoot,
    commits: &[CommitRecord],
) -> Result<Vec<String>> {
    let mut named = std::collections::HashSet::new();
    for c in commits {
        named.extend(c.shards.iter().map(|s| s.path.as_str()));
        if let Some(r) = &c.rejections {
            named.insert(r.path.as_str());
        }
    }
    let all: Vec<String> = root
        .list("")
        .await?
        .into_iter()
        .map(|o| o.location.to_string())
        .collect();
    Ok(all
        .into_iter()
        .filter(|p| !is_sidecar_or_bookkeeping(p) && !named.contains(p.as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_and_sidecar_files_are_never_orphans_but_their_leftovers_are() {
        for kept in [
            "_flipstream/manifest.json",
            "_flipstream/commits/u.json",
            "scores/clip/_score.json",
            "scores/clip/u-0001.parquet",
        ] {
            assert!(is_sidecar_or_bookkeeping(kept), "{kept}");
        }
        for orphan in [
            "shards/u-00000.parquet",
            "scores/clip/u.parquet#1",
            "scores/stray.txt",
            "scores/clip/nested/u.parquet",
            "scoresx/clip/u.parquet",
            "_flipstreamx/a",
        ] {
            assert!(!is_sidecar_or_bookkeeping(orphan), "{orphan}");
        }
    }
}
