//! `flipstream eval`: zero-shot classification (prompt templates over the classes named by label
//! columns) and image↔text retrieval recall@1/5/10 of a run's checkpoint on the validation split
//! of a dataset, with every patch. A table on stdout, or `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::Global;

/// Arguments of `flipstream eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// Dataset URL or path (default: the run's dataset); evaluated on its validation split.
    pub dataset: Option<String>,

    /// Run directory (path or object-store URL) made by `flipstream train`.
    #[arg(long, value_name = "DIR")]
    pub run: String,

    /// Checkpoint to evaluate: a step (`400`), a folder name (`step-00000400`) or a path relative
    /// to the run directory [default: the latest].
    #[arg(long, value_name = "STEP|NAME")]
    pub checkpoint: Option<String>,

    /// Label columns naming the zero-shot class, comma-separated [default: the run's, normally
    /// label_color,label_shape]. Given explicitly, a dataset without them is an error.
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub label_columns: Option<Vec<String>>,

    /// How a class is named from its labels, e.g. "{label_color} {label_shape}" [default: the
    /// values joined by spaces].
    #[arg(long, value_name = "FORMAT")]
    pub class_format: Option<String>,

    /// Prompt templates, one per line with `{}` for the class name [default: five CLIP prompts
    /// such as "a photo of a {}."].
    #[arg(long, value_name = "FILE")]
    pub templates: Option<PathBuf>,

    /// Evaluate at most this many validation samples (0: all) [default: the run's, 2000].
    #[arg(long)]
    pub max_samples: Option<usize>,

    /// Remove this fraction of image patches at inference, as FLIP's Table 1d compares (0: every
    /// patch) [default: the run's run.eval.mask_ratio, normally 0].
    #[arg(long, value_name = "R")]
    pub mask_ratio: Option<f64>,

    /// Also fit a linear probe per label column on the frozen pooled image features of the
    /// dataset's train split and score it on the validation samples (run.eval.probe).
    #[arg(long)]
    pub probe: bool,

    /// Train-split samples the probe is fitted on (0: all) [default: the run's, 5000].
    #[arg(long, value_name = "N")]
    pub probe_samples: Option<usize>,

    #[command(flatten)]
    pub compute: crate::cli::train::ComputeArgs,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: EvalArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "eval needs the training build; this binary was built with --no-default-features"
    )
}

/// Table lines of one zero-shot report; `what` says which samples it scores.
#[cfg(feature = "train")]
fn zero_shot_lines(lines: &mut Vec<String>, z: &flipstream_train::run::ZeroShotReport, what: &str) {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    lines.push(format!(
        "zero-shot over {} classes ({}; {} templates), {what}: {} samples",
        z.classes,
        z.label_columns.join(" × "),
        z.templates,
        z.samples
    ));
    lines.push(format!("  {:<22} {:>8} {:>8}", "", "accuracy", "chance"));
    lines.push(format!(
        "  {:<22} {:>8} {:>8}",
        "class top-1",
        pct(z.top1),
        pct(z.chance_top1)
    ));
    lines.push(format!(
        "  {:<22} {:>8} {:>8}",
        "class top-5",
        pct(z.top5),
        pct((5.0 * z.chance_top1).min(1.0))
    ));
    for c in &z.columns {
        lines.push(format!(
            "  {:<22} {:>8} {:>8}",
            c.column,
            pct(c.accuracy),
            pct(c.chance)
        ));
    }
}

/// Table lines of the retrieval report.
#[cfg(feature = "train")]
fn retrieval_lines(lines: &mut Vec<String>, ret: &flipstream_train::run::RetrievalReport) {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    lines.push(format!(
        "retrieval among {} pairs (R@1 chance {})",
        ret.samples,
        pct(ret.chance_r1)
    ));
    lines.push(format!(
        "  {:<22} {:>8} {:>8} {:>8}",
        "", "R@1", "R@5", "R@10"
    ));
    for (name, rc) in [
        ("image → text", &ret.image_to_text),
        ("text → image", &ret.text_to_image),
    ] {
        lines.push(format!(
            "  {:<22} {:>8} {:>8} {:>8}",
            name,
            pct(rc.r1),
            pct(rc.r5),
            pct(rc.r10)
        ));
    }
}

