//! Command-line interface: one module per subcommand, each with its clap `Args` and a `run`.
//!
//! Conventions: results go to stdout (`--json` for machines), progress and messages to stderr.
//! Exit codes: 0 success, 1 failure while working, 2 bad usage (unknown flag, impossible
//! setting, unwritable output named on the command line), as raised with [`UsageError`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// flipstream: noisy web image-text pairs → Parquet shards → a trained FLIP/CLIP model.
#[derive(Debug, Parser)]
#[command(name = "flipstream", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// Print machine-readable JSON on stdout instead of the human summary.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars or informational messages on stderr (errors are still printed).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// Times an operation on s3://, gs:// or az:// is re-issued after a transient failure
    /// (5xx, 429/503 throttling, a reset connection, a body cut short, a timeout) before the
    /// command fails; 0 fails on the first. Waits grow from 0.1 s (throttling: 0.4 s),
    /// doubling, up to 4 s.
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "FLIPSTREAM_STORE_RETRIES",
        default_value_t = 8
    )]
    pub store_retries: u32,

    /// Seconds an object-store operation may keep failing before its retries stop.
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        env = "FLIPSTREAM_STORE_RETRY_TIMEOUT",
        default_value_t = 120.0
    )]
    pub store_retry_timeout: f64,

    #[command(subcommand)]
    pub command: Command,
}

mod bench;
mod eval;
mod export;
mod filter;
mod info;
mod ingest;
#[cfg(feature = "train")]
mod launch;
mod loader;
pub(crate) mod progress;
mod score;
mod shard;
mod stats;
mod synth;
mod tokenizer;
mod train;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show how this binary was built and what it can use here (features, libtorch, CPU, CUDA).
    Info(info::InfoArgs),
    /// Generate synthetic web image-text pairs with ground truth and optional planted dirt.
    Synth(synth::SynthArgs),
    /// Filter, dedup, resize and re-encode web pairs into committed Parquet shards.
    Ingest(ingest::IngestArgs),
    /// Make the statistics report of a committed dataset (report.json, report.md, report.html
    /// with charts): counts, rejections by reason, duplicates, image and caption distributions,
    /// frequent words, passthrough columns, per-shard outliers. Reads only small columns.
    Stats(stats::StatsArgs),
    /// Dataset tools: list (ls), check (verify) and split (split) a committed dataset.
    Shard(shard::ShardArgs),
    /// Stream a dataset as one rank of a training job would: keys in order, or throughput.
    Loader(loader::LoaderArgs),
    /// Train a byte-level BPE on a dataset's captions, or encode text with a tokenizer.json.
    Tokenizer(tokenizer::TokenizerArgs),
    /// Train a FLIP/CLIP model on a dataset into a run directory (config, tokenizer, metrics,
    /// checkpoints); --resume continues a run exactly.
    Train(train::TrainArgs),
    /// Zero-shot classification and image-text retrieval of a run's checkpoint on the validation
    /// split.
    Eval(eval::EvalArgs),
    /// CLIP-score every row of a dataset with a run's checkpoint (image-caption cosine
    /// similarity) into a score sidecar beside its shards, for `shard filter --min-clip-score`.
    Score(score::ScoreArgs),
    /// Write a run's checkpoint as a folder that open_clip or transformers loads, with the same
    /// embeddings (weights as safetensors, model config, tokenizer).
    Export(export::ExportArgs),
    /// Benchmarks: tables on stdout, JSON with --json (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

/// Options every subcommand sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Global {
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
}

/// A problem with what the user asked for rather than with the work itself: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`] (exit code 2).
#[macro_export]
macro_rules! usage_bail {
    ($($arg:tt)*) => { return Err(anyhow::Error::new($crate::cli::UsageError(format!($($arg)*)))) };
}

/// Parses the command line.
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    Cli::try_parse()
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    set_store_retries(&cli)?;
    let global = Global {
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Info(args) => info::run(args, global),
        Command::Ingest(args) => ingest::run(args, global),
        Command::Stats(args) => stats::run(args, global),
        Command::Shard(args) => shard::run(args, global),
        Command::Synth(args) => synth::run(args, global),
        Command::Loader(args) => loader::run(args, global),
        Command::Tokenizer(args) => tokenizer::run(args, global),
        Command::Train(args) => train::run(args, global),
        Command::Eval(args) => eval::run(args, global),
        Command::Score(args) => score::run(args, global),
        Command::Export(args) => export::run(args, global),
        Command::Bench(args) => bench::run(args, global),
    };
    let retried = flipstream_shard::store::retry_counts();
    if !global.quiet && retried.retries > 0 {
        eprintln!(
            "object store: {} operations retried after transient failures{}",
            retried.retries,
            if retried.gave_up > 0 {
                format!(", {} gave up", retried.gave_up)
            } else {
                String::new()
            }
        );
    }
    result
}

/// Applies `--store-retries` and `--store-retry-timeout` to the stores this process opens.
fn set_store_retries(cli: &Cli) -> anyhow::Result<()> {
    let secs = cli.store_retry_timeout;
    if !(secs.is_finite() && (0.0..=86_400.0).contains(&secs)) {
        usage_bail!("--store-retry-timeout must be between 0 and 86400 seconds, not {secs}");
    }
    flipstream_shard::store::set_retry_policy(flipstream_shard::store::RetryPolicy {
        max_retries: cli.store_retries,
        timeout: std::time::Duration::from_secs_f64(secs),
        ..Default::default()
    });
    Ok(())
}

/// A command's `--json` summary, with what the object stores retried (`store_retries`: counts of
/// this process) added to it.
pub(crate) fn json_summary(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(value)?;
    if let Some(fields) = v.as_object_mut() {
        fields.insert(
            "store_retries".into(),
            serde_json::to_value(flipstream_shard::store::retry_counts())?,
        );
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// The error chain as one line: `outer: inner: root cause`. Many errors print their source as
/// part of their own message (object_store's do, at every level); such repeats are cut so that
/// each cause appears once.
pub(crate) fn render_error(err: &anyhow::Error) -> String {
    let messages: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    let mut parts: Vec<&str> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let mut own = msg.as_str();
        if let Some(next) = messages.get(i + 1)
            && !next.is_empty()
            && let Some(head) = own.strip_suffix(next.as_str())
        {
            own = head.trim_end_matches([':', ' ', '-']);
        }
        if !own.is_empty() && parts.last() != Some(&own) {
            parts.push(own);
        }
    }
    parts.join(": ")
}

/// 2 for usage errors anywhere in the chain, 1 otherwise.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        2
    } else {
        1
    }
}

/// The async runtime for I/O (object stores, downloads). CPU work goes to rayon.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flipstream-io")
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))
}

/// Sizes rayon's global pool (`--threads`; default: all cores). Must run before any rayon use.
pub(crate) fn init_rayon(threads: Option<usize>) -> anyhow::Result<()> {
    if threads == Some(0) {
        usage_bail!("--threads must be at least 1");
    }
    let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("flipstream-cpu-{i}"));
    if let Some(n) = threads {
        b = b.num_threads(n);
    }
    b.build_global()
        .map_err(|e| anyhow::anyhow!("starting the CPU thread pool: {e}"))
}
