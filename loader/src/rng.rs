//! Seeded randomness of the loader, defined here rather than borrowed from `rand`, so that a
//! checkpoint's loader state resumes to the same samples and pixels with any future build.
//!
//! Every random choice is derived from a tuple of integers (a tag saying what the choice is for,
//! the seed, the epoch, a lane, a block, a position) through [`derive`], and drawn from a
//! [`SplitMix64`] stream seeded with it. Nothing depends on threads, timing or call order.

/// What a derived seed is for; keeps the streams of different choices apart.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Tag {
    /// The permutation of units in an epoch: `(seed, epoch)`.
    Units = 0x756e_6974,
    /// The permutation inside one shuffle block: `(seed, epoch, lane, block)`.
    Block = 0x626c_6f63,
    /// One sample's augmentation: `(seed, epoch, position)`.
    Augment = 0x6175_676d,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijective 64-bit mixer with full avalanche.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for the choice `tag` identified by `parts`.
pub(crate) fn derive(tag: Tag, parts: &[u64]) -> u64 {
    let mut h = mix64(tag as u64 ^ GOLDEN);
    for &p in parts {
        h = mix64(h.wrapping_add(GOLDEN) ^ mix64(p));
    }
    h
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for shuffles and crops.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject); `n` must be > 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

/// The permutation of `0..n` drawn by Fisher–Yates from `seed`.
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_depend_on_the_seed() {
        for n in [0usize, 1, 2, 7, 1000] {
            let mut p = permutation(n, 42);
            p.sort_unstable();
            assert_eq!(p, (0..n as u32).collect::<Vec<_>>());
        }
        assert_eq!(permutation(100, 1), permutation(100, 1));
        assert_ne!(permutation(100, 1), permutation(100, 2));
    }

    #[test]
    fn derived_seeds_separate_tags_and_parts() {
        let a = derive(Tag::Block, &[1, 2, 3]);
        assert_eq!(a, derive(Tag::Block, &[1, 2, 3]));
        assert_ne!(a, derive(Tag::Units, &[1, 2, 3]));
        assert_ne!(a, derive(Tag::Block, &[1, 3, 2]));
        assert_ne!(derive(Tag::Block, &[0]), derive(Tag::Block, &[0, 0]));
    }

    #[test]
    fn draws_are_in_range_and_roughly_uniform() {
        let mut rng = SplitMix64::new(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.below(6) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        for _ in 0..1000 {
            let x = rng.uniform(0.5, 1.0);
            assert!((0.5..1.0).contains(&x));
        }
    }
}
