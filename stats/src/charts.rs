//! SVG charts for `report.html`, drawn with plotters' SVG backend (text as SVG `<text>`, no fonts
//! or scripts needed): histograms, horizontal bar charts and the per-shard scatter plot.
//!
//! Histograms are drawn in bin-index space, one bar per fixed bin, with axis labels giving the
//! bin edges in the metric's unit; log-spaced bins therefore read as a log axis.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::StatsError;
use super::format::{count, percent, value};
use super::histogram::{BinCount, BinSpec, HistogramSummary, Slot};
use super::metrics::ValueUnit;

/// Width of every chart, pixels (the page shows two per row on wide screens).
pub(crate) const WIDTH: u32 = 640;
/// Height of histograms and scatter plots.
pub(crate) const HEIGHT: u32 = 300;

const BAR: RGBColor = RGBColor(66, 113, 196);
const ALERT: RGBColor = RGBColor(214, 69, 65);
const GRID: RGBColor = RGBColor(225, 228, 234);
const INK: RGBColor = RGBColor(40, 44, 52);
const FONT: &str = "sans-serif";
const TITLE_PX: u32 = 21;
const LABEL_PX: u32 = 15;

/// Histograms with fewer non-empty bins than this are widened with empty neighbours, so that a
/// single spike still sits on a readable axis.
pub(crate) const MIN_DISPLAY_BINS: usize = 12;

/// The bins to draw: the report's bins, widened to [`MIN_DISPLAY_BINS`] with empty fixed bins on
/// both sides when there are fewer.
pub(crate) fn display_bins(h: &HistogramSummary) -> Vec<BinCount> {
    let (Some(spec), Some(first)) = (h.spec, h.bins.first()) else {
        return h.bins.clone();
    };
    if h.bins.len() >= MIN_DISPLAY_BINS {
        return h.bins.clone();
    }
    let Slot::Bin(i0) = spec.slot(first.lo) else {
        return h.bins.clone();
    };
    let missing = MIN_DISPLAY_BINS - h.bins.len();
    let start = i0.saturating_sub(missing / 2);
    let end = (start + MIN_DISPLAY_BINS).min(spec.bins());
    let start = end.saturating_sub(MIN_DISPLAY_BINS);
    (start..end)
        .map(|i| {
            let lo = spec.edge(i);
            let count = h.bins.iter().find(|b| b.lo == lo).map_or(0, |b| b.count);
            BinCount {
                lo,
                hi: spec.edge(i + 1),
                count,
            }
        })
        .collect()
}

/// An axis label: like [`value`], but whole numbers for integer measures.
fn axis_label(x: f64, unit: ValueUnit) -> String {
    match unit {
        ValueUnit::Integer => value(x.round(), unit),
        _ => value(x, unit),
    }
}

fn chart_err(chart: &str) -> impl Fn(String) -> StatsError + '_ {
    move |detail| StatsError::Chart {
        chart: chart.to_string(),
        detail,
    }
}

/// Draws bars for `bins` on an x axis given as a plotters range expression (linear or log).
macro_rules! draw_histogram {
    ($root:expr, $title:expr, $err:expr, $x:expr, $bins:expr, $ymax:expr, $unit:expr, $gap:expr) => {{
        let mut chart = ChartBuilder::on($root)
            .caption($title, (FONT, TITLE_PX).into_font().color(&INK))
            .margin(14)
            .margin_right(30)
            .x_label_area_size(38)
            .y_label_area_size(70)
            .build_cartesian_2d($x, 0f64..$ymax)
            .map_err(|e| $err(e.to_string()))?;
        let x_fmt = |x: &f64| axis_label(*x, $unit);
        let y_fmt = |y: &f64| count(y.round().max(0.0) as u64);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style((FONT, LABEL_PX).into_font().color(&INK))
            .draw()
            .map_err(|e| $err(e.to_string()))?;
        chart
            .draw_series($bins.iter().map(|b| {
                let (x0, x1) = $gap(b.lo, b.hi);
                Rectangle::new([(x0, 0.0), (x1, b.count as f64)], BAR.filled())
            }))
            .map_err(|e| $err(e.to_string()))?;
    }};
}

