//! The fidelity benchmark's Markdown page (command, machine, recipe, table, FLIP's claims against
//! the measurements) and its SVG plots, written next to each other.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use flipstream_train::run::{RunSpec, Session};

use super::FidelityArgs;
use super::report::{self, Claim, Point, RowStats, Stat};
use super::suite::Suite;

fn pct(s: Stat) -> String {
    format!("{:.1} ± {:.1}", s.mean * 100.0, s.sd * 100.0)
}

/// The table of rows × figures (Markdown; also printed on stdout).
pub(super) fn table(rows: &[RowStats]) -> String {
    let Some(first) = rows.first() else {
        return "no results".into();
    };
    let names: Vec<&str> = first.metrics.iter().map(|m| m.0.as_str()).collect();
    let mut out = format!(
        "| arm | steps × batch | train s | img/s | {} |\n|---|---|---|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for r in rows {
        let cells: Vec<String> = names
            .iter()
            .map(|n| report::metric(r, n).map_or_else(|| "–".into(), pct))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} × {} | {:.1} ± {:.1} | {:.0} | {} |",
            r.label,
            r.steps,
            r.batch,
            r.seconds.mean,
            r.seconds.sd,
            r.images_per_s.mean,
            cells.join(" | ")
        );
    }
    out
}

/// The papers' claims, each with the measured difference on every plotted figure.
fn claims(rows: &[RowStats], list: &[Claim], figures: &[&str]) -> String {
    let find = |key: &str| rows.iter().find(|r| r.key == key);
    let mut out = format!(
        "| claim | paper | time ratio | {} |\n|---|---|---|{}\n",
        figures
            .iter()
            .map(|f| format!("Δ {f}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(figures.len())
    );
    for c in list {
        let (Some(a), Some(b)) = (find(c.row), find(c.against)) else {
            continue;
        };
        let cells: Vec<String> = figures
            .iter()
            .map(|f| match (report::metric(a, f), report::metric(b, f)) {
                (Some(x), Some(y)) => format!(
                    "{:+.1} ({})",
                    (x.mean - y.mean) * 100.0,
                    report::verdict(x, y)
                ),
                _ => "–".into(),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}× | {} |",
            c.what,
            c.paper,
            a.seconds.mean / b.seconds.mean.max(1e-9),
            cells.join(" | ")
        );
    }
    out
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Writes the page and its plots; returns the paths written.
pub(super) fn write(
    args: &FidelityArgs,
    suite: Suite,
    base: &RunSpec,
    session: &Session,
    rows: &[RowStats],
) -> anyhow::Result<Vec<String>> {
    let doc = suite.doc(args.doc.as_ref());
    let dir = doc.parent().unwrap_or(Path::new("."));
    let stem = doc
        .file_stem()
        .map_or_else(|| "fidelity".into(), |s| s.to_string_lossy().into_owned());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let plotted: Vec<String> = rows
        .first()
        .map(|r| {
            r.metrics
                .iter()
                .map(|m| m.0.clone())
                .filter(|n| !n.starts_with("R@"))
                .collect()
        })
        .unwrap_or_default();
    let mut written = Vec::new();
    let mut plots = String::new();
    for name in &plotted {
        let points: Vec<Point<'_>> = rows
            .iter()
            .filter_map(|r| {
                report::metric(r, name).map(|value| Point {
                    label: r.label,
                    seconds: r.seconds,
                    value,
                })
            })
            .collect();
        let file = format!("{stem}-{}.svg", name.replace([' ', '@', '→'], "-"));
        let what = if name.starts_with("probe ") {
            name.to_string()
        } else {
            format!("zero-shot {name}")
        };
        let svg = report::accuracy_vs_time_svg(
            &format!("{what} against training time (mean ± sd over seeds)"),
            &format!("{name} (%)"),
            &points,
        )?;
        let path = dir.join(&file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
        let _ = writeln!(plots, "![{name} against training time]({file})\n");
    }
    let headline: Vec<&str> = plotted.iter().map(String::as_str).collect();
    let page = page_text(args, suite, base, session, rows, &headline, &plots);
    std::fs::write(&doc, page).with_context(|| format!("writing {}", doc.display()))?;
    written.push(doc.display().to_string());
    Ok(written)
}

fn page_text(
    args: &FidelityArgs,
    suite: Suite,
    base: &RunSpec,
    session: &Session,
    rows: &[RowStats],
    headline: &[&str],
    plots: &str,
) -> String {
    let command: Vec<String> = std::env::args().collect();
    let m = &base.config.model;
    let t = &base.config.train;
    let mut p = format!("# {} (generated)\n\n", suite.title);
    p.push_str(
        "Written by `flipstream bench fidelity`; rerun the command below to regenerate \
         (`scripts/bench-fidelity.sh BINARY WORK_DIR` also prepares the dataset). Every \
         figure is the mean ± sample standard deviation over the seeds, on the validation split \
         (zero-shot over the label columns' whole vocabulary; the held-out rows are label \
         combinations that no training row has; `probe` columns are linear probes on the frozen \
         pooled image features, fitted on the train split). The claims table compares two rows: the \
         difference of means, called a difference only when it exceeds twice its standard \
         error. Results are reported as they come out, including where they disagree with the \
         paper; docs/training.md and docs/objectives.md discuss them.\n\n",
    );
    let _ = writeln!(p, "```\n{}\n```\n", command.join(" "));
    let _ = writeln!(
        p,
        "- machine: {}, {} CPU threads available; device {}\n\
         - versions: flipstream {}, tch 0.24 with libtorch from the PyTorch 2.11.0 wheel\n\
         - dataset: `{}`; seeds {:?}\n\
         - model: {} px, patch {} ({:?} embedding), ViT {}×{}, text {}×{} (context {}), embed {}\n\
         - recipe: batch B = {}, {} masked steps for the equal-epoch arms, {} unmasked tuning \
         steps, peak lr {:.2e}, warmup {}, weight decay {}\n",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        format!("{:?}", session.device).to_lowercase(),
        env!("CARGO_PKG_VERSION"),
        args.dataset,
        args.seeds,
        m.image_size,
        m.patch_size,
        m.patch_embed,
        m.vision_depth,
        m.vision_width,
        m.text_depth,
        m.text_width,
        m.context_length,
        m.embed_dim,
        t.batch_size,
        args.steps,
        args.tune_steps,
        t.peak_lr(),
        t.warmup_steps,
        t.weight_decay,
    );
    let _ = writeln!(
        p,
        "## Results (accuracy in %)\n\n{}\n## {}\n\n{}\n## Plots\n\n{}",
        table(rows),
        suite.claims_heading,
        claims(rows, suite.claims, headline),
        plots
    );
    p
}
