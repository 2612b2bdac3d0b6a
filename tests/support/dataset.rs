//! Reading a committed dataset back for comparisons: every accepted key with its content hash,
//! every rejected key with its reason ([`read_dataset`], [`fingerprint`]). A retry unit's keys
//! replace the rejections they supersede (`ingest --retry-failed`).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use flipstream_shard::reader::ShardReader;
use flipstream_shard::{Dataset, StoreRoot};

/// A committed dataset's contents: accepted rows (key → content hash), rejections (key → reason)
/// and their details (key → detail, where there is one), plus the per-unit commit records.
pub(crate) struct Contents {
    pub accepted: BTreeMap<String, Vec<u8>>,
    pub rejected: BTreeMap<String, String>,
    pub details: BTreeMap<String, String>,
    pub dataset: Dataset,
}

/// Every accepted and rejected key of the committed dataset at `url`; panics on a key stored twice.
pub(crate) fn read_dataset(url: &str) -> Contents {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dataset = Dataset::open(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        let root: StoreRoot = dataset.root().clone();
        let mut accepted = BTreeMap::new();
        let mut rejected = BTreeMap::new();
        let mut details = BTreeMap::new();
        // original units first, then each round of retries, so that a retry's rows replace the
        // rejections they supersede
        let mut commits: Vec<_> = dataset.commits().iter().collect();
        commits.sort_by_key(|c| c.retry.as_ref().map_or(0, |r| r.round));
        for commit in commits {
            if commit.retry.is_some() {
                let keys = flipstream_shard::retried::unit_keys(&root, commit)
                    .await
                    .unwrap();
                for key in keys {
                    let superseded = rejected.remove(&key);
                    details.remove(&key);
                    assert!(superseded.is_some(), "retried key {key} was not rejected");
                }
            }
            for shard in &commit.shards {
                let reader = ShardReader::open(&root, &shard.path, Some(shard.bytes))
                    .await
                    .unwrap();
                for rg in 0..reader.num_row_groups() {
                    let batch = reader
                        .read_row_group(rg, Some(&["key", "content_hash"]))
                        .await
                        .unwrap();
                    let keys = batch
                        .column_by_name("key")
                        .unwrap()
                        .as_string::<i32>()
                        .clone();
                    let hashes = batch
                        .column_by_name("content_hash")
                        .unwrap()
                        .as_fixed_size_binary()
                        .clone();
                    for i in 0..batch.num_rows() {
                        let previous =
                            accepted.insert(keys.value(i).to_string(), hashes.value(i).to_vec());
                        assert!(previous.is_none(), "key {} stored twice", keys.value(i));
                    }
                }
            }
            if let Some(file) = &commit.rejections {
                let reader = ShardReader::open(&root, &file.path, Some(file.bytes))
                    .await
                    .unwrap();
                for rg in 0..reader.num_row_groups() {
                    let batch = reader
                        .read_row_group(rg, Some(&["key", "reason", "detail"]))
                        .await
                        .unwrap();
                    let keys = batch
                        .column_by_name("key")
                        .unwrap()
                        .as_string::<i32>()
                        .clone();
                    // the reason is dictionary-encoded
                    let reasons = arrow::compute::cast(
                        batch.column_by_name("reason").unwrap(),
                        &arrow::datatypes::DataType::Utf8,
                    )
                    .unwrap();
                    let reasons = reasons.as_string::<i32>().clone();
                    let detail = arrow::compute::cast(
                        batch.column_by_name("detail").unwrap(),
                        &arrow::datatypes::DataType::Utf8,
                    )
                    .unwrap();
                    let detail = detail.as_string::<i32>().clone();
                    for i in 0..batch.num_rows() {
                        assert!(!reasons.is_null(i));
                        if !detail.is_null(i) {
                            details.insert(keys.value(i).to_string(), detail.value(i).to_string());
                        }
                        let previous = rejected
                            .insert(keys.value(i).to_string(), reasons.value(i).to_string());
                        assert!(previous.is_none(), "key {} rejected twice", keys.value(i));
                    }
                }
            }
        }
        Contents {
            accepted,
            rejected,
            details,
            dataset,
        }
    })
}

/// (key → content hash, key → reason) of a dataset, for comparing runs.
pub(crate) fn fingerprint(url: &str) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    let c = read_dataset(url);
    (c.accepted, c.rejected)
}
