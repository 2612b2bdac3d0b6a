//! `flipstream bench synth`: the synthetic-pair generator against its floor, in one run. The
//! full run is `flipstream synth` (render, encode, write the layout and the sidecars) into a
//! scratch folder; the breakdown renders the same items in memory on every thread and times each
//! stage of each item — scene and caption, drawing the pixels, encoding the file — per output
//! format. The floor is the encoders alone: the rate if drawing, captions and writing cost
//! nothing, since every item has to be encoded by the same libraries (libjpeg-turbo, libwebp,
//! png, gif) whatever draws it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use flipstream_synth::{
    DirtMix, FileFormat, Overwrite, StageTimes, SynthConfig, SynthPair, SynthPlan,
};
use rayon::prelude::*;
use serde::Serialize;

use super::timing::{Measure, measure_prepared};
use crate::cli::synth::{LayoutArg, cli_error};
use crate::cli::{Global, UsageError};

/// Arguments of `flipstream bench synth`.
#[derive(Debug, Args)]
pub(crate) struct BenchSynthArgs {
    /// Pairs to generate in the full run.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub count: u64,

    /// Pairs of the in-memory breakdown by stage and format: the first N of the same dataset
    /// (at most --count).
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    pub profile: u64,

    /// On-disk layout of the full run.
    #[arg(long, value_enum, default_value_t = LayoutArg::Webdataset, value_name = "L")]
    pub layout: LayoutArg,

    /// Planted dirt, as `flipstream synth --dirt` (`off`, `default`, `kind=fraction,…`).
    #[arg(long, default_value = "off", value_name = "SPEC")]
    pub dirt: String,

    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Timed repetitions of the full run; the median is reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// Folder for the scratch output (default: the system temporary folder); removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Time per item in one stage, averaged over the profiled items.
#[derive(Debug, Clone, Serialize)]
struct Stage {
    name: &'static str,
    ms_per_pair: f64,
    /// Share of the rendering time (scene + raster + encode).
    share: f64,
}

/// Encoding cost of one output format.
#[derive(Debug, Clone, Serialize)]
struct FormatCost {
    format: &'static str,
    pairs: u64,
    megapixels: f64,
    encode_ms_per_pair: f64,
    encode_ns_per_pixel: f64,
    /// Share of all encoding time.
    share_of_encode: f64,
}

#[derive(Debug, Serialize)]
struct SynthBench {
    benchmark: &'static str,
    threads: usize,
    layout: &'static str,
    dirt: String,
    /// The full run: `flipstream synth` into a scratch folder.
    generate: Measure,
    output_bytes: u64,
    /// The in-memory breakdown.
    profiled_pairs: u64,
    mean_megapixels: f64,
    stages: Vec<Stage>,
    formats: Vec<FormatCost>,
    /// Pairs/s if only encoding cost anything, on the same threads.
    encode_floor_pairs_per_s: f64,
    /// Full-run pairs/s ÷ the encode floor (1.0 = nothing but encoding).
    generate_vs_encode_floor: f64,
}

/// Sums of [`StageTimes`] over items.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    pairs: u64,
    scene: Duration,
    raster: Duration,
    encode: Duration,
    pixels: u64,
}

impl From<&StageTimes> for Totals {
    fn from(t: &StageTimes) -> Totals {
        Totals {
            pairs: 1,
            scene: t.scene,
            raster: t.raster,
            encode: t.encode,
            pixels: t.pixels,
        }
    }
}

impl Totals {
    fn merge(mut self, o: Totals) -> Totals {
        self.pairs += o.pairs;
        self.scene += o.scene;
        self.raster += o.raster;
        self.encode += o.encode;
        self.pixels += o.pixels;
        self
    }
}

/// The output format of a pair, WebP split into lossy and lossless (they cost very differently).
fn format_label(pair: &SynthPair) -> &'static str {
    match (pair.format, pair.quality) {
        (FileFormat::Webp, Some(_)) => "webp lossy",
        (FileFormat::Webp, None) => "webp lossless",
        (format, _) => format.as_str(),
    }
}

/// Removes the scratch output folder when dropped, also when a run fails or panics.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = remove_scratch(self.0);
    }
}

/// Removes the scratch output of an earlier run, if any.
fn remove_scratch(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("removing {}", dir.display())))
        }
        _ => Ok(()),
    }
}

/// Renders items `0..n` on every thread and sums their stage times per output format.
fn profile(plan: &SynthPlan, n: u64) -> anyhow::Result<BTreeMap<&'static str, Totals>> {
    let timed: Vec<(&'static str, StageTimes)> = (0..n)
        .into_par_iter()
        .map(|i| {
            plan.render_pair_timed(i)
                .map(|(pair, times)| (format_label(&pair), times))
        })
        .collect::<Result<_, _>>()?;
    let mut by_format: BTreeMap<&'static str, Totals> = BTreeMap::new();
    for (format, times) in &timed {
        let entry = by_format.entry(format).or_default();
        *entry = entry.merge(times.into());
    }
    Ok(by_format)
}