/// Prints an evaluation as a small table (or JSON).
#[cfg(feature = "train")]
pub(crate) fn print_eval(r: &flipstream_train::run::EvalReport, json: bool) -> anyhow::Result<()> {
    use crate::cli::loader::write_stdout;
    if json {
        return write_stdout(&crate::cli::json_summary(r)?);
    }
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let masked = if r.mask_ratio > 0.0 {
        format!(", {:.0} % of patches removed", r.mask_ratio * 100.0)
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "evaluation at step {} on {} validation samples ({:.1} s{masked})",
        r.step, r.samples, r.seconds
    )];
    match &r.zero_shot {
        Some(z) => {
            let what = if r.compositional.is_some() {
                "label combinations seen in training"
            } else {
                "validation samples"
            };
            zero_shot_lines(&mut lines, z, what);
        }
        None if r.retrieval.is_none() => {
            lines.push("zero-shot and retrieval: none (the objective trains no text tower)".into())
        }
        None => lines.push("zero-shot: no label columns (retrieval only)".into()),
    }
    if let Some(z) = &r.compositional {
        zero_shot_lines(
            &mut lines,
            z,
            "compositional: label combinations held out of training",
        );
    }
    for (name, value) in &r.validation_terms {
        let perplexity = if name == "caption" {
            format!(" (perplexity {:.1})", value.exp())
        } else {
            String::new()
        };
        lines.push(format!(
            "{name} loss on the validation samples: {value:.4}{perplexity}"
        ));
    }
    if let Some(p) = &r.probe {
        lines.push(format!(
            "linear probe on frozen {}-wide image features: fitted on {} train samples ({} steps), \
             scored on {}",
            p.feature_width, p.train_samples, p.steps, p.val_samples
        ));
        lines.push(format!(
            "  {:<22} {:>8} {:>8} {:>8}",
            "", "accuracy", "chance", "train"
        ));
        for c in &p.columns {
            lines.push(format!(
                "  {:<22} {:>8} {:>8} {:>8}",
                c.column,
                pct(c.accuracy),
                pct(c.chance),
                pct(c.train_accuracy)
            ));
        }
    }
    if let Some(ret) = &r.retrieval {
        retrieval_lines(&mut lines, ret);
    }
    write_stdout(&lines.join("\n"))
}

/// A run directory and its spec (`config.toml`); a directory without one is a usage error.
#[cfg(feature = "train")]
pub(crate) fn open_run(
    run: &str,
) -> anyhow::Result<(
    flipstream_train::run::RunDir,
    flipstream_train::run::RunSpec,
)> {
    use flipstream_train::run::rundir::CONFIG_FILE;
    use flipstream_train::run::{RunDir, RunSpec};

    use crate::cli::train::train_error;

    let dir = RunDir::open(run).map_err(train_error)?;
    let Some(text) = dir.read_opt(CONFIG_FILE).map_err(train_error)? else {
        crate::usage_bail!(
            "--run {run}: no run there ({CONFIG_FILE} is missing); train one with `flipstream train`"
        );
    };
    let spec = RunSpec::from_toml_str(&String::from_utf8_lossy(&text), &dir.display(CONFIG_FILE))
        .map_err(train_error)?;
    Ok((dir, spec))
}

/// A run's weights at `checkpoint` (the latest when `None`) on `device`, with the checkpoint's
/// local folder and the run's tokenizer file.
#[cfg(feature = "train")]
pub(crate) struct LoadedRun {
    pub trainer: flipstream_train::TrainStep,
    pub checkpoint: PathBuf,
    pub tokenizer: PathBuf,
    pub step: u64,
}

