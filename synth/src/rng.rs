//! Deterministic randomness for the generator.
//!
//! Every item draws from its own ChaCha8 streams, derived from `(seed, purpose, index)` only, so an
//! item's content never depends on which thread rendered it or on what was rendered before.
//! Per-pixel noise uses [`mix64`], a counter-based hash (the SplitMix64 finaliser), instead of an
//! RNG object per pixel.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG type every part of the generator uses.
pub(crate) type ItemRng = ChaCha8Rng;

/// What a stream is used for: separate streams keep e.g. captions from shifting when the scene
/// code draws one more number.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// Image size and scene layout.
    Scene = 1,
    /// Caption wording and web noise.
    Caption = 2,
    /// Encoding choice (format, quality).
    Encoding = 3,
    /// Parameters of the applied dirt (cut points, sizes, byte garbage).
    Dirt = 4,
    /// The dataset-wide dirt assignment (one stream for the whole plan).
    Plan = 5,
}

/// SplitMix64's finaliser: a fast, well-mixing bijection on `u64`.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of two words (order matters).
#[inline]
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    mix64(mix64(a) ^ b.rotate_left(29) ^ 0x5851_F42D_4C95_7F2D)
}

/// The RNG stream of one item for one purpose.
pub(crate) fn item_rng(seed: u64, index: u64, purpose: Purpose) -> ItemRng {
    let mut rng = ChaCha8Rng::seed_from_u64(hash2(seed, purpose as u64));
    rng.set_stream(index);
    rng
}

/// A uniformly chosen element of a non-empty constant table.
pub(crate) fn pick<T: Copy, const N: usize>(rng: &mut ItemRng, items: &[T; N]) -> T {
    const { assert!(N > 0) };
    items[rng.random_range(0..N)]
}

/// A uniformly chosen element of a slice, `None` when it is empty.
pub(crate) fn pick_slice<'a, T>(rng: &mut ItemRng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

/// An element chosen with the given integer weights (all-zero weights give the first element).
pub(crate) fn weighted<T: Copy, const N: usize>(rng: &mut ItemRng, items: &[(T, u32); N]) -> T {
    const { assert!(N > 0) };
    let total: u32 = items.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return items[0].0;
    }
    let mut r = rng.random_range(0..total);
    for (item, w) in items {
        if r < *w {
            return *item;
        }
        r -= w;
    }
    items[N - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_only_on_seed_index_and_purpose() {
        let a: u64 = item_rng(7, 42, Purpose::Scene).random();
        let b: u64 = item_rng(7, 42, Purpose::Scene).random();
        let c: u64 = item_rng(7, 43, Purpose::Scene).random();
        let d: u64 = item_rng(7, 42, Purpose::Caption).random();
        let e: u64 = item_rng(8, 42, Purpose::Scene).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut rng = item_rng(1, 1, Purpose::Scene);
        for _ in 0..200 {
            assert_eq!(weighted(&mut rng, &[("a", 0), ("b", 5), ("c", 0)]), "b");
        }
    }

    #[test]
    fn mix64_spreads_neighbours() {
        let ones = (mix64(1) ^ mix64(2)).count_ones();
        assert!((16..=48).contains(&ones), "{ones}");
    }
}
