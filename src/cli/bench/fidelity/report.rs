//! The fidelity benchmark's report: arms × seeds → rows of mean ± sd, FLIP's claims set against
//! what was measured, a Markdown page and an SVG plot of accuracy against training time.

use flipstream_train::run::{EvalReport, ZeroShotReport};
use plotters::prelude::*;
use serde::Serialize;

use super::arms::ArmResult;

/// Which evaluation of an arm a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// Full images at the end of the masked phase.
    Full,
    /// The training mask ratio at inference.
    Masked,
    /// After unmasked tuning (time includes the tuning).
    Tuned,
}

/// One row of the table: an arm seen through one evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowDef {
    /// Short key (JSON).
    pub key: &'static str,
    /// What the reader sees.
    pub label: &'static str,
    /// The arm (its name without the seed).
    pub arm: &'static str,
    /// Which evaluation.
    pub view: View,
}

/// The rows of the FLIP suite, in the order of the table.
pub(super) const FLIP_ROWS: [RowDef; 10] = [
    row("clip", "CLIP (mask 0), B", "clip", View::Full),
    row("flip50", "FLIP 50 %, B, equal epochs", "flip50", View::Full),
    row("flip75", "FLIP 75 %, B, equal epochs", "flip75", View::Full),
    row(
        "flip50-2b",
        "FLIP 50 %, 2B, equal epochs",
        "flip50-2b",
        View::Full,
    ),
    row(
        "flip50-wall",
        "FLIP 50 %, B, CLIP's wall-clock",
        "flip50-wall",
        View::Full,
    ),
    row(
        "flip75-wall",
        "FLIP 75 %, B, CLIP's wall-clock",
        "flip75-wall",
        View::Full,
    ),
    row(
        "flip50-tuned",
        "FLIP 50 % + unmasked tuning",
        "flip50",
        View::Tuned,
    ),
    row(
        "flip75-tuned",
        "FLIP 75 % + unmasked tuning",
        "flip75",
        View::Tuned,
    ),
    row(
        "flip50-masked-inf",
        "FLIP 50 %, masked inference",
        "flip50",
        View::Masked,
    ),
    row(
        "flip75-masked-inf",
        "FLIP 75 %, masked inference",
        "flip75",
        View::Masked,
    ),
];

/// The rows of the objectives suite.
pub(super) const OBJECTIVE_ROWS: [RowDef; 7] = [
    row("clip", "CLIP (mask 0)", "clip", View::Full),
    row("flip50", "FLIP 50 %", "flip50", View::Full),
    row(
        "mae_clip50",
        "MAE+CLIP 50 %, one masked pass",
        "mae_clip50",
        View::Full,
    ),
    row(
        "mae_clip50-full",
        "MAE+CLIP 50 %, contrastive on the full image",
        "mae_clip50-full",
        View::Full,
    ),
    row(
        "cae_v2",
        "CAE v2 (CLIP teacher), visible tokens",
        "cae_v2",
        View::Full,
    ),
    row(
        "cae_v2-masked",
        "CAE v2 (CLIP teacher), masked tokens",
        "cae_v2-masked",
        View::Full,
    ),
    row("mug", "MUG 75 % (pixels + caption)", "mug", View::Full),
];

const fn row(key: &'static str, label: &'static str, arm: &'static str, view: View) -> RowDef {
    RowDef {
        key,
        label,
        arm,
        view,
    }
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Stat {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

impl Stat {
    pub(super) fn of(values: &[f64]) -> Stat {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stat {
            mean,
            sd: var.sqrt(),
            n,
        }
    }
}

/// A row's figures over the seeds.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RowStats {
    pub key: &'static str,
    pub label: &'static str,
    pub steps: u64,
    pub batch: usize,
    /// Training seconds (masked phase, plus tuning for tuned rows).
    pub seconds: Stat,
    pub images_per_s: Stat,
    /// Named accuracies (fractions): class top-1, per column, held-out, retrieval.
    pub metrics: Vec<(String, Stat)>,
}

/// The named figures of one evaluation, in a fixed order.
pub(super) fn figures(r: &EvalReport) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut zero_shot = |prefix: &str, z: &ZeroShotReport| {
        out.push((format!("{prefix}top-1"), z.top1));
        for c in &z.columns {
            out.push((format!("{prefix}{}", c.column), c.accuracy));
        }
    };
    if let Some(z) = &r.zero_shot {
        zero_shot("", z);
    }
    if let Some(z) = &r.compositional {
        zero_shot("held-out ", z);
    }
    if let Some(p) = &r.probe {
        for c in &p.columns {
            out.push((format!("probe {}", c.column), c.accuracy));
        }
    }
    if let Some(ret) = &r.retrieval {
        out.extend([
            ("R@1 i→t".to_string(), ret.image_to_text.r1),
            ("R@5 i→t".to_string(), ret.image_to_text.r5),
            ("R@1 t→i".to_string(), ret.text_to_image.r1),
        ]);
    }
    out
}

