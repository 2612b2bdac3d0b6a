//! `shard ls`: the committed units of a dataset and their files, with rows and bytes, from the
//! commit records alone (no shard is opened).

use flipstream_schemas::CommitRecord;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

/// One committed shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardListing {
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
}

/// A unit's rejection file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionListing {
    /// Path relative to the dataset root.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
}

/// One committed unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitListing {
    /// Unit id.
    pub unit: String,
    /// Input it was made from.
    pub source: String,
    /// Input kind.
    pub kind: String,
    /// Items read.
    pub read: u64,
    /// Items accepted (shard rows).
    pub accepted: u64,
    /// Items rejected (rejection rows).
    pub rejected: u64,
    /// For a retry unit (`ingest --retry-failed`): the unit whose transient failures it re-tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Seconds the unit took.
    pub elapsed_s: f64,
    /// Its shards, in order.
    pub shards: Vec<ShardListing>,
    /// Its rejection file, if any.
    pub rejections: Option<RejectionListing>,
}

/// Sums over the whole dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingTotals {
    /// Committed units.
    pub units: u64,
    /// Shards.
    pub shards: u64,
    /// Row groups.
    pub row_groups: u64,
    /// Items read from the inputs (an item re-tried by a retry unit counts once).
    pub read: u64,
    /// Shard rows.
    pub rows: u64,
    /// Rejected items: rejection rows less those a retry unit superseded.
    pub rejected: u64,
    /// Size of all shards.
    pub shard_bytes: u64,
    /// Size of all rejection files.
    pub rejection_bytes: u64,
    /// Encoded image bytes in all shards.
    pub image_bytes: u64,
}

/// The listing of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Dataset root.
    pub url: String,
    /// Units sorted by id.
    pub units: Vec<UnitListing>,
    /// Totals.
    pub totals: ListingTotals,
}

fn unit_listing(c: &CommitRecord) -> UnitListing {
    UnitListing {
        unit: c.unit.id.clone(),
        source: c.unit.source.clone(),
        kind: c.unit.kind.clone(),
        read: c.counts.read,
        accepted: c.counts.accepted,
        rejected: c.counts.rejected,
        retry_of: c.retry.as_ref().map(|r| r.of.clone()),
        elapsed_s: c.elapsed_s,
        shards: c
            .shards
            .iter()
            .map(|s| ShardListing {
                path: s.path.clone(),
                rows: s.rows,
                row_groups: s.row_groups.len() as u64,
                bytes: s.bytes,
                image_bytes: s.image_bytes,
            })
            .collect(),
        rejections: c.rejections.as_ref().map(|r| RejectionListing {
            path: r.path.clone(),
            rows: r.rows,
            bytes: r.bytes,
        }),
    }
}

/// Lists the committed units of `ds`.
pub fn list_dataset(ds: &Dataset) -> Listing {
    let units: Vec<UnitListing> = ds.commits().iter().map(unit_listing).collect();
    let counts = ds.totals();
    let mut t = ListingTotals {
        units: units.len() as u64,
        read: counts.read,
        rejected: counts.rejected,
        ..Default::default()
    };
    for u in &units {
        for s in &u.shards {
            t.shards += 1;
            t.row_groups += s.row_groups;
            t.rows += s.rows;
            t.shard_bytes += s.bytes;
            t.image_bytes += s.image_bytes;
        }
        if let Some(r) = &u.rejections {
            t.rejection_bytes += r.bytes;
        }
    }
    Listing {
        url: ds.root().url().to_string(),
        units,
        totals: t,
    }
}
