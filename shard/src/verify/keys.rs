//! Keys unique across the whole dataset. Ingest refuses a key repeated within one input, but two
//! inputs (or two ingests into one dataset under other unit ids) can carry the same key, and the
//! loader, split views and score sidecars find rows by key. `shard verify` reads the `key` column
//! of every shard (nothing else) and reports each shard holding keys that an earlier shard, in the
//! canonical order, already holds.
//!
//! Memory: a 128-bit hash and a shard index per row (about 40 bytes with the table's overhead:
//! 40 MB per million rows); `--no-key-check` skips the check for datasets too large for that.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use flipstream_schemas::{CommitRecord, columns};
use futures::StreamExt;
use xxhash_rust::xxh3::xxh3_128;

use super::{Problem, ProblemKind, problem};
use crate::error::Result;
use crate::reader::for_each_text_row;
use crate::store::StoreRoot;

/// The keys of one shard file, in row order.
async fn shard_keys(root: &StoreRoot, path: &str, bytes: u64) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for_each_text_row(root, path, bytes, &[columns::KEY], |row| {
        keys.push(row[0].to_string());
    })
    .await?;
    Ok(keys)
}

/// One problem per shard that repeats keys of earlier shards or its own; `damaged` shards are
/// left out (they have problems of their own). Returns the problems and the keys read.
pub(super) async fn duplicate_keys(
    root: &StoreRoot,
    records: &[CommitRecord],
    damaged: &BTreeSet<&str>,
    concurrency: usize,
) -> Result<(Vec<Problem>, u64)> {
    let shards: Vec<(&str, u64)> = records
        .iter()
        .flat_map(|r| &r.shards)
        .filter(|s| !damaged.contains(s.path.as_str()))
        .map(|s| (s.path.as_str(), s.bytes))
        .collect();
    let mut reads = futures::stream::iter(shards.iter())
        .map(|&(path, bytes)| async move { shard_keys(root, path, bytes).await })
        .buffered(concurrency.max(1));
    let mut first_seen: HashMap<u128, u32> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0u64;
    let mut index = 0u32;
    while let Some(keys) = reads.next().await {
        let keys = keys?;
        let path = shards[index as usize].0;
        let mut repeated = 0u64;
        let mut first: Option<(String, u32)> = None;
        for key in keys {
            checked += 1;
            match first_seen.entry(xxh3_128(key.as_bytes())) {
                Entry::Vacant(e) => {
                    e.insert(index);
                }
                Entry::Occupied(e) => {
                    repeated += 1;
                    first.get_or_insert((key, *e.get()));
                }
            }
        }
        if let Some((key, earlier)) = first {
            problems.push(problem(
                path,
                ProblemKind::DuplicateKey,
                format!(
                    "{repeated} of its keys are already in {} (the first: {key:?}); rows are \
                     found by key, so each must be unique in the dataset",
                    shards[earlier as usize].0
                ),
            ));
        }
        index += 1;
    }
    Ok((problems, checked))
}
