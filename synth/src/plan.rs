//! [`SynthPlan`]: which item gets which dirt, and which earlier item each duplicate copies.
//!
//! Assignment is exact: kind `k` goes to ⌈fraction·count⌉ items (at least one when the fraction is
//! positive), the first positions of a seeded permutation of all indices. The permutation is a
//! partial Fisher–Yates over a sparse "virtual array", so memory grows with the number of dirty
//! items, not with `count`. Duplicates then get a source: a random earlier *clean* item of the same
//! block of `shard_size` items; a duplicate with no clean item before it in its block trades its
//! kind with the next (or else the nearest earlier) clean item that has one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::Rng;

use super::config::SynthConfig;
use super::dirt::DirtKind;
use super::error::SynthError;
use super::rng::{Purpose, hash2, item_rng};

/// The resolved dirt assignment of a configuration. Building it is `O(dirty items)`; reuse one
/// plan to render many items.
#[derive(Debug, Clone)]
pub struct SynthPlan {
    pub(crate) config: SynthConfig,
    dirt: BTreeMap<u64, DirtKind>,
    dup_of: BTreeMap<u64, u64>,
}

impl SynthPlan {
    /// Validates the configuration and assigns dirt.
    pub fn new(config: &SynthConfig) -> Result<SynthPlan, SynthError> {
        config.validate()?;
        let mut plan = SynthPlan {
            config: config.clone(),
            dirt: BTreeMap::new(),
            dup_of: BTreeMap::new(),
        };
        let counts = config.dirt.counts(config.count);
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Ok(plan);
        }
        let chosen = permutation_prefix(config.seed, config.count, total);
        let mut next = chosen.into_iter();
        for (kind, n) in counts {
            for index in next.by_ref().take(n as usize) {
                plan.dirt.insert(index, kind);
            }
        }
        plan.place_duplicates()?;
        Ok(plan)
    }

    /// The configuration the plan was made for.
    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// The dirt kind assigned to `index` (whether or not the layout can carry it).
    pub fn assigned(&self, index: u64) -> Option<DirtKind> {
        self.dirt.get(&index).copied()
    }

    /// For a duplicate, the index of the earlier item it copies.
    pub fn dup_of(&self, index: u64) -> Option<u64> {
        self.dup_of.get(&index).copied()
    }

    /// Number of items assigned each kind (kinds with none are left out).
    pub fn assigned_counts(&self) -> BTreeMap<DirtKind, u64> {
        let mut out = BTreeMap::new();
        for kind in self.dirt.values() {
            *out.entry(*kind).or_insert(0) += 1;
        }
        out
    }

    fn block_start(&self, index: u64) -> u64 {
        index - index % self.config.shard_size
    }

    fn is_clean(&self, index: u64) -> bool {
        !self.dirt.contains_key(&index)
    }

    /// A clean index in `[start, end)`, searched from a random point (downwards, then upwards).
    fn clean_in(&self, start: u64, end: u64, salt: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        let from = start + salt % (end - start);
        (start..=from)
            .rev()
            .chain(from + 1..end)
            .find(|&i| self.is_clean(i))
    }

    fn place_duplicates(&mut self) -> Result<(), SynthError> {
        let mut sources = BTreeSet::new();
        let mut cursor = 0;
        while let Some((&index, &kind)) = self.dirt.range(cursor..).next() {
            cursor = index + 1;
            if !kind.is_duplicate() {
                continue;
            }
            if let Some(source) = self.clean_in(self.block_start(index), index, self.salt(index)) {
                self.dup_of.insert(index, source);
                sources.insert(source);
                continue;
            }
            // No clean item before it in its block: this item becomes clean and hands its kind to
            // the next clean item that has a clean predecessor in its block (it is placed when the
            // loop reaches it) or, failing that, to the nearest earlier one that is no source.
            self.dirt.remove(&index);
            let movable = |plan: &SynthPlan, j: u64| -> Option<u64> {
                if plan.is_clean(j) && !sources.contains(&j) {
                    plan.clean_in(plan.block_start(j), j, plan.salt(j))
                } else {
                    None
                }
            };
            if let Some(j) = (index + 1..self.config.count).find(|&j| movable(self, j).is_some()) {
                self.dirt.insert(j, kind);
            } else if let Some((j, source)) = (0..index)
                .rev()
                .find_map(|j| movable(self, j).map(|s| (j, s)))
            {
                self.dirt.insert(j, kind);
                self.dup_of.insert(j, source);
                sources.insert(source);
            } else {
                return Err(SynthError::Config(format!(
                    "cannot place {kind} items: too few clean items before them in their blocks of {} \
                     (use a larger shard size or less dirt)",
                    self.config.shard_size
                )));
            }
        }
        Ok(())
    }

    fn salt(&self, index: u64) -> u64 {
        hash2(self.config.seed ^ 0xD0B1, index)
    }
}

