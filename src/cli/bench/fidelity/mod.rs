//! `flipstream bench fidelity`: does masking buy what FLIP says it buys, on data where the model
//! learns more than colour? Trains CLIP and FLIP arms ([`arms`]) for several seeds on one
//! dataset, evaluates zero-shot (seen and held-out label combinations) and retrieval, and writes a
//! Markdown page with the table, FLIP's claims against the measurements and SVG plots of accuracy
//! against training time ([`report`]). `--suite objectives` ([`suite`]) compares the objectives
//! instead (CLIP, FLIP, MAE+CLIP), each also judged by a linear probe. Heavy (tens of minutes on
//! a CPU): not part of `make test`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::Global;

#[cfg(feature = "train")]
mod arms;
#[cfg(feature = "train")]
mod page;
#[cfg(feature = "train")]
mod report;
#[cfg(feature = "train")]
mod suite;

/// Arguments of `flipstream bench fidelity`.
#[derive(Debug, Args)]
pub(crate) struct FidelityArgs {
    /// The dataset (path or URL) with a split view (`flipstream shard split`, ideally with
    /// --holdout-columns so that the compositional rows exist) and label columns.
    pub dataset: String,

    /// Folder for the runs (one per arm and seed) and results.json; an interrupted benchmark
    /// reuses the finished arms found there.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Model and recipe preset: tiny, small, b16 or l16.
    #[arg(long, default_value = "tiny")]
    pub preset: String,

    /// A run config file (TOML: preset, [model], [train], [run]) to start from instead of the
    /// preset; the arms then set mask ratio, batch, steps, seed and tuning.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Masked-phase steps of the equal-epoch arms (batch 2B runs half as many).
    #[arg(long, default_value_t = 600)]
    pub steps: u64,

    /// The batch B of the CLIP arm (default: the preset's or config's).
    #[arg(long)]
    pub batch: Option<usize>,

    /// Unmasked tuning steps after the FLIP 50 % and 75 % arms.
    #[arg(long, default_value_t = 60)]
    pub tune_steps: u64,

    /// Seeds, comma-separated (at least three for a standard deviation worth reading).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,

    /// Which comparison: `flip` (CLIP against FLIP's masking, tuning and batch arms) or
    /// `objectives` (CLIP, FLIP 50 % and MAE+CLIP side by side, every arm also linear-probed;
    /// CLIP and FLIP 50 % share their runs with the flip suite in the same --out).
    #[arg(long, default_value = "flip", value_parser = ["flip", "objectives"])]
    pub suite: String,

    /// Run only these arms of the objectives suite, comma-separated (e.g.
    /// clip,flip50,mae_clip50,mae_clip50-full) [default: all of them].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub arms: Option<Vec<String>>,

    /// Write the Markdown report here (its plots go next to it, named after it: FILE-STEM-*.svg)
    /// [default: docs/fidelity.md for the flip suite, docs/objectives-bench.md for objectives].
    #[arg(long, value_name = "FILE")]
    pub doc: Option<PathBuf>,

    #[command(flatten)]
    pub compute: crate::cli::train::ComputeArgs,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: FidelityArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "bench fidelity needs the training build; this binary was built with --no-default-features"
    )
}

