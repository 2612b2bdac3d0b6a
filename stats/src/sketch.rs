//! A mergeable quantile sketch of fixed maximum size (DDSketch-style logarithmic buckets).
//!
//! Every finite value falls into a bucket whose bounds are consecutive powers of
//! `γ = (1 + α) / (1 − α)` with α = 1 %: any quantile read back is within 1 % (relative) of a value
//! that really is at that rank. Magnitudes below [`MIN_MAGNITUDE`] count as zero and magnitudes
//! above [`MAX_MAGNITUDE`] share the last bucket, so a sketch never holds more than a few thousand
//! buckets per sign, however many values it has seen. Two sketches merge by adding bucket counts,
//! which is what lets row groups be summarised independently and combined in any grouping.

use std::collections::BTreeMap;

/// Relative accuracy of quantiles read from a [`QuantileSketch`].
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;
/// Smaller magnitudes are counted as zero.
pub(crate) const MIN_MAGNITUDE: f64 = 1e-9;
/// Larger magnitudes share the top bucket.
pub(crate) const MAX_MAGNITUDE: f64 = 1e18;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn bucket_of(magnitude: f64) -> i32 {
    let clamped = magnitude.clamp(MIN_MAGNITUDE, MAX_MAGNITUDE);
    (clamped.ln() / gamma().ln()).ceil() as i32
}

/// The representative value of bucket `i`: the point with equal relative distance to both bounds.
fn bucket_value(i: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(i) / (g + 1.0)
}

/// Counts of values in logarithmic buckets; see the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct QuantileSketch {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
}

impl QuantileSketch {
    /// An empty sketch.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a value. Non-finite values are ignored (callers count them separately).
    pub(crate) fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.count += 1;
        if x.abs() < MIN_MAGNITUDE {
            self.zero += 1;
        } else if x > 0.0 {
            *self.positive.entry(bucket_of(x)).or_insert(0) += 1;
        } else {
            *self.negative.entry(bucket_of(-x)).or_insert(0) += 1;
        }
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: &QuantileSketch) {
        self.count += other.count;
        self.zero += other.zero;
        for (k, v) in &other.positive {
            *self.positive.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.negative {
            *self.negative.entry(*k).or_insert(0) += v;
        }
    }

    /// Values added.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Buckets in use (bounded by the magnitude range, not by the number of values).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.positive.len() + self.negative.len() + usize::from(self.zero > 0)
    }

    /// Every bucket as (representative value, count), in increasing value order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let neg = self
            .negative
            .iter()
            .rev()
            .map(|(&i, &c)| (-bucket_value(i), c));
        let zero = (self.zero > 0).then_some((0.0, self.zero));
        let pos = self.positive.iter().map(|(&i, &c)| (bucket_value(i), c));
        neg.chain(zero).chain(pos)
    }

    /// Every bucket as (lower bound, upper bound, count), in increasing order; the zero bucket
    /// has both bounds at 0.
    pub(crate) fn iter_bounds(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.iter().map(|(v, c)| {
            let (a, b) = (v / (1.0 + RELATIVE_ACCURACY), v / (1.0 - RELATIVE_ACCURACY));
            (a.min(b), a.max(b), c)
        })
    }

    /// The value at quantile `q` in [0, 1] (the lower of the two middle ranks, as in DDSketch);
    /// `None` when the sketch is empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (value, c) in self.iter() {
            seen += c;
            if seen > rank {
                return Some(value);
            }
        }
        self.iter().last().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut s = QuantileSketch::new();
        for i in 1..=10_000 {
            s.add(i as f64);
        }
        for (q, exact) in [
            (0.0, 1.0),
            (0.5, 5000.0),
            (0.9, 9000.0),
            (0.99, 9900.0),
            (1.0, 10_000.0),
        ] {
            let got = s.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * RELATIVE_ACCURACY + 1.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert!(s.buckets() < 500, "{} buckets", s.buckets());
    }

    #[test]
    fn negatives_zero_and_merge() {
        let mut a = QuantileSketch::new();
        let mut b = QuantileSketch::new();
        for x in [-100.0, -1.0, 0.0, 0.0, 1.0] {
            a.add(x);
        }
        for x in [10.0, 100.0, f64::NAN, f64::INFINITY] {
            b.add(x);
        }
        a.merge(&b);
        assert_eq!(a.count(), 7);
        let q0 = a.quantile(0.0).unwrap();
        assert!((q0 + 100.0).abs() < 1.0, "{q0}");
        assert_eq!(a.quantile(0.4).unwrap(), 0.0);
        let q1 = a.quantile(1.0).unwrap();
        assert!((q1 - 100.0).abs() < 1.0, "{q1}");
        assert!(QuantileSketch::new().quantile(0.5).is_none());
    }

    #[test]
    fn size_is_bounded_whatever_the_values() {
        let mut s = QuantileSketch::new();
        let mut x = 1e-12;
        while x < 1e30 {
            s.add(x);
            s.add(-x);
            x *= 1.001;
        }
        assert!(s.buckets() < 7_000, "{} buckets", s.buckets());
    }
}
