//! `flipstream score DATASET --run RUN`: the CLIP score (image-caption cosine similarity under a
//! run's checkpoint) of every accepted row, into the score sidecar `DATASET/scores/<name>/`;
//! `shard filter --min-clip-score / --clip-score-top` and `stats` read it.

use std::process::ExitCode;

use clap::Args;

use crate::cli::Global;

/// Arguments of `flipstream score`.
#[derive(Debug, Args)]
pub(crate) struct ScoreArgs {
    /// The dataset to score (path or URL); every committed unit, whatever its split.
    #[arg(value_name = "URL")]
    pub dataset: String,

    /// Run directory (path or object-store URL) made by `flipstream train`: its config, tokenizer
    /// and checkpoint score the rows. A CLIP, FLIP or MAE+CLIP run (one with a text tower).
    #[arg(long, value_name = "DIR")]
    pub run: String,

    /// Checkpoint: a step (`800`), a folder name (`step-00000800`) or a path relative to the run
    /// directory [default: the latest].
    #[arg(long, value_name = "STEP|NAME")]
    pub checkpoint: Option<String>,

    /// Name of the sidecar (DATASET/scores/NAME/). A re-run with the same weights scores only
    /// the units still missing; other weights need another name.
    #[arg(long, value_name = "NAME", default_value = flipstream_shard::scores::DEFAULT_NAME)]
    pub name: String,

    /// Rows encoded at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub batch_size: usize,

    /// Also store each row's L2-normalised image and caption embeddings in the sidecar
    /// (`image_embedding`, `text_embedding`: fixed-size float32 lists), for retrieval indexes,
    /// semantic dedup or checking an exported model. A sidecar keeps the choice it was made with.
    #[arg(long)]
    pub embeddings: bool,

    #[command(flatten)]
    pub compute: crate::cli::train::ComputeArgs,
}

#[cfg(not(feature = "train"))]
pub(super) fn run(_args: ScoreArgs, _global: Global) -> anyhow::Result<ExitCode> {
    crate::usage_bail!(
        "score needs the training build; this binary was built with --no-default-features"
    )
}

#[cfg(feature = "train")]
pub(super) fn run(args: ScoreArgs, global: Global) -> anyhow::Result<ExitCode> {
    use flipstream_train::run::{ScoreRequest, score_dataset};

    use super::eval::{LoadedRun, load_weights, open_run};
    use super::progress::Meter;
    use super::train::train_error;

    if let Err(e) = flipstream_shard::scores::check_name(&args.name) {
        crate::usage_bail!("--name: {e}");
    }
    if args.batch_size == 0 {
        crate::usage_bail!("--batch-size must be at least 1");
    }
    let device = args.compute.device()?;
    let (dir, spec) = open_run(&args.run)?;
    let loaded = load_weights(&dir, &spec, args.checkpoint.as_deref(), device)?;
    let model = loaded.record(&dir)?;
    let LoadedRun {
        trainer,
        checkpoint,
        tokenizer,
        step,
    } = loaded;
    if !global.quiet {
        eprintln!(
            "scoring {} with {} (step {step}) on {device:?}",
            args.dataset,
            checkpoint.display()
        );
    }
    let request = ScoreRequest {
        dataset: &args.dataset,
        name: &args.name,
        model,
        tokenizer: &tokenizer,
        batch_size: args.batch_size,
        decode_threads: args.compute.decode_threads,
        embeddings: args.embeddings,
    };
    let progress = Meter::new(global, "score", "rows");
    let summary = score_dataset(&trainer, &request, &progress).map_err(train_error)?;
    super::progress::show_loader_notices(&summary.loader_notices, None, global);
    print_summary(&summary, global.json)?;
    if !summary.units_failed.is_empty() {
        for f in &summary.units_failed {
            eprintln!("unit {} was not scored: {}", f.unit, f.reason);
        }
        anyhow::bail!(
            "{} of {} units could not be scored (their row groups could not be read); nothing \
             was written for them, and a re-run scores them again",
            summary.units_failed.len(),
            summary.units_planned
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary as a few lines (or JSON).
#[cfg(feature = "train")]
fn print_summary(s: &flipstream_train::run::ScoreSummary, json: bool) -> anyhow::Result<()> {
    use flipstream_stats::format;

    use crate::cli::loader::write_stdout;
    if json {
        return write_stdout(&crate::cli::json_summary(s)?);
    }
    let mut lines = vec![
        format!(
            "{} → {}/{}: {} units, {} scored now ({} rows, {:.0} rows/s), {} already there",
            s.model.checkpoint,
            s.dataset.trim_end_matches('/'),
            s.scores,
            format::count(s.units_planned as u64),
            format::count(s.units_scored as u64),
            format::count(s.rows_scored),
            s.rows_per_s,
            format::count(s.units_skipped as u64)
        ),
        format!(
            "scores: {} rows{}{}",
            format::count(s.rows_total),
            s.embedding_dim
                .map(|d| format!(" with their {d}-wide image and caption embeddings"))
                .unwrap_or_default(),
            if s.rows_unscored > 0 {
                format!(
                    ", {} without a score (images the scorer could not decode)",
                    format::count(s.rows_unscored)
                )
            } else {
                String::new()
            }
        ),
    ];
    if let Some(q) = &s.quantiles {
        lines.push(format!(
            "  mean {:.3} · p5 {:.3} · p25 {:.3} · median {:.3} · p75 {:.3} · p95 {:.3}",
            q.mean, q.p05, q.p25, q.p50, q.p75, q.p95
        ));
    }
    write_stdout(&lines.join("\n"))
}