#[cfg(feature = "train")]
pub(super) fn run(args: FidelityArgs, global: Global) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use flipstream_train::Preset;
    use flipstream_train::run::{RunSpec, Session};

    use crate::cli::train::train_error;

    if args.seeds.is_empty() {
        crate::usage_bail!("--seeds needs at least one seed");
    }
    if args.steps < 2 {
        crate::usage_bail!("--steps must be at least 2 (the batch-2B arm runs half as many)");
    }
    let device = args.compute.device()?;
    let mut base = match &args.config {
        Some(path) => RunSpec::from_file(path).map_err(train_error)?,
        None => RunSpec::preset(args.preset.parse::<Preset>().map_err(train_error)?),
    };
    base.run.dataset = args.dataset.clone();
    if let Some(b) = args.batch {
        base.config.train.batch_size = b;
    }
    let suite = suite::Suite::named(&args.suite);
    if let Some(names) = &args.arms {
        let known: Vec<&str> = suite.rows.iter().map(|r| r.arm).collect();
        if suite.name != "objectives" {
            crate::usage_bail!("--arms selects arms of --suite objectives");
        }
        if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
            crate::usage_bail!(
                "--arms: unknown arm {bad:?}: the objectives suite has {}",
                known.join(", ")
            );
        }
    }
    base.run.eval.probe |= suite.probe;
    base.validate().map_err(train_error)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating --out {}", args.out.display()))?;
    let session = Session {
        device,
        decode_threads: args.compute.decode_threads,
        stop_after: None,
        dist: flipstream_train::dist::DistSetup::single(),
        keep_checkpoints: None,
    };
    let results = run_all(&args, suite, &base, &session, global.quiet)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )
    .context("writing results.json")?;
    let rows = report::aggregate(&results, suite.rows);
    let written = page::write(&args, suite, &base, &session, &rows)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", page::table(&rows));
        println!("report: {}", written.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs every arm of every seed (reusing finished ones), with one progress line per run.
#[cfg(feature = "train")]
fn run_all(
    args: &FidelityArgs,
    suite: suite::Suite,
    base: &flipstream_train::run::RunSpec,
    session: &flipstream_train::run::Session,
    quiet: bool,
) -> anyhow::Result<Vec<arms::ArmResult>> {
    let batch = base.config.train.batch_size;
    let mut results = Vec::new();
    let mut tokenizer = None;
    for &seed in &args.seeds {
        let run = |arm: &arms::ArmSpec, tokenizer: &mut Option<PathBuf>| {
            let dir = args.out.join(arm.dir_name());
            let mut bar = ArmProgress::new(arm, quiet);
            let r = arms::run_arm(base, arm, &dir, tokenizer.clone(), session, &mut bar)?;
            bar.finish(&r);
            // Every later run uses the first run's tokenizer: same vocabulary, no retraining.
            tokenizer.get_or_insert_with(|| dir.join("tokenizer.json"));
            anyhow::Ok(r)
        };
        if suite.name == "objectives" {
            let model = &base.config.model;
            let clip_dir = args.out.join(format!("clip-seed{seed}"));
            let teacher = std::path::absolute(&clip_dir).unwrap_or(clip_dir);
            let arms =
                arms::objective_arms(seed, batch, args.steps, args.tune_steps, model, &teacher);
            let wanted = |a: &arms::ArmSpec| {
                args.arms
                    .as_ref()
                    .is_none_or(|names| names.contains(&a.name))
            };
            for arm in arms.into_iter().filter(wanted) {
                results.push(run(&arm, &mut tokenizer)?);
            }
            continue;
        }
        let first: Vec<arms::ArmResult> =
            arms::first_arms(seed, batch, args.steps, args.tune_steps)
                .iter()
                .map(|a| run(a, &mut tokenizer))
                .collect::<anyhow::Result<_>>()?;
        let flips: Vec<&arms::ArmResult> =
            first.iter().filter(|r| r.spec.mask_ratio > 0.0).collect();
        let later: Vec<arms::ArmResult> = arms::later_arms(&first[0], &flips)
            .iter()
            .map(|a| run(a, &mut tokenizer))
            .collect::<anyhow::Result<_>>()?;
        results.extend(first);
        results.extend(later);
    }
    Ok(results)
}

/// A progress bar for one arm's run on stderr, and a one-line result when it ends.
#[cfg(feature = "train")]
struct ArmProgress {
    bar: indicatif::ProgressBar,
    name: String,
    quiet: bool,
}

#[cfg(feature = "train")]
impl ArmProgress {
    fn new(arm: &arms::ArmSpec, quiet: bool) -> Self {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(arm.steps + arm.tune_steps)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>18} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(arm.dir_name());
        ArmProgress {
            bar,
            name: arm.dir_name(),
            quiet,
        }
    }

    fn finish(&self, r: &arms::ArmResult) {
        self.bar.finish_and_clear();
        if !self.quiet {
            let top1 = r.eval.zero_shot.as_ref().map_or(f64::NAN, |z| z.top1);
            eprintln!(
                "{}: {} steps × {} in {:.0} s ({:.0} img/s), zero-shot top-1 {:.1} %",
                self.name,
                r.spec.steps,
                r.spec.batch,
                r.train_seconds,
                r.images_per_s,
                top1 * 100.0
            );
        }
    }
}

#[cfg(feature = "train")]
impl flipstream_train::run::TrainObserver for ArmProgress {
    fn step(&mut self, r: &flipstream_train::run::StepRecord) {
        self.bar.set_position(r.step + 1);
        self.bar.set_message(format!("loss {:.3}", r.loss));
    }
    fn eval_started(&mut self, step: u64) {
        self.bar.set_message(format!("evaluating at step {step}"));
    }
}
