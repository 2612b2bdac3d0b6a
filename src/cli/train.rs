//! `flipstream train`: train a FLIP/CLIP model on a dataset into a run directory (config,
//! tokenizer, metrics.jsonl, checkpoints), with a progress bar on stderr and a summary at the end;
//! `--resume` continues a run exactly where its last checkpoint left it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::Global;

/// Arguments of `flipstream train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Dataset URL or path (trained on the train side of its `flipstream shard split` view).
    /// With --resume it may be left out (the run's dataset is used).
    pub dataset: Option<String>,

    /// Run directory (path or object-store URL): config.toml, tokenizer.json, metrics.jsonl,
    /// checkpoints/.
    #[arg(long, value_name = "DIR")]
    pub run: String,

    /// Model and recipe preset: tiny (the default), small, b16 or l16. With --config, the file's
    /// `preset` key chooses it instead (giving both is an error).
    #[arg(long)]
    pub preset: Option<String>,

    /// A config file (TOML: preset, [model], [train], [run]); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Optimizer steps of the masked phase (train.total_steps).
    #[arg(long)]
    pub steps: Option<u64>,

    /// Samples per optimizer step (train.batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// Peak learning rate (sets train.base_lr = lr × 256 / batch size).
    #[arg(long)]
    pub lr: Option<f64>,

    /// Fraction of image patches dropped while training, in [0, 1) (train.mask_ratio).
    #[arg(long)]
    pub mask_ratio: Option<f64>,

    /// Linear warmup steps (train.warmup_steps).
    #[arg(long)]
    pub warmup: Option<u64>,

    /// Training objective (objective.kind): clip (CLIP, FLIP when masking), mae_clip (CLIP plus
    /// MAE's pixel reconstruction of the removed patches), cae_v2 (regress a frozen CLIP
    /// teacher's token features; needs --teacher) or mug (reconstruct the pixels and generate the
    /// caption from one masked encoding). A kind other than the config's takes its default
    /// settings (CAE v2 and MUG also their mask ratio); see docs/objectives.md.
    #[arg(long)]
    pub objective: Option<String>,

    /// CAE v2's teacher (objective.teacher): a CLIP/FLIP run directory (its latest checkpoint) or
    /// checkpoint folder, or an open_clip model folder as `open_clip:DIR` (docs/export.md), with
    /// this model's image and patch size.
    #[arg(long, value_name = "RUN_OR_DIR|open_clip:DIR")]
    pub teacher: Option<String>,

    /// Device: cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// Matmul precision: fp32 or bf16 (train.precision).
    #[arg(long)]
    pub precision: Option<String>,

    /// TF32 tensor cores for the fp32 matmuls on CUDA (on or off); no effect on the CPU or with
    /// bf16.
    #[arg(long, default_value = "on", value_name = "on|off", value_parser = ["on", "off"])]
    pub tf32: String,

    /// Seed of the weights, the masks and the data order (train.seed).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Evaluate on the validation split every N steps and at the end (0: never).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,

    /// Save a checkpoint every N steps (one is always saved at the end).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,

    /// Label columns naming the zero-shot class, comma-separated (default label_color,label_shape).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub label_columns: Option<Vec<String>>,

    /// A tokenizer.json to use; without it a BPE is trained on the training captions and stored
    /// in the run directory (with --init: the folder's tokenizer.json).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,

    /// Start from a trained model instead of a fresh one: `open_clip:DIR`, an open_clip folder
    /// (open_clip_config.json, weights as safetensors, optionally tokenizer.json; what
    /// `open_clip`'s `local-dir:` loads and `flipstream export --format open_clip` writes). The
    /// model architecture is the folder's ([model] settings are replaced); the objective's heads
    /// start fresh. Models flipstream cannot express exactly are refused with the reasons
    /// (docs/export.md).
    #[arg(long, value_name = "open_clip:DIR")]
    pub init: Option<String>,

    /// Train on every row instead of the train side of the split view. The validation rows are
    /// then trained on too, so this needs --eval-every 0 (and `flipstream eval` another dataset).
    #[arg(long)]
    pub all_data: bool,

    /// libtorch intra-op CPU threads (default: libtorch's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Loader decode threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,

    /// Keep only the newest N checkpoints, deleting older ones after each save (never the one
    /// checkpoints/latest.json names). Default: keep all.
    #[arg(long, value_name = "N")]
    pub keep_checkpoints: Option<usize>,

    /// Stop this session after N steps (a checkpoint is saved); continue with --resume.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<u64>,

    /// Continue the run in --run from its latest checkpoint, with its own config (only
    /// --eval-every and --checkpoint-every may change).
    #[arg(long)]
    pub resume: bool,

    /// Data-parallel on this machine: start N ranks of this command (as `torchrun
    /// --nproc-per-node N` would), each with its share of every batch, the cores shared out
    /// between them and one GPU each when there are GPUs. Under torchrun or Slurm's srun, leave
    /// it out: the ranks are read from their variables (docs/distributed.md).
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,

    /// c10d backend of a data-parallel run: gloo or nccl (default: nccl on CUDA, gloo on CPU).
    #[arg(long, value_name = "NAME")]
    pub dist_backend: Option<String>,

    /// Seconds a rank waits for the others (to join, in a collective, while rank 0 saves or
    /// evaluates) before it fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub dist_timeout: u64,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: TrainArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "train needs the training build; this binary was built with --no-default-features"
    )
}

