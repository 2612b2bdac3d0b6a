//! Distinct counts in fixed space: HyperLogLog with 2^14 registers (16 KiB, standard error
//! 1.04 / √16384 ≈ 0.8 %), exact-ish below ~40 000 items thanks to linear counting.
//!
//! Used to estimate how many accepted rows share a content hash or a perceptual hash with another
//! accepted row: duplicates that per-unit deduplication during ingest could not see.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// log2 of the number of registers.
const PRECISION: u32 = 14;
const REGISTERS: usize = 1 << PRECISION;
/// Seed of the item hash (any constant; fixed so that estimates are reproducible).
const HASH_SEED: u64 = 0x5EED_F11B;

/// Relative standard error of [`Distinct::estimate`] for large counts.
pub(crate) const STANDARD_ERROR: f64 = 1.04 / 128.0;

/// A HyperLogLog sketch; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Distinct {
    registers: Vec<u8>,
}

impl Default for Distinct {
    fn default() -> Self {
        Self::new()
    }
}

impl Distinct {
    /// An empty sketch.
    pub(crate) fn new() -> Self {
        Self {
            registers: vec![0; REGISTERS],
        }
    }

    /// Adds an item given as bytes.
    pub(crate) fn add(&mut self, item: &[u8]) {
        let h = xxh3_64_with_seed(item, HASH_SEED);
        let idx = (h >> (64 - PRECISION)) as usize;
        let rest = h << PRECISION;
        // position of the first 1 bit in the remaining 50 bits, 1-based
        let rho = (rest.leading_zeros().min(64 - PRECISION) + 1) as u8;
        if let Some(r) = self.registers.get_mut(idx)
            && rho > *r
        {
            *r = rho;
        }
    }

    /// Adds another sketch (register-wise maximum).
    pub(crate) fn merge(&mut self, other: &Distinct) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    /// Estimated number of distinct items added.
    pub(crate) fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|&r| (-(r as f64)).exp2()).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_are_nearly_exact_and_duplicates_do_not_count() {
        let mut d = Distinct::new();
        for i in 0..1000u32 {
            d.add(&(i % 900).to_le_bytes());
        }
        let e = d.estimate();
        assert!((895..=905).contains(&e), "{e}");
        assert_eq!(Distinct::new().estimate(), 0);
    }

    #[test]
    fn large_counts_are_within_a_few_standard_errors_and_merge() {
        let (mut a, mut b) = (Distinct::new(), Distinct::new());
        for i in 0..200_000u64 {
            if i % 2 == 0 {
                a.add(&i.to_le_bytes())
            } else {
                b.add(&i.to_le_bytes())
            }
        }
        a.merge(&b);
        let e = a.estimate() as f64;
        assert!((e / 200_000.0 - 1.0).abs() < 4.0 * STANDARD_ERROR, "{e}");
    }
}