/// The evaluation and training seconds a row takes from one arm result.
fn view_of(r: &ArmResult, view: View) -> Option<(&EvalReport, f64)> {
    match view {
        View::Full => Some((&r.eval, r.train_seconds)),
        View::Masked => r.masked_inference.as_ref().map(|e| (e, r.train_seconds)),
        View::Tuned => r
            .tuned
            .as_ref()
            .map(|e| (e, r.train_seconds + r.tune_seconds)),
    }
}

/// Aggregates the results of every seed into the table's `rows` (rows without results are left
/// out).
pub(super) fn aggregate(results: &[ArmResult], rows: &[RowDef]) -> Vec<RowStats> {
    rows.iter()
        .filter_map(|def| {
            let picked: Vec<(&ArmResult, &EvalReport, f64)> = results
                .iter()
                .filter(|r| r.spec.name == def.arm)
                .filter_map(|r| view_of(r, def.view).map(|(e, s)| (r, e, s)))
                .collect();
            let (first, first_eval, _) = picked.first()?;
            let names: Vec<String> = figures(first_eval).into_iter().map(|f| f.0).collect();
            let metrics = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let values: Vec<f64> = picked
                        .iter()
                        .filter_map(|(_, e, _)| figures(e).get(i).map(|f| f.1))
                        .collect();
                    (name.clone(), Stat::of(&values))
                })
                .collect();
            let seconds: Vec<f64> = picked.iter().map(|p| p.2).collect();
            let ips: Vec<f64> = picked.iter().map(|p| p.0.images_per_s).collect();
            Some(RowStats {
                key: def.key,
                label: def.label,
                steps: first.spec.steps
                    + if def.view == View::Tuned {
                        first.spec.tune_steps
                    } else {
                        0
                    },
                batch: first.spec.batch,
                seconds: Stat::of(&seconds),
                images_per_s: Stat::of(&ips),
                metrics,
            })
        })
        .collect()
}

/// The value of a named figure in a row.
pub(super) fn metric(row: &RowStats, name: &str) -> Option<Stat> {
    row.metrics.iter().find(|m| m.0 == name).map(|m| m.1)
}

/// A paper's claim: two rows compared on the headline figures, with the paper's numbers.
#[derive(Debug)]
pub(super) struct Claim {
    pub what: &'static str,
    pub row: &'static str,
    pub against: &'static str,
    /// The paper's accuracy difference (ImageNet zero-shot top-1 points) and time ratio.
    pub paper: &'static str,
}

/// FLIP's claims (../shared/methods.md, Table 1 and Fig. 3 of the paper).
pub(super) const FLIP_CLAIMS: [Claim; 8] = [
    Claim {
        what: "mask 50 % at the same batch, equal epochs",
        row: "flip50",
        against: "clip",
        paper: "−0.1 points (68.5 vs 68.6) at about half the time",
    },
    Claim {
        what: "mask 50 % at twice the batch, equal epochs",
        row: "flip50-2b",
        against: "clip",
        paper: "+1.0 (69.6 vs 68.6) at 0.50× the time",
    },
    Claim {
        what: "mask 75 %, equal epochs",
        row: "flip75",
        against: "clip",
        paper: "−0.4 (68.2 vs 68.6, at 4× the batch) at 0.33× the time",
    },
    Claim {
        what: "mask 50 %, equal wall-clock",
        row: "flip50-wall",
        against: "clip",
        paper: "masking wins at equal time (Fig. 3)",
    },
    Claim {
        what: "mask 75 %, equal wall-clock",
        row: "flip75-wall",
        against: "clip",
        paper: "masking wins at equal time (Fig. 3)",
    },
    Claim {
        what: "unmasked tuning after 50 %",
        row: "flip50-tuned",
        against: "flip50",
        paper: "+0.5 (69.6 → 70.1)",
    },
    Claim {
        what: "unmasked tuning after 75 %",
        row: "flip75-tuned",
        against: "flip75",
        paper: "+1.3 (68.2 → 69.5)",
    },
    Claim {
        what: "masked (50 %) instead of full-image inference",
        row: "flip50-masked-inf",
        against: "flip50",
        paper: "−3.2 (66.4 vs 69.6)",
    },
];

