//! [`ScaleFactor`]: the reduction applied while decoding (JPEG DCT scaling), as a fraction, and
//! [`DctScaling`]: which reductions may be used.

use std::fmt;

/// A decode-time scale `num / denom` (`1/1` = full size). A side of `n` pixels becomes
/// `ceil(n * num / denom)`, the rounding libjpeg uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ScaleFactor {
    num: u32,
    denom: u32,
}

impl ScaleFactor {
    /// Full size.
    pub const ONE: ScaleFactor = ScaleFactor { num: 1, denom: 1 };

    /// `num / denom`, reduced to lowest terms (`6/8` is stored as `3/4`). A zero denominator is
    /// treated as 1.
    pub const fn new(num: u32, denom: u32) -> Self {
        let denom = if denom == 0 { 1 } else { denom };
        let (mut a, mut b) = (num, denom);
        while b != 0 {
            let t = a % b;
            a = b;
            b = t;
        }
        let g = if a == 0 { 1 } else { a };
        ScaleFactor {
            num: num / g,
            denom: denom / g,
        }
    }

    /// Numerator.
    pub fn num(self) -> u32 {
        self.num
    }

    /// Denominator.
    pub fn denom(self) -> u32 {
        self.denom
    }

    /// The scaled length of a side of `n` pixels: `ceil(n * num / denom)`.
    pub fn apply(self, n: u32) -> u32 {
        let v = (u64::from(n) * u64::from(self.num)).div_ceil(u64::from(self.denom));
        u32::try_from(v).unwrap_or(u32::MAX)
    }

    /// True for `1/1`.
    pub fn is_one(self) -> bool {
        self.num == self.denom
    }
}

impl Default for ScaleFactor {
    fn default() -> Self {
        ScaleFactor::ONE
    }
}

impl fmt::Display for ScaleFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.denom)
    }
}

/// Which DCT-domain reductions a JPEG decode may use.
///
/// libjpeg-turbo has SIMD inverse DCTs for 8/8, 4/8, 2/8 and 1/8 only; the other eighths run a
/// scalar IDCT that costs more than the full-size SIMD one, so `powers_of_two` is the default
/// (docs/imaging.md has the measurements).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DctScaling {
    /// Always decode at full size.
    Off,
    /// 1/8, 1/4, 1/2 (default).
    #[default]
    PowersOfTwo,
    /// Any M/8, M = 1..7: the smallest output, not the fastest decode.
    Eighths,
}

impl DctScaling {
    /// The allowed reductions, largest reduction first, ending with full size.
    pub fn factors(self) -> &'static [ScaleFactor] {
        const POW2: [ScaleFactor; 4] = [
            ScaleFactor::new(1, 8),
            ScaleFactor::new(1, 4),
            ScaleFactor::new(1, 2),
            ScaleFactor::ONE,
        ];
        const EIGHTHS: [ScaleFactor; 8] = [
            ScaleFactor::new(1, 8),
            ScaleFactor::new(2, 8),
            ScaleFactor::new(3, 8),
            ScaleFactor::new(4, 8),
            ScaleFactor::new(5, 8),
            ScaleFactor::new(6, 8),
            ScaleFactor::new(7, 8),
            ScaleFactor::ONE,
        ];
        match self {
            DctScaling::Off => &[ScaleFactor::ONE],
            DctScaling::PowersOfTwo => &POW2,
            DctScaling::Eighths => &EIGHTHS,
        }
    }

    /// The largest allowed reduction that keeps `min(width, height)` at or above
    /// `target_min_side` (`1/1` when the image is already that small).
    pub fn choose(self, width: u32, height: u32, target_min_side: u32) -> ScaleFactor {
        let min_side = width.min(height);
        self.factors()
            .iter()
            .copied()
            .find(|s| s.apply(min_side) >= target_min_side)
            .unwrap_or(ScaleFactor::ONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_and_rounds_up() {
        let s = ScaleFactor::new(6, 8);
        assert_eq!(
            (s.num(), s.denom(), s.to_string()),
            (3, 4, "3/4".to_string())
        );
        assert_eq!((s.apply(472), s.apply(375)), (354, 282));
        assert_eq!(ScaleFactor::new(1, 8).apply(5), 1);
        assert!(ScaleFactor::new(8, 8).is_one());
        assert_eq!(ScaleFactor::new(3, 0), ScaleFactor::new(3, 1));
        assert_eq!(ScaleFactor::new(0, 5).apply(100), 0);
    }

    #[test]
    fn choose_keeps_the_shortest_side_at_or_above_the_target() {
        let e = DctScaling::Eighths;
        // the example from the design notes: 472x375 at 3/4 is 354x282 (>= 256)
        assert_eq!(e.choose(472, 375, 256), ScaleFactor::new(6, 8));
        assert_eq!(
            DctScaling::PowersOfTwo.choose(472, 375, 256),
            ScaleFactor::ONE
        );
        assert_eq!(
            DctScaling::PowersOfTwo.choose(800, 600, 256),
            ScaleFactor::new(1, 2)
        );
        assert_eq!(DctScaling::Off.choose(4000, 3000, 256), ScaleFactor::ONE);
        assert_eq!(e.choose(4000, 3000, 256), ScaleFactor::new(1, 8));
        assert_eq!(e.choose(2048, 2048, 256), ScaleFactor::new(1, 8));
        assert_eq!(e.choose(2041, 2041, 256), ScaleFactor::new(1, 8));
        assert_eq!(e.choose(2040, 2040, 256), ScaleFactor::new(2, 8));
        assert_eq!(e.choose(300, 200, 256), ScaleFactor::ONE);
        assert_eq!(e.choose(256, 256, 256), ScaleFactor::ONE);
        for scaling in [DctScaling::PowersOfTwo, DctScaling::Eighths] {
            let factors = scaling.factors();
            for w in (100..3000).step_by(37) {
                for h in [100, 255, 256, 257, 511, 512, 1000, 2049] {
                    let s = scaling.choose(w, h, 256);
                    let side = s.apply(w).min(s.apply(h));
                    assert!(side >= 256.min(w.min(h)), "{w}x{h} at {s}: {side}");
                    // and no larger reduction would still do
                    if let Some(smaller) = factors.iter().take_while(|c| **c != s).last() {
                        assert!(
                            smaller.apply(w).min(smaller.apply(h)) < 256,
                            "{w}x{h}: {smaller} fits too"
                        );
                    }
                }
            }
        }
    }
}
