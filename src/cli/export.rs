//! `flipstream export --run RUN --format open_clip|hf --out DIR`: a run's checkpoint as a folder
//! that open_clip (`local-dir:DIR`) or transformers (`CLIPModel.from_pretrained(DIR)`) loads,
//! with the same embeddings (see `flipstream_train::export` and docs/export.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::cli::Global;

/// The libraries an export targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// open_clip ≥ 3.0: `open_clip.create_model_and_transforms("local-dir:DIR")`.
    #[value(name = "open_clip", alias = "open-clip")]
    OpenClip,
    /// transformers: `CLIPModel.from_pretrained(DIR)`, `AutoTokenizer`, `CLIPImageProcessor`.
    Hf,
}

/// Arguments of `flipstream export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Run directory (path or object-store URL) made by `flipstream train`: its config,
    /// tokenizer and checkpoint are exported. A CLIP, FLIP or MAE+CLIP run whose towers the
    /// target can express exactly (docs/export.md); anything else is refused with the reasons.
    #[arg(long, value_name = "DIR")]
    pub run: String,

    /// Checkpoint: a step (`800`), a folder name (`step-00000800`) or a path relative to the run
    /// directory [default: the latest].
    #[arg(long, value_name = "STEP|NAME")]
    pub checkpoint: Option<String>,

    /// The library the folder is for.
    #[arg(long, value_enum)]
    pub format: Format,

    /// The folder to write: must not exist, or be empty. Written beside it under a hidden name
    /// and renamed into place when complete.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: ExportArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "export needs the training build; this binary was built with --no-default-features"
    )
}

#[cfg(feature = "train")]
pub(super) fn run(args: ExportArgs, global: Global) -> anyhow::Result<ExitCode> {
    use flipstream_train::interop::{ExportFormat, ExportRequest, export_model};

    use super::eval::{load_weights, open_run};
    use super::train::train_error;

    let format = match args.format {
        Format::OpenClip => ExportFormat::OpenClip,
        Format::Hf => ExportFormat::Hf,
    };
    let (dir, spec) = open_run(&args.run)?;
    let loaded = load_weights(&dir, &spec, args.checkpoint.as_deref(), tch::Device::Cpu)?;
    let source = loaded.record(&dir)?;
    let request = ExportRequest {
        format,
        out: &args.out,
        tokenizer: &loaded.tokenizer,
        source,
    };
    let objective = loaded.trainer.config().objective.kind();
    let summary = export_model(loaded.trainer.model(), objective, &request).map_err(train_error)?;
    print_summary(&summary, global.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The summary as a few lines (or JSON).
#[cfg(feature = "train")]
fn print_summary(s: &flipstream_train::interop::ExportSummary, json: bool) -> anyhow::Result<()> {
    use flipstream_stats::format;

    use crate::cli::loader::write_stdout;
    if json {
        return write_stdout(&crate::cli::json_summary(s)?);
    }
    let mut lines = vec![format!(
        "{} (step {}) → {} ({}): {} tensors, {} parameters",
        s.source.checkpoint,
        s.source.step,
        s.out,
        s.format.name(),
        s.tensors,
        format::count(s.parameters as u64)
    )];
    for f in &s.files {
        lines.push(format!(
            "  {:<32} {:>12}",
            f.name,
            format::bytes(f.bytes as f64)
        ));
    }
    if let Some([a, b]) = s.swapped_token_ids {
        lines.push(format!(
            "token ids {a} and {b} swapped (transformers pools id 2 by a legacy argmax): the \
             exported tokenizer and embedding table agree, ids from the run's tokenizer do not"
        ));
    }
    lines.push(format!("load with: {}", s.load_with));
    write_stdout(&lines.join("\n"))
}
