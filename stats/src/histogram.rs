//! Fixed-bin histograms and the per-metric [`Distribution`] accumulator.
//!
//! Bins are fixed before any value is seen ([`BinSpec`]: linear, or log-spaced with a fixed
//! number of bins per octave), so partial histograms of different row groups line up bin for bin
//! and merge by addition. Values outside the bins are counted as `below` / `above`, never lost.
//! A [`Distribution`] adds exact count, sum, minimum and maximum and a `QuantileSketch` for
//! percentiles; its [`DistributionSummary`] is what the report stores.
//!
//! Columns whose range is not known in advance (numeric passthrough columns) have no fixed bins:
//! their histogram is drawn from the sketch at the end, with linear bins between the observed
//! minimum and maximum (each sketch bucket counted in the bin holding its representative value,
//! so bin counts are exact up to the sketch's 1 % relative accuracy).

use serde::{Deserialize, Serialize};

use super::sketch::QuantileSketch;

/// How values map to bins. Bin `i` covers `[edge(i), edge(i + 1))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scale", rename_all = "snake_case")]
pub enum BinSpec {
    /// `edge(i) = lo + i · width`.
    Linear {
        /// Lower edge of the first bin.
        lo: f64,
        /// Width of every bin.
        width: f64,
        /// Number of bins.
        bins: usize,
    },
    /// `edge(i) = lo · 2^(i / per_octave)`.
    Log2 {
        /// Lower edge of the first bin (> 0).
        lo: f64,
        /// Bins per doubling of the value.
        per_octave: u32,
        /// Number of bins.
        bins: usize,
    },
}

/// Where a value falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Below the first edge.
    Below,
    /// In bin `i`.
    Bin(usize),
    /// At or above the last edge.
    Above,
}

impl BinSpec {
    /// Number of bins.
    pub fn bins(&self) -> usize {
        match *self {
            BinSpec::Linear { bins, .. } | BinSpec::Log2 { bins, .. } => bins,
        }
    }

    /// Lower edge of bin `i` (`i == bins()` gives the upper edge of the last bin).
    pub fn edge(&self, i: usize) -> f64 {
        match *self {
            BinSpec::Linear { lo, width, .. } => lo + i as f64 * width,
            BinSpec::Log2 { lo, per_octave, .. } => lo * (i as f64 / per_octave as f64).exp2(),
        }
    }

    /// The bin of `x` (NaN goes `Below`; callers filter non-finite values first).
    pub fn slot(&self, x: f64) -> Slot {
        let n = self.bins();
        if x.is_nan() || x < self.edge(0) {
            return Slot::Below;
        }
        if x >= self.edge(n) {
            return Slot::Above;
        }
        let guess = match *self {
            BinSpec::Linear { lo, width, .. } => ((x - lo) / width).floor(),
            BinSpec::Log2 { lo, per_octave, .. } => ((x / lo).log2() * per_octave as f64).floor(),
        };
        let mut i = (guess.max(0.0) as usize).min(n - 1);
        // the closed form can be off by one at an edge because of rounding: settle on the edges
        while i > 0 && x < self.edge(i) {
            i -= 1;
        }
        while i + 1 < n && x >= self.edge(i + 1) {
            i += 1;
        }
        Slot::Bin(i)
    }
}

/// Counts per fixed bin, plus values below and above the bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    spec: BinSpec,
    counts: Vec<u64>,
    below: u64,
    above: u64,
}

impl Histogram {
    /// An empty histogram with `spec`'s bins.
    pub fn new(spec: BinSpec) -> Self {
        Self {
            spec,
            counts: vec![0; spec.bins()],
            below: 0,
            above: 0,
        }
    }

    /// Counts one value.
    pub fn add(&mut self, x: f64) {
        match self.spec.slot(x) {
            Slot::Below => self.below += 1,
            Slot::Above => self.above += 1,
            Slot::Bin(i) => {
                if let Some(c) = self.counts.get_mut(i) {
                    *c += 1;
                }
            }
        }
    }