/// The first `k` entries of a seeded uniform permutation of `0..n` (partial Fisher–Yates over a
/// sparse array: entry `i` holds `i` unless displaced).
fn permutation_prefix(seed: u64, n: u64, k: u64) -> Vec<u64> {
    let mut rng = item_rng(seed, 0, Purpose::Plan);
    let mut displaced: HashMap<u64, u64> = HashMap::new();
    let mut out = Vec::with_capacity(k as usize);
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        let at_j = displaced.get(&j).copied().unwrap_or(j);
        let at_i = displaced.get(&i).copied().unwrap_or(i);
        displaced.insert(j, at_i);
        out.push(at_j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::config::DirtMix;
    use super::*;

    fn config(count: u64, shard_size: u64, dirt: &str) -> SynthConfig {
        SynthConfig {
            count,
            shard_size,
            dirt: dirt.parse::<DirtMix>().unwrap(),
            seed: 4,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn permutation_prefix_is_a_sample_without_repeats() {
        let p = permutation_prefix(1, 1000, 1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(p[..20], (0..20).collect::<Vec<_>>()[..]);
        assert_eq!(permutation_prefix(1, 1000, 50), p[..50]);
        assert_ne!(permutation_prefix(2, 1000, 50), p[..50]);
    }

    #[test]
    fn counts_are_exact() {
        let cfg = config(1000, 100, "default");
        let plan = SynthPlan::new(&cfg).unwrap();
        let counts = plan.assigned_counts();
        for (kind, n) in cfg.dirt.counts(1000) {
            assert_eq!(counts.get(&kind), Some(&n), "{kind}");
        }
        let off = SynthPlan::new(&config(1000, 100, "off")).unwrap();
        assert!(off.assigned_counts().is_empty());
    }

    #[test]
    fn duplicates_copy_an_earlier_clean_item_of_their_block() {
        for (count, shard, dirt, seed) in [
            (500, 10, "duplicate_exact=0.3,near_duplicate=0.2"),
            (300, 7, "duplicate_exact=0.2,truncated=0.5"),
            (1000, 1000, "default"),
            (36, 16, "default"),
            (40, 4, "duplicate_exact=0.25,near_duplicate=0.25"),
        ]
        .into_iter()
        .flat_map(|case| (0..12).map(move |seed| (case, seed)))
        .map(|((count, shard, dirt), seed)| (count, shard, dirt, seed))
        {
            let cfg = SynthConfig {
                seed,
                ..config(count, shard, dirt)
            };
            let plan = SynthPlan::new(&cfg).unwrap_or_else(|e| panic!("{dirt} seed {seed}: {e}"));
            let counts = plan.assigned_counts();
            for (kind, n) in cfg.dirt.counts(count) {
                assert_eq!(counts.get(&kind), Some(&n), "{dirt}: {kind}");
            }
            let mut dups = 0;
            for i in 0..count {
                match plan.assigned(i) {
                    Some(k) if k.is_duplicate() => {
                        let src = plan.dup_of(i).unwrap();
                        assert!(src < i && src / shard == i / shard, "{i} copies {src}");
                        assert_eq!(plan.assigned(src), None);
                        dups += 1;
                    }
                    _ => assert_eq!(plan.dup_of(i), None),
                }
            }
            assert!(dups > 0);
        }
    }

    #[test]
    fn impossible_duplicates_are_a_config_error() {
        let err = SynthPlan::new(&config(10, 1, "duplicate_exact=0.1")).unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("shard size"),
            "{err}"
        );
    }
}
