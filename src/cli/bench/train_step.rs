//! `flipstream bench train-step`: times full training steps (forward, loss, backward, AdamW) of
//! the FLIP/CLIP model on random data, per mask ratio, in one run; `scripts/bench-openclip.sh`
//! measures open_clip the same way for comparison (see docs/benchmarks.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::Global;

/// Arguments of `flipstream bench train-step`.
#[derive(Debug, Args)]
pub(crate) struct TrainStepArgs {
    /// Model preset: tiny, small, b16 or l16.
    #[arg(long, default_value = "small")]
    pub preset: String,

    /// A config file (TOML); its [model] table replaces the preset's architecture and its
    /// [objective] table the objective.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Objective whose steps are timed: clip, mae_clip, cae_v2 or mug (with its default settings
    /// for the model; cae_v2 with a freshly initialised CLIP teacher unless the config names one)
    /// [default: the config's, else clip]. All but clip need mask ratios above 0.
    #[arg(long)]
    pub objective: Option<String>,

    /// Images (image-text pairs) per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,

    /// Mask ratios to measure, comma-separated, each in [0, 1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.5,0.75",
        value_name = "RATIOS"
    )]
    pub mask: Vec<f64>,

    /// Timed steps per mask ratio; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,

    /// Untimed steps per mask ratio before timing (allocator and kernel warm-up).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,

    /// libtorch intra-op CPU threads (default: libtorch's choice, usually one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Device: cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// Matmul precision: fp32, or bf16 (bfloat16 matmuls, float32 weights and loss).
    #[arg(long, default_value = "fp32")]
    pub precision: String,

    /// TF32 tensor cores for the fp32 matmuls on CUDA (on or off).
    #[arg(long, default_value = "on", value_name = "on|off", value_parser = ["on", "off"])]
    pub tf32: String,

    /// Seed of the weights, the random batch and the masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// The device's peak TFLOP/s for the chosen precision, to report MFU (e.g. 989 for an H100
    /// SXM in bf16); with several ranks, the peak of one device.
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,

    /// Data-parallel: start N ranks on this machine that share each --batch (the global batch),
    /// as `flipstream train --nproc` does, and report the time spent in collectives. Under
    /// torchrun or srun, leave it out (docs/distributed.md).
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: TrainStepArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "bench train-step needs the training build; this binary was built with --no-default-features"
    )
}

#[cfg(feature = "train")]
pub(super) fn run(args: TrainStepArgs, global: Global) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use flipstream_train::bench::run_train_step_bench;
    use flipstream_train::device::DeviceSpec;
    use flipstream_train::dist::DistSetup;

    use crate::cli::train::train_error;

    let precision = check_args(&args)?;
    let dist = DistSetup::from_env().map_err(train_error)?;
    if let Some(code) = crate::cli::launch::launch_if_asked(args.nproc, &dist, &["--threads"])? {
        return Ok(code);
    }
    let device = match args
        .device
        .parse::<DeviceSpec>()
        .and_then(DeviceSpec::resolve)
    {
        Ok(d) => crate::cli::launch::rank_device(d, &args.device, &dist)?,
        Err(e) => crate::usage_bail!("--device: {e}"),
    };
    crate::cli::train::apply_tf32(device, &args.tf32)?;
    // Only rank 0 reports.
    let is_main = dist.rank == 0;
    let global = Global {
        quiet: global.quiet || !is_main,
        json: global.json,
    };
    let opts = bench_options(&args, precision, device, dist)?;
    let bar = step_bar(&args, global);
    let mut on_step = |p: flipstream_train::bench::BenchProgress| {
        bar.inc(1);
        bar.set_message(format!(
            "mask {:.2}: step {}/{} {:.3} s",
            p.mask_ratio, p.done, p.total, p.seconds
        ));
    };
    let report = run_train_step_bench(&opts, &mut on_step)
        .map_err(train_error)
        .context("train-step benchmark")?;
    bar.finish_and_clear();
    if !is_main {
        return Ok(ExitCode::SUCCESS);
    }
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &args);
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the flags that need no model; the numeric precision asked for.
#[cfg(feature = "train")]
fn check_args(args: &TrainStepArgs) -> anyhow::Result<flipstream_train::Precision> {
    if args.steps == 0 {
        crate::usage_bail!("--steps must be at least 1");
    }
    if args.batch == 0 {
        crate::usage_bail!("--batch must be at least 1");
    }
    if args.threads == Some(0) {
        crate::usage_bail!("--threads must be at least 1");
    }
    if let Some(r) = args.mask.iter().find(|r| !(0.0..1.0).contains(*r)) {
        crate::usage_bail!("--mask {r} is outside [0, 1)");
    }
    if args
        .peak_tflops
        .is_some_and(|p| !(p.is_finite() && p > 0.0))
    {
        crate::usage_bail!("--peak-tflops must be a positive number");
    }
    match args.precision.parse() {
        Ok(p) => Ok(p),
        Err(e) => crate::usage_bail!("--precision: {e}"),
    }
}

