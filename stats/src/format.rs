//! Number formatting shared by the Markdown and HTML reports, so that both print every number of
//! `report.json` the same way.

use super::metrics::ValueUnit;

/// An integer with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report's sentence on object-store retries: empty when there were none.
pub fn retried(retries: u64) -> String {
    if retries == 0 {
        String::new()
    } else {
        format!(
            " Object-store operations retried after transient failures: {}.",
            count(retries)
        )
    }
}

/// A share in [0, 1] as a percentage: `12.3 %`, small non-zero shares with two significant
/// digits (`0.012 %`).
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 || !p.is_finite() {
        "0 %".to_string()
    } else if p.abs() < 0.1 {
        format!("{} %", significant(p, 2))
    } else {
        format!("{p:.1} %")
    }
}

/// A real number with `digits` significant digits, without exponent notation.
pub fn significant(x: f64, digits: u32) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// A size in bytes with SI units: `812 B`, `20.5 kB`, `1.23 MB`, `4.56 GB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if !n.is_finite() {
        return format!("{n} B");
    }
    let mut v = n;
    let mut unit = 0;
    while v.abs() >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", v.round() as i64)
    } else {
        format!("{} {}", significant(v, 3), UNITS[unit])
    }
}

/// A value of a metric in its unit.
pub fn value(x: f64, unit: ValueUnit) -> String {
    match unit {
        // percentiles and means of whole numbers: one decimal below 100, whole numbers above
        ValueUnit::Integer if x >= 0.0 && ((x - x.round()).abs() < 1e-9 || x >= 100.0) => {
            count(x.round() as u64)
        }
        ValueUnit::Integer => format!("{x:.1}"),
        ValueUnit::Bytes => bytes(x),
        ValueUnit::Ratio => format!("{x:.2}"),
        ValueUnit::Decimal => significant(x, 3),
    }
}

/// An optional value, `–` when absent.
pub fn opt_value(x: Option<f64>, unit: ValueUnit) -> String {
    x.map_or_else(|| "–".to_string(), |v| value(v, unit))
}

/// A duration: `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 60.0 {
        return format!("{} s", significant(s, 3));
    }
    let total = s.round() as u64;
    if total < 3600 {
        format!("{} min {:02} s", total / 60, total % 60)
    } else {
        format!("{} h {:02} min", total / 3600, (total % 3600) / 60)
    }
}

/// A rate per second: `1,234/s` (three significant digits below 100).
pub fn rate(per_s: f64) -> String {
    if per_s >= 100.0 {
        format!("{}/s", count(per_s.round() as u64))
    } else {
        format!("{}/s", significant(per_s, 3))
    }
}

/// What a score sidecar lacks, as a sentence starting with a space (empty when complete).
pub fn score_gaps(s: &super::report::ScoreSummary) -> String {
    let mut gaps = Vec::new();
    if s.units_missing > 0 {
        gaps.push(format!("{} units not scored yet", count(s.units_missing)));
    }
    if s.rows_unscored > 0 {
        gaps.push(format!(
            "{} rows without a score (images the scorer could not decode)",
            count(s.rows_unscored)
        ));
    }
    match gaps.is_empty() {
        true => String::new(),
        false => format!(" Missing: {}.", gaps.join("; ")),
    }
}

/// Headers and cells of a numeric distribution's summary as the reports show it: min, p5,
/// median, mean, p95, max.
pub fn summary_cells(s: &super::histogram::DistributionSummary) -> [(&'static str, String); 6] {
    let u = ValueUnit::Decimal;
    let q = s.quantiles.as_ref();
    [
        ("min", opt_value(s.min, u)),
        ("p5", opt_value(q.map(|q| q.p05), u)),
        ("median", opt_value(q.map(|q| q.p50), u)),
        ("mean", opt_value(s.mean, u)),
        ("p95", opt_value(q.map(|q| q.p95), u)),
        ("max", opt_value(s.max, u)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(0.1234), "12.3 %");
        assert_eq!(percent(0.000_123), "0.012 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(bytes(812.0), "812 B");
        assert_eq!(bytes(20_480.0), "20.5 kB");
        assert_eq!(bytes(1_234_567.0), "1.23 MB");
        assert_eq!(value(256.0, ValueUnit::Integer), "256");
        assert_eq!(value(1300.4, ValueUnit::Integer), "1,300");
        assert_eq!(value(50.94, ValueUnit::Integer), "50.9");
        assert_eq!(value(1.5, ValueUnit::Ratio), "1.50");
        assert_eq!(value(0.065_536, ValueUnit::Decimal), "0.0655");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(245.0), "4 min 05 s");
        assert_eq!(seconds(7380.0), "2 h 03 min");
        assert_eq!(rate(12_345.6), "12,346/s");
        assert_eq!(rate(1.234), "1.23/s");
    }
}