/// Runs `flipstream bench synth`.
pub(super) fn run(args: BenchSynthArgs, global: Global) -> anyhow::Result<ExitCode> {
    if args.repeat == 0 || args.count == 0 || args.profile == 0 {
        return Err(UsageError("--count, --profile and --repeat must be at least 1".into()).into());
    }
    let dirt: DirtMix = args
        .dirt
        .parse()
        .map_err(|e: flipstream_synth::SynthError| UsageError(format!("--dirt: {e}")))?;
    let config = SynthConfig {
        count: args.count,
        layout: args.layout.into(),
        dirt,
        ..SynthConfig::default()
    };
    config.validate().map_err(cli_error)?;
    crate::cli::init_rayon(args.threads)?;
    let threads = rayon::current_num_threads();
    let scratch = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("flipstream-bench-synth-{}", std::process::id()));
    if !global.quiet {
        eprintln!(
            "synth bench: {} pairs into {} ({threads} thread(s)), then {} in memory",
            args.count,
            scratch.display(),
            args.profile.min(args.count)
        );
    }
    let mut output_bytes = 0;
    let generate = {
        let _cleanup = RemoveOnDrop(&scratch);
        measure_prepared(
            "flipstream synth (render, encode, write)",
            args.repeat,
            // each run writes a fresh folder; removing the last one is not timed
            || remove_scratch(&scratch),
            || {
                let summary = flipstream_synth::generate(&config, &scratch, Overwrite::Refuse, &())
                    .map_err(cli_error)?;
                output_bytes = summary.total_bytes;
                Ok(summary.items as usize)
            },
        )?
    };

    let plan = SynthPlan::new(&config)?;
    let by_format = profile(&plan, args.profile.min(args.count))?;
    let all = by_format
        .values()
        .fold(Totals::default(), |a, &t| a.merge(t));
    let pairs = all.pairs.max(1) as f64;
    // Durations are never all zero on a real clock; the floor keeps a zero from becoming NaN.
    let rendering = (all.scene + all.raster + all.encode)
        .as_secs_f64()
        .max(f64::MIN_POSITIVE);
    let encode_s = all.encode.as_secs_f64().max(f64::MIN_POSITIVE);
    let stage = |name, d: Duration| Stage {
        name,
        ms_per_pair: d.as_secs_f64() * 1e3 / pairs,
        share: d.as_secs_f64() / rendering,
    };
    let stages = vec![
        stage("scene + caption", all.scene),
        stage("raster (draw pixels)", all.raster),
        stage("encode", all.encode),
    ];
    let formats = by_format
        .iter()
        .map(|(&format, t)| FormatCost {
            format,
            pairs: t.pairs,
            megapixels: t.pixels as f64 / 1e6,
            encode_ms_per_pair: t.encode.as_secs_f64() * 1e3 / t.pairs.max(1) as f64,
            encode_ns_per_pixel: t.encode.as_secs_f64() * 1e9 / t.pixels.max(1) as f64,
            share_of_encode: t.encode.as_secs_f64() / encode_s,
        })
        .collect();
    let encode_floor_pairs_per_s = threads as f64 * pairs / encode_s;
    let report = SynthBench {
        benchmark: "synth",
        threads,
        layout: config.layout.as_str(),
        dirt: args.dirt,
        generate_vs_encode_floor: generate.items_per_s / encode_floor_pairs_per_s,
        generate,
        output_bytes,
        profiled_pairs: all.pairs,
        mean_megapixels: all.pixels as f64 / 1e6 / pairs,
        stages,
        formats,
        encode_floor_pairs_per_s,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &SynthBench) {
    let g = &r.generate;
    println!(
        "{}: {} pairs ({}, dirt {}), {:.1} MB, {} thread(s)",
        g.name,
        g.items,
        r.layout,
        r.dirt,
        r.output_bytes as f64 / 1e6,
        r.threads
    );
    println!(
        "  {:.2} s wall, {:.2} CPU-s: {:.0} pairs/s, {:.2} CPU-ms per pair",
        g.median_wall_s,
        g.median_cpu_s,
        g.items_per_s,
        g.median_cpu_s * 1e3 / g.items.max(1) as f64
    );
    println!(
        "breakdown of {} pairs in memory (mean {:.3} MP):",
        r.profiled_pairs, r.mean_megapixels
    );
    for s in &r.stages {
        println!(
            "  {:<22} {:>7.3} ms/pair {:>6.1} %",
            s.name,
            s.ms_per_pair,
            s.share * 100.0
        );
    }
    println!(
        "  {:<14} {:>7} {:>9} {:>10} {:>10} {:>9}",
        "encode", "pairs", "MP", "ms/pair", "ns/pixel", "share"
    );
    for f in &r.formats {
        println!(
            "  {:<14} {:>7} {:>9.1} {:>10.3} {:>10.2} {:>8.1} %",
            f.format,
            f.pairs,
            f.megapixels,
            f.encode_ms_per_pair,
            f.encode_ns_per_pixel,
            f.share_of_encode * 100.0
        );
    }
    println!(
        "encode floor: {:.0} pairs/s; synth / floor: {:.2}",
        r.encode_floor_pairs_per_s, r.generate_vs_encode_floor
    );
}