/// Where a model runs and with how many threads: the flags `eval`, `score` and `bench fidelity`
/// share.
#[derive(Debug, Clone, Args)]
pub(crate) struct ComputeArgs {
    /// Device: cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// libtorch intra-op CPU threads (default: libtorch's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Loader decode threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
}

#[cfg(feature = "train")]
impl ComputeArgs {
    /// Sets libtorch's thread count and resolves the device ([`device_and_threads`]).
    pub(crate) fn device(&self) -> anyhow::Result<tch::Device> {
        device_and_threads(&self.device, self.threads)
    }
}

/// Maps trainer errors caused by the request to exit code 2.
#[cfg(feature = "train")]
pub(crate) fn train_error(e: flipstream_train::TrainError) -> anyhow::Error {
    if e.is_usage() {
        anyhow::Error::new(crate::cli::UsageError(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}

/// The folder of `--init open_clip:DIR` (the only source for now).
#[cfg(feature = "train")]
fn init_folder(value: &str) -> anyhow::Result<PathBuf> {
    match value.split_once(':') {
        Some(("open_clip", dir)) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => crate::usage_bail!(
            "--init {value}: expected open_clip:DIR (an open_clip model folder on this machine)"
        ),
    }
}

/// Sets libtorch's TF32 switch for CUDA (`on` / `off`); nothing on the CPU.
#[cfg(feature = "train")]
pub(crate) fn apply_tf32(device: tch::Device, setting: &str) -> anyhow::Result<()> {
    if matches!(device, tch::Device::Cuda(_)) {
        flipstream_train::device::set_tf32(setting == "on").map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Sets libtorch's thread count and resolves the device.
#[cfg(feature = "train")]
pub(crate) fn device_and_threads(
    device: &str,
    threads: Option<usize>,
) -> anyhow::Result<tch::Device> {
    use flipstream_train::device::DeviceSpec;
    if threads == Some(0) {
        crate::usage_bail!("--threads must be at least 1");
    }
    if let Some(n) = threads {
        tch::set_num_threads(n as i32);
    }
    match device.parse::<DeviceSpec>().and_then(DeviceSpec::resolve) {
        Ok(d) => Ok(d),
        Err(e) => crate::usage_bail!("--device: {e}"),
    }
}

#[cfg(feature = "train")]
mod imp {
    use std::time::Instant;

    use flipstream_train::dist::DistSetup;
    use flipstream_train::run::{
        EvalReport, Overrides, RunSpec, RunStart, Session, StepRecord, TrainObserver, TrainSummary,
    };
    use flipstream_train::{Preset, TrainError};
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    use super::{ExitCode, Global, TrainArgs, device_and_threads, train_error};
    use crate::cli::eval::print_eval;

    /// Progress bar and messages on stderr.
    struct Progress {
        bar: ProgressBar,
        quiet: bool,
        started: Instant,
    }

    impl TrainObserver for Progress {
        fn message(&mut self, text: &str) {
            if !self.quiet {
                self.bar.suspend(|| eprintln!("{text}"));
            }
        }
        fn started(&mut self, first: u64, total: u64) {
            self.bar.set_length(total);
            self.bar.set_position(first);
            self.bar.reset_eta();
            self.started = Instant::now();
        }
        fn step(&mut self, r: &StepRecord) {
            self.bar.set_position(r.step + 1);
            // The terms, when there is more than one: "loss 2.1 (contrastive 1.4, reconstruction 0.7)".
            let terms = if r.terms.len() > 1 {
                let parts: Vec<String> =
                    r.terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                format!(" ({})", parts.join(", "))
            } else {
                String::new()
            };
            let substituted = match r.substituted {
                0 => String::new(),
                n => format!("  {n} substituted"),
            };
            self.bar.set_message(format!(
                "loss {:.4}{terms}  {:.1} img/s  data wait {:.0} %  lr {:.2e}{substituted}",
                r.loss,
                r.images_per_s,
                r.data_wait_share * 100.0,
                r.lr
            ));
        }
        fn eval_started(&mut self, step: u64) {
            self.bar.set_message(format!("evaluating at step {step}"));
        }
        fn eval(&mut self, report: &EvalReport) {
            if !self.quiet {
                self.bar.suspend(|| eprintln!("{}", eval_line(report)));
            }
        }
        fn checkpoint(&mut self, _step: u64, _path: &str) {}
    }

    fn eval_line(r: &EvalReport) -> String {
        let mut s = format!("eval @ step {}: ", r.step);
        if let Some(z) = &r.zero_shot {
            s.push_str(&format!(
                "zero-shot top-1 {:.1} % (chance {:.1} %)",
                z.top1 * 100.0,
                z.chance_top1 * 100.0
            ));
            for c in &z.columns {
                s.push_str(&format!(", {} {:.1} %", c.column, c.accuracy * 100.0));
            }
            s.push_str("; ");
        }
        if let Some(z) = &r.compositional {
            s.push_str(&format!(
                "held-out combinations top-1 {:.1} %",
                z.top1 * 100.0
            ));
            for c in &z.columns {
                s.push_str(&format!(", {} {:.1} %", c.column, c.accuracy * 100.0));
            }
            s.push_str("; ");
        }
        for (name, value) in &r.validation_terms {
            s.push_str(&format!("{name} loss {value:.3}; "));
        }
        if let Some(p) = &r.probe {
            let parts: Vec<String> = p
                .columns
                .iter()
                .map(|c| format!("{} {:.1} %", c.column, c.accuracy * 100.0))
                .collect();
            s.push_str(&format!("linear probe {}; ", parts.join(", ")));
        }
        match &r.retrieval {
            Some(ret) => s.push_str(&format!(
                "retrieval R@1 i→t {:.1} %, t→i {:.1} % ({} samples)",
                ret.image_to_text.r1 * 100.0,
                ret.text_to_image.r1 * 100.0,
                r.samples
            )),
            None => s.push_str(&format!("{} samples", r.samples)),
        }
        s
    }

    fn overrides(args: &TrainArgs) -> anyhow::Result<Overrides> {
        let precision = match &args.precision {
            None => None,
            Some(p) => match p.parse() {
                Ok(p) => Some(p),
                Err(e) => crate::usage_bail!("--precision: {e}"),
            },
        };
        let objective = match &args.objective {
            None => None,
            Some(o) => match o.parse() {
                Ok(o) => Some(o),
                Err(e) => crate::usage_bail!("--objective: {e}"),
            },
        };
        if let Some(cols) = &args.label_columns
            && cols.iter().any(|c| c.trim().is_empty())
        {
            crate::usage_bail!("--label-columns: empty column name");
        }
        Ok(Overrides {
            steps: args.steps,
            batch_size: args.batch_size,
            lr: args.lr,
            mask_ratio: args.mask_ratio,
            objective,
            teacher: args.teacher.clone(),
            warmup: args.warmup,
            precision,
            seed: args.seed,
            eval_every: args.eval_every,
            checkpoint_every: args.checkpoint_every,
            split: args
                .all_data
                .then_some(flipstream_train::run::DataSplit::All),
            label_columns: args.label_columns.clone(),
        })
    }

    /// This process's place in a data-parallel run, from the launcher's variables and the flags.
    fn dist_setup(args: &TrainArgs) -> anyhow::Result<DistSetup> {
        let mut setup = DistSetup::from_env().map_err(train_error)?;
        if let Some(b) = &args.dist_backend {
            setup.backend = Some(match b.parse() {
                Ok(b) => b,
                Err(e) => crate::usage_bail!("--dist-backend: {e}"),
            });
        }
        if args.dist_timeout == 0 {
            crate::usage_bail!("--dist-timeout must be at least 1 second");
        }
        setup.timeout = std::time::Duration::from_secs(args.dist_timeout);
        Ok(setup)
    }

    pub(crate) fn run(args: TrainArgs, global: Global) -> anyhow::Result<ExitCode> {
        if args.lr.is_some_and(|lr| !(lr.is_finite() && lr > 0.0)) {
            crate::usage_bail!("--lr must be a positive number");
        }
        if args.keep_checkpoints == Some(0) {
            crate::usage_bail!("--keep-checkpoints must be at least 1 (leave it out to keep all)");
        }
        let overrides = overrides(&args)?;
        let dist = dist_setup(&args)?;
        let share = ["--threads", "--decode-threads"];
        if let Some(code) = crate::cli::launch::launch_if_asked(args.nproc, &dist, &share)? {
            return Ok(code);
        }
        let device = device_and_threads(&args.device, args.threads)?;
        let device = crate::cli::launch::rank_device(device, &args.device, &dist)?;
        super::apply_tf32(device, &args.tf32)?;
        // Only rank 0 reports; the others' messages would repeat it.
        let global = Global {
            quiet: global.quiet || dist.rank != 0,
            json: global.json,
        };
        let is_main = dist.rank == 0;
        let start = if args.resume {
            if args.config.is_some() || args.tokenizer.is_some() || args.init.is_some() {
                crate::usage_bail!(
                    "--resume continues the run with its own config, tokenizer and weights: leave \
                     out --config, --tokenizer and --init"
                );
            }
            RunStart::Resume {
                overrides,
                dataset: args.dataset.clone(),
            }
        } else {
            let Some(dataset) = args.dataset.clone() else {
                crate::usage_bail!("give the DATASET to train on (or --resume to continue a run)");
            };
            let mut spec = match (&args.config, &args.preset) {
                (Some(path), Some(preset)) => crate::usage_bail!(
                    "--preset {preset} and --config {} both choose the preset: write \
                     `preset = \"{preset}\"` into the config file, or leave out --preset",
                    path.display()
                ),
                (Some(path), None) => RunSpec::from_file(path).map_err(train_error)?,
                (None, preset) => RunSpec::preset(match preset {
                    Some(name) => name.parse::<Preset>().map_err(train_error)?,
                    None => Preset::default(),
                }),
            };
            spec.apply(&overrides);
            if args.teacher.is_some()
                && spec.config.objective.kind() != flipstream_train::ObjectiveKind::CaeV2
            {
                crate::usage_bail!(
                    "--teacher is a setting of objective cae_v2, but this run's objective is {}: \
                     add --objective cae_v2 or leave out --teacher",
                    spec.config.objective.kind()
                );
            }
            spec.run.dataset = dataset;
            spec.validate().map_err(train_error)?;
            RunStart::New {
                spec: Box::new(spec),
                tokenizer: args.tokenizer.clone(),
                init: args.init.as_deref().map(super::init_folder).transpose()?,
            }
        };
        let session = Session {
            device,
            decode_threads: args.decode_threads,
            stop_after: args.stop_after,
            dist,
            keep_checkpoints: args.keep_checkpoints,
        };
        let bar = ProgressBar::new(0);
        if global.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} step {pos}/{len} [{bar:25}] {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        let mut progress = Progress {
            bar,
            quiet: global.quiet,
            started: Instant::now(),
        };
        let result = flipstream_train::run::train(&args.run, start, &session, &mut progress);
        progress.bar.finish_and_clear();
        let summary = result.map_err(|e| {
            let hint = matches!(e, TrainError::NonFinite { .. });
            let err = train_error(e);
            if hint {
                err.context(format!("training in {} diverged", args.run))
            } else {
                err
            }
        })?;
        if is_main {
            print_summary(&summary, global)?;
        }
        Ok(ExitCode::SUCCESS)
    }

    fn print_summary(s: &TrainSummary, global: Global) -> anyhow::Result<()> {
        if global.json {
            crate::cli::loader::write_stdout(&crate::cli::json_summary(s)?)?;
            return Ok(());
        }
        let loss = s
            .final_loss_avg10
            .map_or_else(|| "-".to_string(), |l| format!("{l:.4}"));
        let mut text = format!(
            "{} {} steps ({} → {}) of {} on {}: {} samples seen\n\
             final loss {loss} (mean of the last 10 steps), {:.1} images/s, data wait {:.1} % of step time, {:.1} s\n\
             checkpoint: {}\nmetrics:    {}\nconfig:     {}",
            if s.finished {
                "trained"
            } else {
                "stopped after"
            },
            s.steps - s.first_step,
            s.first_step,
            s.steps,
            s.total_steps,
            s.device,
            s.samples_seen,
            s.images_per_s,
            s.data_wait_share * 100.0,
            s.seconds,
            s.checkpoint.as_deref().unwrap_or("-"),
            s.metrics,
            s.config,
        );
        if s.samples_substituted > 0 {
            text.push_str(&format!(
                "\nnote: {} samples were substitutes for samples the loader could not read (check the \
                 dataset with flipstream shard verify {})",
                s.samples_substituted, s.dataset
            ));
        }
        if !s.finished {
            text.push_str(&format!(
                "\ncontinue with: flipstream train --run {} --resume",
                s.run_dir
            ));
        }
        crate::cli::loader::write_stdout(&text)?;
        if let Some(e) = &s.last_eval {
            print_eval(e, false)?;
        }
        Ok(())
    }
}

#[cfg(feature = "train")]
pub(super) use imp::run;
