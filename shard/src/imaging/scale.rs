//! [`ScaleFactor`]: the reduction applied while decoding (JPEG DCT scaling), as a fraction.

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
}