    /// Adds another histogram with the same bins (a histogram with other bins is ignored: every
    /// histogram of one metric is built from the same constant spec).
    pub fn merge(&mut self, other: &Histogram) {
        if other.spec != self.spec {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.below += other.below;
        self.above += other.above;
    }

    /// The bins from the first to the last non-empty one.
    pub fn summary(&self) -> HistogramSummary {
        let first = self.counts.iter().position(|&c| c > 0);
        let last = self.counts.iter().rposition(|&c| c > 0);
        let bins = match (first, last) {
            (Some(f), Some(l)) => (f..=l)
                .map(|i| BinCount {
                    lo: self.spec.edge(i),
                    hi: self.spec.edge(i + 1),
                    count: self.counts[i],
                })
                .collect(),
            _ => Vec::new(),
        };
        HistogramSummary {
            spec: Some(self.spec),
            bins,
            below: self.below,
            above: self.above,
        }
    }
}

/// One bin of a histogram in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinCount {
    /// Lower edge (inclusive).
    pub lo: f64,
    /// Upper edge (exclusive).
    pub hi: f64,
    /// Values in `[lo, hi)`.
    pub count: u64,
}

/// A histogram as stored in the report: the non-empty stretch of bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// The fixed bins (`null` when the bins were derived from the sketch).
    pub spec: Option<BinSpec>,
    /// Bins from the first to the last non-empty one, in increasing order.
    pub bins: Vec<BinCount>,
    /// Values below the first fixed bin.
    pub below: u64,
    /// Values at or above the last fixed bin.
    pub above: u64,
}

/// Percentiles of a distribution (each within 1 % relative accuracy; see `QuantileSketch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// 1st percentile.
    pub p01: f64,
    /// 5th percentile.
    pub p05: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Summary of one metric in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionSummary {
    /// Finite values seen.
    pub count: u64,
    /// Values that were NaN or infinite (not in any other field).
    pub non_finite: u64,
    /// Exact minimum (`null` when `count` is 0).
    pub min: Option<f64>,
    /// Exact maximum.
    pub max: Option<f64>,
    /// Exact mean.
    pub mean: Option<f64>,
    /// Exact sum.
    pub sum: f64,
    /// Percentiles (`null` when `count` is 0).
    pub quantiles: Option<Quantiles>,
    /// The histogram.
    pub histogram: HistogramSummary,
}

/// Number of linear bins of a histogram derived from the sketch.
pub const SKETCH_HISTOGRAM_BINS: usize = 40;

/// Accumulates one metric: exact moments, a quantile sketch and (optionally) fixed bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    count: u64,
    non_finite: u64,
    sum: f64,
    min: f64,
    max: f64,
    sketch: QuantileSketch,
    histogram: Option<Histogram>,
}

impl Distribution {
    /// A distribution with fixed bins, or with bins derived from the sketch when `spec` is `None`.
    pub fn new(spec: Option<BinSpec>) -> Self {
        Self {
            count: 0,
            non_finite: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sketch: QuantileSketch::new(),
            histogram: spec.map(Histogram::new),
        }
    }