/// A histogram of `h` on a real-valued axis: log base 2 for log-spaced bins, linear otherwise.
pub(crate) fn histogram_svg(
    title: &str,
    h: &HistogramSummary,
    unit: ValueUnit,
) -> Result<String, StatsError> {
    let err = chart_err(title);
    let bins = display_bins(h);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (Some(first), Some(last)) = (bins.first(), bins.last()) else {
            root.titled(title, (FONT, TITLE_PX).into_font().color(&INK))
                .map_err(|e| err(e.to_string()))?;
            root.draw_text(
                "no values",
                &(FONT, LABEL_PX).into_font().color(&INK),
                (WIDTH as i32 / 2 - 30, HEIGHT as i32 / 2),
            )
            .map_err(|e| err(e.to_string()))?;
            root.present().map_err(|e| err(e.to_string()))?;
            drop(root);
            return Ok(svg);
        };
        let ymax = bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64 * 1.08;
        let (lo, hi) = (first.lo, last.hi.max(first.lo + f64::EPSILON));
        let thin = bins.len() > 60;
        let log = matches!(h.spec, Some(BinSpec::Log2 { .. })) && lo > 0.0;
        if log {
            let gap = |a: f64, b: f64| {
                if thin {
                    (a, b)
                } else {
                    (a * (b / a).powf(0.08), a * (b / a).powf(0.92))
                }
            };
            draw_histogram!(
                &root,
                title,
                err,
                (lo..hi).log_scale().base(2.0),
                bins,
                ymax,
                unit,
                gap
            );
        } else {
            let gap = |a: f64, b: f64| {
                if thin {
                    (a, b)
                } else {
                    (a + (b - a) * 0.08, a + (b - a) * 0.92)
                }
            };
            draw_histogram!(&root, title, err, lo..hi, bins, ymax, unit, gap);
        }
        if h.below > 0 || h.above > 0 {
            let note = format!(
                "outside the bins: {} below, {} above",
                count(h.below),
                count(h.above)
            );
            root.draw_text(
                &note,
                &(FONT, LABEL_PX - 1).into_font().color(&ALERT),
                (WIDTH as i32 - 270, 36),
            )
            .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// Longest label drawn on a bar chart.
const LABEL_CHARS: usize = 28;

fn shorten(s: &str) -> String {
    if s.chars().count() <= LABEL_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(LABEL_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// Horizontal bars, one per item, largest first as given; `total`, when given, adds each bar's
/// share to its label.
pub(crate) fn bars_svg(
    title: &str,
    items: &[(String, u64)],
    total: Option<u64>,
) -> Result<String, StatsError> {
    let err = chart_err(title);
    let row = 27u32;
    let height = 60 + row * items.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let title_area = root
            .titled(title, (FONT, TITLE_PX).into_font().color(&INK))
            .map_err(|e| err(e.to_string()))?;
        let max = items.iter().map(|(_, c)| *c).max().unwrap_or(1).max(1) as f64;
        let label_w = 200i32;
        let bar_w = WIDTH as i32 - label_w - 150;
        let label_style = (FONT, LABEL_PX)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        let count_style = (FONT, LABEL_PX - 1)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (name, c)) in items.iter().enumerate() {
            let y = 14 + i as i32 * row as i32;
            let w = ((*c as f64 / max) * bar_w as f64).round().max(1.0) as i32;
            title_area
                .draw(&Rectangle::new(
                    [(label_w, y), (label_w + w, y + row as i32 - 6)],
                    BAR.filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
            title_area
                .draw(&Text::new(
                    shorten(name),
                    (label_w - 8, y + (row as i32 - 6) / 2),
                    label_style.clone(),
                ))
                .map_err(|e| err(e.to_string()))?;
            let label = match total {
                Some(t) if t > 0 => format!("{} ({})", count(*c), percent(*c as f64 / t as f64)),
                _ => count(*c),
            };
            title_area
                .draw(&Text::new(
                    label,
                    (label_w + w + 6, y + (row as i32 - 6) / 2),
                    count_style.clone(),
                ))
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// One point per shard (x: shard position, y: value); flagged shards in red.
pub(crate) fn scatter_svg(
    title: &str,
    y_desc: &str,
    points: &[(f64, bool)],
    unit: ValueUnit,
) -> Result<String, StatsError> {
    let err = chart_err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let ymax = points.iter().map(|p| p.0).fold(0f64, f64::max).max(1e-9) * 1.1;
        let n = points.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, TITLE_PX).into_font().color(&INK))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..ymax)
            .map_err(|e| err(e.to_string()))?;
        let y_fmt = |y: &f64| axis_label(*y, unit);
        let x_fmt = |x: &f64| count(x.round().max(0.0) as u64);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(INK)
            .x_desc("shard (canonical order)")
            .y_desc(y_desc)
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .label_style((FONT, LABEL_PX).into_font().color(&INK))
            .axis_desc_style((FONT, LABEL_PX).into_font().color(&INK))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let radius = if points.len() > 500 { 2 } else { 4 };
        chart
            .draw_series(points.iter().enumerate().map(|(i, &(y, flagged))| {
                Circle::new(
                    (i as f64, y),
                    radius,
                    if flagged {
                        ALERT.filled()
                    } else {
                        BAR.mix(0.8).filled()
                    },
                )
            }))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let mut hist = Histogram::new(BinSpec::Log2 {
            lo: 8.0,
            per_octave: 8,
            bins: 104,
        });
        for x in [
            256.0, 256.0, 256.0, 256.0, 256.0, 256.0, 256.0, 300.0, 300.0, 300.0, 1e9,
        ] {
            hist.add(x);
        }
        let h = hist.summary();
        let shown = display_bins(&h);
        assert_eq!(
            shown.len(),
            MIN_DISPLAY_BINS,
            "narrow histograms are widened"
        );
        assert_eq!(shown.iter().map(|b| b.count).sum::<u64>(), 10);
        assert!(shown.windows(2).all(|w| w[0].hi == w[1].lo));
        let svg = histogram_svg("Stored width (px)", &h, ValueUnit::Integer).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("Stored width (px)"));
        assert!(svg.contains("\n256\n"), "x labels show bin edges: {svg}");
        assert!(
            !svg.contains("277.1"),
            "integer axes have integer labels: {svg}"
        );
        assert!(svg.contains("1 above"));
        let bars = bars_svg(
            "Rejections",
            &[("too_small".into(), 30), ("decode_error".into(), 10)],
            Some(100),
        )
        .unwrap();
        assert!(bars.contains("too_small") && bars.contains("30 (30.0 %)"));
        let sc = scatter_svg(
            "Bytes",
            "bytes",
            &[(1.0, false), (9.0, true)],
            ValueUnit::Bytes,
        )
        .unwrap();
        assert!(sc.contains("<circle"));
    }
}
