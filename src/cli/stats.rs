//! `flipstream stats URL`: the statistics report of a committed dataset (report.json, report.md,
//! report.html), made by reading only the small columns of every row group.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use flipstream_stats::{self as stats, StatsOptions, format};

use super::progress::Meter;
use super::{Global, runtime};
use crate::usage_bail;

/// Arguments of `flipstream stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The dataset: a local path, file://, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix
    /// (credentials and endpoints from the usual AWS_* / GOOGLE_* / AZURE_* variables).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Folder for report.json, report.md, report.html (and samples/ with thumbnails). Created if
    /// needed; existing report files in it are replaced. Default: ./stats-<dataset name>/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Also sample N rows spread evenly over the dataset and show their images as a thumbnail
    /// grid. Only then are images read, and only the pages holding those N rows.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sample_images: usize,

    /// Row groups (and files) read at once. Higher helps on object stores with high latency.
    #[arg(long, value_name = "C", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
}

/// Makes the report and writes it.
pub(super) fn run(args: StatsArgs, global: Global) -> anyhow::Result<ExitCode> {
    let out = match &args.out {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                usage_bail!("cannot create the output folder {}: {e}", dir.display());
            }
            dir.clone()
        }
        None => PathBuf::from(format!("stats-{}", stats::dataset_name(&args.url))),
    };
    let options = StatsOptions {
        concurrency: args.concurrency as usize,
        sample_images: args.sample_images,
        progress: Arc::new(Meter::new(global, "stats", "rows")),
        ..StatsOptions::default()
    };
    let output = runtime()?.block_on(stats::dataset_stats(&args.url, &options))?;
    let files = stats::write_report(&out, &output)?;
    let r = &output.report;
    if global.json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let t = &r.totals;
    println!(
        "dataset   {} ({} units, {} shards, {} row groups)",
        r.dataset.url,
        format::count(r.dataset.units),
        format::count(r.dataset.shards),
        format::count(r.dataset.row_groups)
    );
    println!(
        "items     {} read, {} accepted ({}), {} rejected ({})",
        format::count(t.read),
        format::count(t.accepted),
        format::percent(t.accepted_share),
        format::count(t.rejected),
        format::percent(t.rejected_share)
    );
    for x in r.rejections.iter().take(5) {
        println!("          {:>12} {}", format::count(x.count), x.reason);
    }
    println!(
        "stored    {} ({} per image)",
        format::bytes(t.stored_bytes as f64),
        t.mean_image_bytes.map_or("–".into(), format::bytes)
    );
    for sc in &r.scores {
        let q = sc.distribution.quantiles.as_ref();
        let v = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.3}"));
        println!(
            "scores    {}: {} {} rows, p5 {} · median {} · p95 {} ({} step {}){}",
            sc.name,
            sc.column,
            format::count(sc.distribution.count),
            v(q.map(|q| q.p05)),
            v(q.map(|q| q.p50)),
            v(q.map(|q| q.p95)),
            sc.checkpoint,
            sc.step,
            format::score_gaps(sc)
        );
    }
    if r.outliers.flagged_shards > 0 {
        println!(
            "outliers  {} shards (see the Shards section)",
            format::count(r.outliers.flagged_shards)
        );
    }
    for w in &r.warnings {
        println!("warning   {w}");
    }
    println!(
        "fetched   {} of {} ({}) in {}",
        format::bytes(r.scan.bytes_fetched as f64),
        format::bytes(r.scan.dataset_bytes as f64),
        format::percent(r.scan.fetched_share),
        format::seconds(r.scan.elapsed_s)
    );
    println!(
        "report    {} (also {}, {})",
        files.html.display(),
        files.markdown.display(),
        files.json.display()
    );
    Ok(ExitCode::SUCCESS)
}
