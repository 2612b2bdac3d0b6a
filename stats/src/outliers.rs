//! Robust outlier scores: modified z-scores around the median (Iglewicz & Hoaglin, 1993).
//!
//! `z = 0.6745 · (x − median) / MAD`, where MAD is the median absolute deviation; a value with
//! `|z| > 3.5` is an outlier. When more than half of the values are equal the MAD is 0; the score
//! then uses the mean absolute deviation instead, `z = (x − median) / (1.2533 · MeanAD)`. When all
//! values are equal nothing is an outlier.

/// The usual cut-off on `|z|`.
pub(crate) const THRESHOLD: f64 = 3.5;

/// Which spread a [`RobustScores`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// Median absolute deviation.
    Mad,
    /// Mean absolute deviation (the MAD was 0).
    MeanAbsDev,
    /// All values equal.
    None,
}

impl Spread {
    /// `mad`, `mean_abs_dev` or `none`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Spread::Mad => "mad",
            Spread::MeanAbsDev => "mean_abs_dev",
            Spread::None => "none",
        }
    }
}

/// Centre, spread and per-value scores.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RobustScores {
    /// Median of the values.
    pub median: f64,
    /// Median absolute deviation.
    pub mad: f64,
    /// Which spread the scores use.
    pub spread: Spread,
    /// One score per value, in input order.
    pub z: Vec<f64>,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Scores every value (non-finite values are left out of the centre and score 0).
pub(crate) fn robust_scores(values: &[f64]) -> RobustScores {
    let finite = sorted(values.iter().copied().filter(|x| x.is_finite()));
    let med = median(&finite);
    let mad = median(&sorted(finite.iter().map(|x| (x - med).abs())));
    let mean_ad = if finite.is_empty() {
        0.0
    } else {
        finite.iter().map(|x| (x - med).abs()).sum::<f64>() / finite.len() as f64
    };
    let (spread, scale) = if mad > 0.0 {
        (Spread::Mad, mad / 0.6745)
    } else if mean_ad > 0.0 {
        (Spread::MeanAbsDev, 1.253_314 * mean_ad)
    } else {
        (Spread::None, 0.0)
    };
    let z = values
        .iter()
        .map(|&x| {
            if scale > 0.0 && x.is_finite() {
                (x - med) / scale
            } else {
                0.0
            }
        })
        .collect();
    RobustScores {
        median: med,
        mad,
        spread,
        z,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_far_value_is_flagged_and_the_rest_are_not() {
        let values = [10.0, 11.0, 9.0, 10.5, 9.5, 10.2, 30.0];
        let s = robust_scores(&values);
        assert_eq!(s.spread, Spread::Mad);
        assert_eq!(s.median, 10.2);
        let flagged: Vec<usize> =
            s.z.iter()
                .enumerate()
                .filter(|(_, z)| z.abs() > THRESHOLD)
                .map(|(i, _)| i)
                .collect();
        assert_eq!(flagged, [6]);
    }

    #[test]
    fn mostly_equal_values_fall_back_to_the_mean_deviation() {
        let s = robust_scores(&[0.1, 0.1, 0.1, 0.1, 0.1, 0.9]);
        assert_eq!(s.spread, Spread::MeanAbsDev);
        assert!(s.z[5] > THRESHOLD, "{:?}", s.z);
        assert_eq!(s.z[0], 0.0);
        let same = robust_scores(&[2.0, 2.0]);
        assert_eq!(same.spread, Spread::None);
        assert!(same.z.iter().all(|&z| z == 0.0));
        assert!(robust_scores(&[]).z.is_empty());
    }
}
