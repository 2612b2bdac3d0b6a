//! Frequent items in fixed space: a mergeable Space-Saving summary.
//!
//! A [`TopK`] keeps at most `capacity` (item, count, error) counters and a `floor`: an upper bound
//! on the count of any item it does not list. Each listed count is an upper bound on the item's
//! true count and `count − error` a lower bound; every item whose true count exceeds the floor
//! is listed. While no item was ever dropped the counts are exact and `floor` is 0.
//!
//! Row groups are counted exactly ([`TopK::from_counts`]: a row group holds a bounded number of
//! rows) and truncated to `capacity`; summaries then merge pairwise as in the parallel Space-Saving
//! algorithm (Cafaro et al. 2016): an item missing from one side is charged that side's floor.
//! Merging in a fixed order gives the same result whatever the thread count.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The item (a word, a column value).
    pub item: String,
    /// Upper bound on its count (exact when `error` is 0).
    pub count: u64,
    /// `count − error` is a lower bound on its count.
    pub error: u64,
}

/// A fixed-size frequent-items summary; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopK {
    capacity: usize,
    counters: Vec<Counter>,
    floor: u64,
}

fn rank(a: &Counter, b: &Counter) -> std::cmp::Ordering {
    b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item))
}

impl TopK {
    /// An empty summary keeping at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counters: Vec::new(),
            floor: 0,
        }
    }

    /// A summary of exact counts, truncated to the `capacity` most frequent items.
    pub(crate) fn from_counts<S: AsRef<str>>(
        capacity: usize,
        counts: impl IntoIterator<Item = (S, u64)>,
    ) -> Self {
        let mut s = Self::new(capacity);
        s.counters = counts
            .into_iter()
            .map(|(item, count)| Counter {
                item: item.as_ref().to_string(),
                count,
                error: 0,
            })
            .collect();
        s.truncate(0);
        s
    }

    fn truncate(&mut self, floor: u64) {
        self.counters.sort_by(rank);
        let dropped_max = self.counters.get(self.capacity).map_or(0, |c| c.count);
        self.counters.truncate(self.capacity);
        self.floor = floor.max(dropped_max);
    }

    /// Adds another summary (see the module docs for the bounds this keeps).
    pub(crate) fn merge(&mut self, other: &TopK) {
        if other.counters.is_empty() && other.floor == 0 {
            return;
        }
        let mut merged: HashMap<&str, (u64, u64)> =
            HashMap::with_capacity(self.counters.len() + other.counters.len());
        let (fa, fb) = (self.floor, other.floor);
        for c in &self.counters {
            merged.insert(c.item.as_str(), (c.count + fb, c.error + fb));
        }
        for c in &other.counters {
            merged
                .entry(c.item.as_str())
                .and_modify(|e| {
                    // it was charged `fb` as missing from `other`; replace that by its real entry
                    e.0 = e.0 - fb + c.count;
                    e.1 = e.1 - fb + c.error;
                })
                .or_insert((c.count + fa, c.error + fa));
        }
        let counters: Vec<Counter> = merged
            .into_iter()
            .map(|(item, (count, error))| Counter {
                item: item.to_string(),
                count,
                error,
            })
            .collect();
        self.counters = counters;
        self.truncate(fa + fb);
    }

    /// The listed items, most frequent first (ties by item).
    pub(crate) fn items(&self) -> &[Counter] {
        &self.counters
    }

    /// Upper bound on the count of any item not listed (0: the listed counts are exact and
    /// complete).
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// True when the listed counts are exact and no item was ever dropped.
    pub(crate) fn is_exact(&self) -> bool {
        self.floor == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> TopK {
        TopK::from_counts(3, pairs.iter().map(|&(k, v)| (k, v)))
    }

    #[test]
    fn exact_while_nothing_is_dropped() {
        let mut a = counts(&[("cat", 3), ("dog", 1)]);
        a.merge(&counts(&[("dog", 2)]));
        assert!(a.is_exact());
        let got: Vec<(&str, u64)> = a
            .items()
            .iter()
            .map(|c| (c.item.as_str(), c.count))
            .collect();
        assert_eq!(got, [("cat", 3), ("dog", 3)]);
    }

    #[test]
    fn heavy_hitters_survive_truncation_with_valid_bounds() {
        // true counts: a=400, b=200, then many items of count 1 or 2 spread over row groups
        let mut total = TopK::new(4);
        let mut truth: HashMap<String, u64> = HashMap::new();
        for g in 0..20u64 {
            let mut part: Vec<(String, u64)> = vec![("a".into(), 20), ("b".into(), 10)];
            for j in 0..6 {
                part.push((format!("rare{}", g * 6 + j), 1 + j % 2));
            }
            for (k, v) in &part {
                *truth.entry(k.clone()).or_insert(0) += v;
            }
            total.merge(&TopK::from_counts(4, part));
        }
        let items = total.items();
        assert_eq!(items[0].item, "a");
        assert_eq!(items[1].item, "b");
        for c in items {
            let t = truth[&c.item];
            assert!(c.count >= t && c.count - c.error <= t, "{c:?} true {t}");
        }
        assert!(!total.is_exact());
        assert!(
            truth
                .iter()
                .filter(|(k, _)| !items.iter().any(|c| &c.item == *k))
                .all(|(_, &v)| v <= total.floor())
        );
    }
}
