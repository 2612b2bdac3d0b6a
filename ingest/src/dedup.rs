//! Duplicate detection within a unit: exact (same source bytes) and near (perceptual hash).
//!
//! The first *accepted* occurrence wins, in unit order: the pipeline calls [`Dedup::check`] and
//! [`Dedup::insert`] sequentially, in item order, so the outcome does not depend on threads.
//! Near-duplicates are found with multi-index hashing: split the 64-bit pHash into `d + 1` chunks;
//! two hashes within Hamming distance `d` agree exactly on at least one chunk (pigeonhole), so
//! only items sharing a chunk value are compared. Lookup cost stays near constant per item.
//!
//! Scope: a unit (one input file or slice). Duplicates across units are not detected at ingest
//! time (they would make a unit's result depend on other units and break resumption).

use std::collections::{HashMap, HashSet};

use flipstream_schemas::RejectReason;
use flipstream_shard::problems::{Problem, Validate};
use serde::{Deserialize, Serialize};

/// Dedup rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupRules {
    /// Reject items whose source bytes equal an earlier accepted item's.
    pub exact: bool,
    /// Reject items whose perceptual hash is within `near_distance` of an earlier accepted item's.
    pub near: bool,
    /// Maximum Hamming distance between 64-bit pHashes for a near-duplicate (0..=16).
    pub near_distance: u32,
}

impl Default for DedupRules {
    fn default() -> Self {
        Self {
            exact: true,
            near: true,
            near_distance: 4,
        }
    }
}

impl Validate for DedupRules {
    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.near_distance > 16 {
            p.push(Problem::new(
                "near_distance",
                format!("must be at most 16, got {}", self.near_distance),
            ));
        }
        p
    }
}

/// The accepted items of one unit, for duplicate checks.
#[derive(Debug)]
pub(crate) struct Dedup {
    rules: DedupRules,
    exact: HashMap<[u8; 32], String>,
    near: NearIndex,
}

impl Dedup {
    /// An empty index.
    pub(crate) fn new(rules: DedupRules) -> Self {
        let near = NearIndex::new(rules.near_distance);
        Self {
            rules,
            exact: HashMap::new(),
            near,
        }
    }

    /// `Some((reason, detail))` when the item duplicates an accepted one.
    pub(crate) fn check(
        &self,
        content_hash: &[u8; 32],
        phash: u64,
    ) -> Option<(RejectReason, String)> {
        if self.rules.exact
            && let Some(first) = self.exact.get(content_hash)
        {
            return Some((
                RejectReason::DuplicateExact,
                format!("same bytes as {first}"),
            ));
        }
        if self.rules.near
            && let Some((first, dist)) = self.near.find(phash)
        {
            return Some((
                RejectReason::DuplicateNear,
                format!("pHash distance {dist} to {first}"),
            ));
        }
        None
    }

    /// Records an accepted item.
    pub(crate) fn insert(&mut self, key: &str, content_hash: [u8; 32], phash: u64) {
        if self.rules.exact {
            self.exact
                .entry(content_hash)
                .or_insert_with(|| key.to_string());
        }
        if self.rules.near {
            self.near.insert(key, phash);
        }
    }
}

/// Multi-index hashing over 64-bit hashes for Hamming-distance queries.
#[derive(Debug)]
struct NearIndex {
    distance: u32,
    /// Bit ranges of the chunks: `d + 1` near-equal slices of 64 bits.
    chunks: Vec<(u32, u32)>,
    tables: Vec<HashMap<u64, Vec<u32>>>,
    hashes: Vec<u64>,
    keys: Vec<String>,
    seen: HashSet<u64>,
}

impl NearIndex {
    fn new(distance: u32) -> Self {
        let n = distance + 1;
        let chunks: Vec<(u32, u32)> = (0..n).map(|i| (i * 64 / n, (i + 1) * 64 / n)).collect();
        let tables = vec![HashMap::new(); chunks.len()];
        Self {
            distance,
            chunks,
            tables,
            hashes: Vec::new(),
            keys: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn chunk(h: u64, (lo, hi): (u32, u32)) -> u64 {
        let width = hi - lo;
        let mask = if width >= 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        (h >> lo) & mask
    }

    fn find(&self, h: u64) -> Option<(&str, u32)> {
        let mut best: Option<(u32, u32)> = None;
        for (t, &range) in self.tables.iter().zip(&self.chunks) {
            for &i in t.get(&Self::chunk(h, range)).into_iter().flatten() {
                let d = (self.hashes[i as usize] ^ h).count_ones();
                if d <= self.distance && best.is_none_or(|(bi, bd)| d < bd || (d == bd && i < bi)) {
                    best = Some((i, d));
                }
            }
        }
        best.map(|(i, d)| (self.keys[i as usize].as_str(), d))
    }

    fn insert(&mut self, key: &str, h: u64) {
        if !self.seen.insert(h) {
            return;
        }
        let idx = self.hashes.len() as u32;
        self.hashes.push(h);
        self.keys.push(key.to_string());
        for (t, &range) in self.tables.iter_mut().zip(&self.chunks) {
            t.entry(Self::chunk(h, range)).or_default().push(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(hashes: &[u64], h: u64, d: u32) -> Option<u32> {
        hashes
            .iter()
            .map(|x| (x ^ h).count_ones())
            .filter(|&x| x <= d)
            .min()
    }

    #[test]
    fn exact_then_near_duplicates_are_found_with_the_first_key() {
        let mut d = Dedup::new(DedupRules::default());
        assert!(d.check(&[1; 32], 0xFFFF_0000_FFFF_0000).is_none());
        d.insert("a", [1; 32], 0xFFFF_0000_FFFF_0000);
        let (r, detail) = d.check(&[1; 32], 0).unwrap();
        assert_eq!(r, RejectReason::DuplicateExact);
        assert!(detail.contains('a'));
        let (r, detail) = d.check(&[2; 32], 0xFFFF_0000_FFFF_0007).unwrap();
        assert_eq!(r, RejectReason::DuplicateNear);
        assert!(detail.contains("distance 3"), "{detail}");
        assert!(
            d.check(&[2; 32], 0xFFFF_0000_FFFF_001F).is_none(),
            "distance 5 > 4"
        );
    }

    #[test]
    fn disabled_rules_find_nothing() {
        let mut d = Dedup::new(DedupRules {
            exact: false,
            near: false,
            near_distance: 4,
        });
        d.insert("a", [1; 32], 7);
        assert!(d.check(&[1; 32], 7).is_none());
    }

    #[test]
    fn multi_index_search_agrees_with_brute_force() {
        // xorshift for reproducible pseudo-random hashes
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for distance in [0, 3, 6, 10] {
            let mut idx = NearIndex::new(distance);
            let mut all = Vec::new();
            for i in 0..2000 {
                let h = next();
                idx.insert(&format!("k{i}"), h);
                all.push(h);
            }
            for q in 0..500 {
                // queries near stored hashes and random ones
                let base = if q % 2 == 0 { all[q * 3] } else { next() };
                let flips = (next() % 12) as u32;
                let mut h = base;
                for _ in 0..flips {
                    h ^= 1u64 << (next() % 64);
                }
                assert_eq!(
                    idx.find(h).map(|(_, d)| d),
                    brute(&all, h, distance),
                    "distance {distance}"
                );
            }
        }
    }
}