/// What the MAE+CLIP papers claim (FLIP Table 1f; Weers et al. 2023).
pub(super) const OBJECTIVE_CLAIMS: [Claim; 7] = [
    Claim {
        what: "MAE loss added to FLIP 50 % (one masked pass)",
        row: "mae_clip50",
        against: "flip50",
        paper: "FLIP Table 1f: −0.2 (69.4 vs 69.6) on LAION-400M",
    },
    Claim {
        what: "MAE+CLIP, contrastive on the full image, against CLIP",
        row: "mae_clip50-full",
        against: "clip",
        paper: "Weers et al.: helps on 11.3 M pairs, little or nothing on 1.4 B",
    },
    Claim {
        what: "MAE+CLIP one pass against CLIP",
        row: "mae_clip50",
        against: "clip",
        paper: "not in the papers (FLIP compares with FLIP)",
    },
    Claim {
        what: "CAE v2: visible-token against masked-token supervision",
        row: "cae_v2",
        against: "cae_v2-masked",
        paper: "visible tokens as good as or better (CAE v2, ViT-B on IN-1K)",
    },
    Claim {
        what: "CAE v2 student against its CLIP teacher (probe)",
        row: "cae_v2",
        against: "clip",
        paper: "the student's probe beats the teacher's in the paper (distilling OpenAI's CLIP)",
    },
    Claim {
        what: "MUG against CLIP (probe)",
        row: "mug",
        against: "clip",
        paper: "MUG transfers better than CLIP from web pairs (MUG §4)",
    },
    Claim {
        what: "MUG against MAE+CLIP (probe)",
        row: "mug",
        against: "mae_clip50",
        paper: "MUG above MAE-style and contrastive methods (MUG §4)",
    },
];

/// The verdict on a difference of means: within noise unless it exceeds twice the standard
/// error of the difference.
pub(super) fn verdict(a: Stat, b: Stat) -> &'static str {
    let se = (a.sd.powi(2) / a.n.max(1) as f64 + b.sd.powi(2) / b.n.max(1) as f64).sqrt();
    let d = a.mean - b.mean;
    if d.abs() <= 2.0 * se {
        "no clear difference"
    } else if d > 0.0 {
        "higher"
    } else {
        "lower"
    }
}

/// A point of the plot: a row's mean time and accuracy with their standard deviations.
pub(super) struct Point<'a> {
    pub label: &'a str,
    pub seconds: Stat,
    pub value: Stat,
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Accuracy (y, %) against training time (x, s), error bars of one sd on both axes, one colour
/// per row with a legend.
pub(super) fn accuracy_vs_time_svg(
    title: &str,
    y_desc: &str,
    points: &[Point<'_>],
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let xmax = points
            .iter()
            .map(|p| p.seconds.mean + p.seconds.sd)
            .fold(1.0f64, f64::max)
            * 1.08;
        let ys = points.iter().map(|p| p.value.mean * 100.0);
        let ymin = ys.clone().fold(100.0f64, f64::min);
        let ymax = ys.fold(0.0f64, f64::max);
        let pad = ((ymax - ymin) * 0.25).max(2.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..xmax, (ymin - pad).max(0.0)..(ymax + pad).min(100.0))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("training time (s)")
            .y_desc(y_desc)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot_err)?;
        for (i, p) in points.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let (x, y) = (p.seconds.mean, p.value.mean * 100.0);
            let (sx, sy) = (p.seconds.sd, p.value.sd * 100.0);
            chart
                .draw_series([
                    PathElement::new(vec![(x - sx, y), (x + sx, y)], colour.stroke_width(2)),
                    PathElement::new(vec![(x, y - sy), (x, y + sy)], colour.stroke_width(2)),
                ])
                .map_err(plot_err)?;
            chart
                .draw_series([Circle::new((x, y), 5, colour.filled())])
                .map_err(plot_err)?
                .label(p.label)
                .legend(move |(lx, ly)| Circle::new((lx + 6, ly), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the fidelity plot: {e}")
}
