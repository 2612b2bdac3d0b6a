//! `flipstream bench stats`: rows per second of `flipstream stats` and the share of the dataset's
//! bytes it fetched, on a given dataset or on one it generates (random-byte images).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use flipstream_shard::{Dataset, StoreRoot, WriterSettings};
use flipstream_stats::{StatsOptions, compute_stats};
use flipstream_testkit::synthetic::{SyntheticSpec, write_synthetic};
use serde::Serialize;

use crate::cli::Global;
use crate::cli::runtime;
use crate::usage_bail;

/// Arguments of `flipstream bench stats`.
#[derive(Debug, Args)]
pub(crate) struct BenchStatsArgs {
    /// An existing dataset to measure. Without it, one is generated in --dir.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Where to generate (or find) the dataset when no URL is given.
    #[arg(long, value_name = "DIR", default_value = "bench-out/stats-dataset")]
    pub dir: PathBuf,

    /// Accepted rows of the generated dataset.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub rows: usize,

    /// Units of the generated dataset (rows are spread evenly).
    #[arg(long, value_name = "U", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub units: u32,

    /// Mean size of the generated (random, incompressible) images, bytes.
    #[arg(long, value_name = "B", default_value_t = 20_000)]
    pub image_bytes: usize,

    /// Timed runs (the report gives each and the median).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,

    /// Row groups read at once.
    #[arg(long, value_name = "C", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
}

#[derive(Debug, Serialize)]
struct Run {
    elapsed_s: f64,
    rows_per_s: f64,
    bytes_fetched: u64,
    fetched_share: f64,
}

#[derive(Debug, Serialize)]
struct StatsBench {
    benchmark: &'static str,
    url: String,
    rows: u64,
    shards: u64,
    row_groups: u64,
    dataset_bytes: u64,
    generated: bool,
    generate_s: Option<f64>,
    concurrency: u32,
    cpus: usize,
    runs: Vec<Run>,
    median_elapsed_s: f64,
    median_rows_per_s: f64,
    fetched_share: f64,
}

pub(super) fn run(args: BenchStatsArgs, global: Global) -> anyhow::Result<ExitCode> {
    if args.image_bytes < 4 {
        usage_bail!("--image-bytes must be at least 4");
    }
    let rt = runtime()?;
    let (url, generated, generate_s) = match &args.url {
        Some(u) => (u.clone(), false, None),
        None => {
            let url = args.dir.to_string_lossy().into_owned();
            let units = args.units as usize;
            let spec = SyntheticSpec {
                units,
                rows_per_unit: args.rows.div_ceil(units),
                rejections_per_unit: args.rows.div_ceil(units) / 20,
                mean_image_bytes: args.image_bytes,
                real_images: false,
                seed: 0,
                settings: WriterSettings::default(),
            };
            let existing = rt.block_on(Dataset::open(&url)).ok();
            match existing {
                Some(ds) if ds.rows() == (spec.rows_per_unit * units) as u64 => (url, false, None),
                Some(ds) => usage_bail!(
                    "{url} already holds a dataset of {} rows, not {}; remove it or pass another --dir",
                    ds.rows(),
                    spec.rows_per_unit * units
                ),
                None => {
                    if !global.quiet {
                        eprintln!(
                            "generating {} rows of ~{} B images in {url}",
                            spec.rows_per_unit * units,
                            args.image_bytes
                        );
                    }
                    let started = Instant::now();
                    let root = StoreRoot::parse(&url)?;
                    rt.block_on(write_synthetic(&root, &spec))?;
                    (url, true, Some(started.elapsed().as_secs_f64()))
                }
            }
        }
    };
    let ds = rt.block_on(Dataset::open(&url))?;
    let options = StatsOptions {
        concurrency: args.concurrency as usize,
        ..StatsOptions::default()
    };
    let mut runs = Vec::new();
    let mut last = None;
    for i in 0..args.repeat {
        let started = Instant::now();
        let out = rt.block_on(compute_stats(&ds, &options))?;
        let elapsed_s = started.elapsed().as_secs_f64();
        let rows = out.report.scan.rows;
        if !global.quiet {
            eprintln!("run {}: {rows} rows in {elapsed_s:.2} s", i + 1);
        }
        runs.push(Run {
            elapsed_s,
            rows_per_s: rows as f64 / elapsed_s,
            bytes_fetched: out.report.scan.bytes_fetched,
            fetched_share: out.report.scan.fetched_share,
        });
        last = Some(out.report);
    }
    let Some(report) = last else {
        usage_bail!("--repeat must be at least 1")
    };
    let mut times: Vec<f64> = runs.iter().map(|r| r.elapsed_s).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let result = StatsBench {
        benchmark: "stats",
        url,
        rows: report.scan.rows,
        shards: report.dataset.shards,
        row_groups: report.dataset.row_groups,
        dataset_bytes: report.totals.stored_bytes,
        generated,
        generate_s,
        concurrency: args.concurrency,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        median_elapsed_s: median,
        median_rows_per_s: report.scan.rows as f64 / median,
        fetched_share: report.scan.fetched_share,
        runs,
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(ExitCode::SUCCESS)
}