    /// Counts one value.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sketch.add(x);
        if let Some(h) = &mut self.histogram {
            h.add(x);
        }
    }

    /// Adds another distribution of the same metric.
    pub fn merge(&mut self, other: &Distribution) {
        self.count += other.count;
        self.non_finite += other.non_finite;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sketch.merge(&other.sketch);
        match (&mut self.histogram, &other.histogram) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.histogram = Some(b.clone()),
            _ => {}
        }
    }

    /// Finite values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The report's view.
    pub fn summary(&self) -> DistributionSummary {
        let has = self.count > 0;
        // sketch values are within 1 %; never report a percentile outside the exact range
        let q = |p: f64| {
            self.sketch
                .quantile(p)
                .map(|v| v.clamp(self.min, self.max))
                .unwrap_or(0.0)
        };
        let quantiles = has.then(|| Quantiles {
            p01: q(0.01),
            p05: q(0.05),
            p25: q(0.25),
            p50: q(0.50),
            p75: q(0.75),
            p95: q(0.95),
            p99: q(0.99),
        });
        let histogram = match &self.histogram {
            Some(h) => h.summary(),
            None => self.sketch_histogram(),
        };
        DistributionSummary {
            count: self.count,
            non_finite: self.non_finite,
            min: has.then_some(self.min),
            max: has.then_some(self.max),
            mean: has.then(|| self.sum / self.count as f64),
            sum: self.sum,
            quantiles,
            histogram,
        }
    }

    fn sketch_histogram(&self) -> HistogramSummary {
        if self.count == 0 {
            return HistogramSummary {
                spec: None,
                bins: Vec::new(),
                below: 0,
                above: 0,
            };
        }
        let (lo, hi) = (self.min, self.max);
        let n = if hi > lo { SKETCH_HISTOGRAM_BINS } else { 1 };
        let width = if hi > lo { (hi - lo) / n as f64 } else { 1.0 };
        // spread each bucket's count evenly over its interval, then round the running total so
        // that the integer bin counts add up to exactly `count`
        let mut mass = vec![0f64; n];
        for (b_lo, b_hi, c) in self.sketch.iter_bounds() {
            let (b_lo, b_hi) = (b_lo.clamp(lo, hi), b_hi.clamp(lo, hi));
            let bin_of = |x: f64| (((x - lo) / width).floor().max(0.0) as usize).min(n - 1);
            let (first, last) = (bin_of(b_lo), bin_of(b_hi));
            if first == last || b_hi <= b_lo {
                mass[first] += c as f64;
                continue;
            }
            for (i, m) in mass.iter_mut().enumerate().take(last + 1).skip(first) {
                let (e_lo, e_hi) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
                let overlap = (b_hi.min(e_hi) - b_lo.max(e_lo)).max(0.0);
                *m += c as f64 * overlap / (b_hi - b_lo);
            }
        }
        let mut counts = Vec::with_capacity(n);
        let (mut running, mut emitted) = (0f64, 0u64);
        for m in mass {
            running += m;
            let upto = (running.round() as u64).min(self.count);
            counts.push(upto - emitted.min(upto));
            emitted = emitted.max(upto);
        }
        if let Some(last) = counts.last_mut() {
            *last += self.count - emitted.min(self.count);
        }
        let bins = counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| BinCount {
                lo: lo + i as f64 * width,
                hi: if i + 1 == n {
                    hi.max(lo + width)
                } else {
                    lo + (i + 1) as f64 * width
                },
                count,
            })
            .collect();
        HistogramSummary {
            spec: None,
            bins,
            below: 0,
            above: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_bins_put_powers_of_two_on_edges() {
        let spec = BinSpec::Log2 {
            lo: 1.0,
            per_octave: 8,
            bins: 128,
        };
        assert_eq!(spec.slot(256.0), Slot::Bin(64));
        assert_eq!(spec.slot(255.999), Slot::Bin(63));
        assert_eq!(spec.slot(0.5), Slot::Below);
        assert_eq!(spec.slot(65_536.0), Slot::Above);
        for i in 0..128 {
            assert_eq!(spec.slot(spec.edge(i)), Slot::Bin(i), "edge {i}");
        }
    }

    #[test]
    fn linear_bins_and_overflow() {
        let spec = BinSpec::Linear {
            lo: 0.0,
            width: 10.0,
            bins: 5,
        };
        let mut h = Histogram::new(spec);
        for x in [-1.0, 0.0, 9.99, 10.0, 49.0, 50.0, 1e9] {
            h.add(x);
        }
        let s = h.summary();
        assert_eq!(s.below, 1);
        assert_eq!(s.above, 2);
        let counts: Vec<u64> = s.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 0, 0, 1]);
        assert_eq!(s.bins[4].lo, 40.0);
    }

    #[test]
    fn distributions_merge_exactly() {
        let spec = Some(BinSpec::Linear {
            lo: 0.0,
            width: 1.0,
            bins: 100,
        });
        let (mut a, mut b, mut all) = (
            Distribution::new(spec),
            Distribution::new(spec),
            Distribution::new(spec),
        );
        for i in 0..100 {
            let x = (i * 7 % 100) as f64;
            if i % 3 == 0 {
                a.add(x)
            } else {
                b.add(x)
            }
            all.add(x);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        let s = all.summary();
        assert_eq!((s.min, s.max, s.count), (Some(0.0), Some(99.0), 100));
        assert_eq!(s.mean, Some(49.5));
        let p50 = s.quantiles.unwrap().p50;
        assert!((p50 - 49.0).abs() <= 1.0, "{p50}");
    }

    #[test]
    fn sketch_histograms_span_the_observed_range() {
        let mut d = Distribution::new(None);
        for i in 0..1000 {
            d.add(0.2 + 0.2 * (i as f64 / 999.0));
        }
        d.add(f64::NAN);
        let s = d.summary();
        assert_eq!(s.non_finite, 1);
        assert_eq!(s.histogram.bins.len(), SKETCH_HISTOGRAM_BINS);
        assert_eq!(s.histogram.bins.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert!((s.histogram.bins[0].lo - 0.2).abs() < 1e-12);
        // roughly uniform: no bin holds more than twice its share
        assert!(
            s.histogram
                .bins
                .iter()
                .all(|b| b.count < 2 * 1000 / SKETCH_HISTOGRAM_BINS as u64)
        );
        let mut one = Distribution::new(None);
        one.add(3.0);
        assert_eq!(one.summary().histogram.bins.len(), 1);
    }
}