/// The model (preset or `--config`), objective and measuring settings of the run.
#[cfg(feature = "train")]
fn bench_options(
    args: &TrainStepArgs,
    precision: flipstream_train::Precision,
    device: tch::Device,
    dist: flipstream_train::dist::DistSetup,
) -> anyhow::Result<flipstream_train::bench::StepBenchOptions> {
    use flipstream_train::bench::StepBenchOptions;
    use flipstream_train::{ObjectiveConfig, ObjectiveKind, Preset, RunConfig, TrainError};

    use crate::cli::UsageError;
    use crate::cli::train::train_error;

    let (model_name, config) = match &args.config {
        Some(path) => (
            path.display().to_string(),
            RunConfig::from_file(path).map_err(|e| match e {
                // an unreadable --config is the caller's to fix here (exit 2)
                TrainError::Io { .. } => anyhow::Error::new(UsageError(e.to_string())),
                e => train_error(e),
            })?,
        ),
        None => {
            let preset: Preset = args.preset.parse().map_err(train_error)?;
            (preset.name().to_string(), preset.config())
        }
    };
    let objective = match &args.objective {
        None => config.objective,
        Some(name) => match name.parse::<ObjectiveKind>() {
            Ok(kind) if kind == config.objective.kind() => config.objective,
            Ok(kind) => ObjectiveConfig::for_kind(kind, &config.model),
            Err(e) => crate::usage_bail!("--objective: {e}"),
        },
    };
    Ok(StepBenchOptions {
        model_name,
        model: config.model,
        objective,
        batch: args.batch,
        mask_ratios: args.mask.clone(),
        steps: args.steps,
        warmup: args.warmup,
        threads: args.threads,
        device,
        precision,
        seed: args.seed,
        peak_tflops: args.peak_tflops,
        dist,
    })
}

/// The per-step progress bar (hidden with `-q` and on ranks other than 0).
#[cfg(feature = "train")]
fn step_bar(args: &TrainStepArgs, global: Global) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};

    let total = ((args.steps + args.warmup) * args.mask.len()) as u64;
    let bar = if global.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} train-step [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// The human table: one row per mask ratio.
#[cfg(feature = "train")]
fn print_report(report: &flipstream_train::bench::StepBenchReport, args: &TrainStepArgs) {
    let on_cuda = report.device.starts_with("cuda");
    println!(
        "train-step: {}, objective {} ({:.1} M parameters), batch {}{}, {}, {} thread(s), {}, median of {} step(s) after {} warm-up",
        report.model_name,
        report.objective.kind(),
        report.parameters as f64 / 1e6,
        report.batch,
        if report.ranks > 1 {
            format!(" over {} ranks", report.ranks)
        } else {
            String::new()
        },
        report.device,
        report.threads,
        report.precision,
        report.steps,
        report.warmup
    );
    let mut header = format!(
        "{:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "mask", "kept", "median s", "min s", "max s", "images/s", "speedup", "TFLOP/s"
    );
    if on_cuda || report.results.iter().any(|r| r.mfu.is_some()) {
        header.push_str(&format!(" {:>6}", "MFU"));
    }
    if report.ranks > 1 {
        header.push_str(&format!(" {:>8} {:>6}", "comm s", "comm"));
    }
    println!("{header}");
    for r in &report.results {
        let speedup = r
            .speedup_vs_unmasked
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}x"));
        let mut line = format!(
            "{:>5.2} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>8} {:>9.3}",
            r.mask_ratio,
            r.kept_patches,
            r.median_s,
            r.min_s,
            r.max_s,
            r.images_per_s,
            speedup,
            r.achieved_tflops
        );
        if on_cuda || r.mfu.is_some() {
            line.push_str(&r.mfu.map_or_else(
                || format!(" {:>6}", "-"),
                |m| format!(" {:>5.1}%", m * 100.0),
            ));
        }
        if let (Some(c), Some(share)) = (r.comm_median_s, r.comm_share) {
            line.push_str(&format!(" {c:>8.3} {:>5.1}%", share * 100.0));
        }
        println!("{line}");
    }
    if on_cuda && args.peak_tflops.is_none() {
        eprintln!(
            "note: pass --peak-tflops (the GPU's peak for {}) to get MFU",
            report.precision
        );
    }
}