#[cfg(feature = "train")]
impl LoadedRun {
    /// The checkpoint as score sidecars and exports record it: the run directory (a local one as
    /// an absolute path, a URL as given), the checkpoint's folder name, its step and the BLAKE3
    /// of its weights.
    pub(crate) fn record(
        &self,
        dir: &flipstream_train::run::RunDir,
    ) -> anyhow::Result<flipstream_schemas::ScoreModel> {
        use flipstream_train::checkpoint::weights_fingerprint;
        Ok(flipstream_schemas::ScoreModel {
            run: std::fs::canonicalize(dir.url())
                .map_or_else(|_| dir.url().to_string(), |p| p.display().to_string()),
            checkpoint: self
                .checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            step: self.step,
            fingerprint: weights_fingerprint(&self.checkpoint)
                .map_err(crate::cli::train::train_error)?,
        })
    }
}

#[cfg(feature = "train")]
pub(crate) fn load_weights(
    dir: &flipstream_train::run::RunDir,
    spec: &flipstream_train::run::RunSpec,
    checkpoint: Option<&str>,
    device: tch::Device,
) -> anyhow::Result<LoadedRun> {
    use flipstream_train::TrainStep;
    use flipstream_train::run::rundir::TOKENIZER_FILE;

    use crate::cli::train::train_error;

    let checkpoint = dir.fetch_checkpoint(checkpoint).map_err(train_error)?;
    let tokenizer = dir.fetch(TOKENIZER_FILE).map_err(train_error)?;
    let mut trainer = TrainStep::new(spec.config.clone(), device).map_err(train_error)?;
    let meta = trainer.load_checkpoint(&checkpoint).map_err(train_error)?;
    Ok(LoadedRun {
        trainer,
        checkpoint,
        tokenizer,
        step: meta.step,
    })
}

#[cfg(feature = "train")]
pub(super) fn run(args: EvalArgs, global: Global) -> anyhow::Result<ExitCode> {
    use flipstream_train::run::spec::ALL_DATA_EVAL_REFUSAL;
    use flipstream_train::run::{DataSplit, EvalData, check_eval_data, evaluate, read_templates};

    use crate::cli::train::train_error;

    let device = args.compute.device()?;
    let (dir, mut spec) = open_run(&args.run)?;
    let dataset = args
        .dataset
        .clone()
        .unwrap_or_else(|| spec.run.dataset.clone());
    if spec.run.split == DataSplit::All && dataset == spec.run.dataset {
        crate::usage_bail!(
            "{ALL_DATA_EVAL_REFUSAL}: evaluate this run on another dataset (flipstream eval \
             DATASET --run {})",
            args.run
        );
    }
    let explicit = args.label_columns.is_some();
    if let Some(cols) = &args.label_columns {
        spec.run.eval.label_columns = cols
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
    }
    if args.class_format.is_some() {
        spec.run.eval.class_format = args.class_format.clone();
    }
    if let Some(path) = &args.templates {
        spec.run.eval.templates = read_templates(path).map_err(train_error)?;
    }
    if let Some(n) = args.max_samples {
        spec.run.eval.max_samples = n;
    }
    if let Some(r) = args.mask_ratio {
        spec.run.eval.mask_ratio = r;
    }
    spec.run.eval.probe |= args.probe;
    if let Some(n) = args.probe_samples {
        spec.run.eval.probe_train_samples = n;
    }
    spec.validate().map_err(train_error)?;
    let targets = check_eval_data(
        &dataset,
        &spec.run.eval.label_columns,
        spec.run.eval.class_format.as_deref(),
        explicit,
    )
    .map_err(train_error)?;
    if let Some(note) = &targets.note
        && !global.quiet
    {
        eprintln!("{note}");
    }
    let LoadedRun {
        trainer,
        checkpoint,
        tokenizer,
        ..
    } = load_weights(&dir, &spec, args.checkpoint.as_deref(), device)?;
    if !global.quiet {
        eprintln!(
            "evaluating {} on the validation split of {dataset}",
            checkpoint.display()
        );
    }
    let data = EvalData {
        dataset: &dataset,
        tokenizer: &tokenizer,
        options: &spec.run.eval,
        targets: &targets,
        decode_threads: args.compute.decode_threads,
    };
    let report = evaluate(&trainer, &data).map_err(train_error)?;
    super::progress::show_loader_notices(&report.loader_notices, None, global);
    print_eval(&report, global.json)?;
    Ok(ExitCode::SUCCESS)
}
