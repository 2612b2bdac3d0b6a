//! `flipstream loader`: iterate a dataset exactly as one rank of a training job would, printing
//! the keys in order (to check determinism, resumption and sharding) or the throughput.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use flipstream_loader::{
    Batch, Loader, LoaderConfig, LoaderError, LoaderInfo, LoaderState, Mode, Rank, SplitSelection,
    Start,
};
use flipstream_shard::ShardError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{Global, UsageError};

/// Arguments of `flipstream loader`.
#[derive(Debug, Args)]
pub(crate) struct LoaderArgs {
    /// Dataset URL or path (local folder, file://, s3://, gs://, az://).
    pub url: String,

    /// Epoch to iterate: the shuffle and the augmentation depend on it [default: 0, or the
    /// epoch of --from-state].
    #[arg(long)]
    pub epoch: Option<u64>,

    /// This process's rank among --world-size data-parallel processes.
    #[arg(long, default_value_t = 0)]
    pub rank: usize,

    /// Number of data-parallel processes. Must divide --lanes; each rank yields
    /// batch-size / world-size samples per batch.
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,

    /// Global batch size over all ranks; a multiple of --lanes [default: 256, or the state's].
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// Lanes: independent shuffle streams; the global batches are the same for every world size
    /// dividing it [default: 16, or the state's].
    #[arg(long)]
    pub lanes: Option<usize>,

    /// Seed of the order and the augmentation [default: 0, or the state's].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Rows to stream: all, or the train / val side of `_flipstream/split.json`
    /// (made by `flipstream shard split`).
    #[arg(long, default_value = "all")]
    pub split: SplitSelection,

    /// Evaluation order: canonical, nothing dropped, contiguous shares per rank, centre crops.
    #[arg(long)]
    pub eval: bool,

    /// Positions per shuffle block in a lane (the bounded shuffle buffer) [default: 4096].
    #[arg(long)]
    pub shuffle_block: Option<usize>,

    /// Output image side in pixels [default: 224].
    #[arg(long)]
    pub image_size: Option<u32>,

    /// Print every sample's key, in order, instead of the throughput summary (with --json:
    /// one JSON object per batch with its keys and the state after it).
    #[arg(long)]
    pub keys: bool,

    /// Stop after this many batches.
    #[arg(long)]
    pub batches: Option<u64>,

    /// Resume from a saved loader state: the JSON itself or a file holding it (as written in a
    /// checkpoint, or printed by --keys --json as `state_after`).
    #[arg(long, value_name = "JSON")]
    pub from_state: Option<String>,

    /// Decode threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Row groups fetched ahead of the current shuffle blocks, per lane [default: 8].
    #[arg(long)]
    pub prefetch: Option<usize>,

    /// Encode captions with this tokenizer.json (throughput then includes tokenization).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// Token context length, with --tokenizer [default: 77].
    #[arg(long)]
    pub context_length: Option<usize>,

    /// A loader configuration JSON file (the fields of `LoaderConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct BatchKeys<'a> {
    epoch: u64,
    batch: u64,
    keys: &'a [String],
    substituted: u32,
    state_after: &'a LoaderState,
}

#[derive(Debug, Serialize)]
struct Summary {
    url: String,
    mode: Mode,
    split: SplitSelection,
    rank: usize,
    world_size: usize,
    epoch: u64,
    batches: u64,
    images: u64,
    seconds: f64,
    images_per_s: f64,
    substituted: u64,
    units_lost: u64,
    decode_failures: u64,
    row_groups_read: u64,
    bytes_fetched: u64,
    batches_per_epoch: u64,
    dropped_per_epoch: u64,
    state_after: Option<LoaderState>,
}

fn read_state(arg: &str) -> anyhow::Result<LoaderState> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).map_err(|e| UsageError(format!("--from-state {arg}: {e}")))?
    };
    LoaderState::from_json(&text).map_err(|e| UsageError(format!("--from-state: {e}")).into())
}

/// Writes a batch's keys (one per line, or one JSON object); `false` once stdout is closed.
fn print_keys(out: &mut impl Write, batch: &Batch, json: bool) -> anyhow::Result<bool> {
    let written = if json {
        let line = BatchKeys {
            epoch: batch.epoch,
            batch: batch.index,
            keys: &batch.keys,
            substituted: batch.substituted,
            state_after: &batch.state_after,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)
    } else {
        batch.keys.iter().try_for_each(|k| writeln!(out, "{k}"))
    };
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Prints to stdout; a closed stdout (output piped into `head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Maps loader errors caused by the request (bad settings, a URL that holds no dataset) to exit
/// code 2.
pub(crate) fn loader_error(e: LoaderError) -> anyhow::Error {
    let usage = e.is_usage()
        || matches!(
            e,
            LoaderError::Dataset(ShardError::NotADataset { .. } | ShardError::InvalidUrl { .. })
        );
    if usage {
        UsageError(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

fn resolve(args: &LoaderArgs, state: Option<&LoaderState>) -> anyhow::Result<LoaderConfig> {
    let mut c: LoaderConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("--config {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| UsageError(format!("--config {}: {e}", path.display())))?
        }
        None => LoaderConfig::default(),
    };
    if let Some(s) = state {
        (c.seed, c.batch_size, c.lanes) = (s.seed, s.global_batch, s.lanes);
    }
    c.batch_size = args.batch_size.unwrap_or(c.batch_size);
    c.lanes = args.lanes.unwrap_or(c.lanes);
    c.seed = args.seed.unwrap_or(c.seed);
    c.shuffle_block = args.shuffle_block.unwrap_or(c.shuffle_block);
    c.split = args.split;
    if args.eval {
        c.mode = Mode::Eval;
    }
    c.image_size = args.image_size.unwrap_or(c.image_size);
    c.decode_threads = args.threads.unwrap_or(c.decode_threads);
    c.prefetch_row_groups = args.prefetch.unwrap_or(c.prefetch_row_groups);
    c.tokenizer = args.tokenizer.clone().or(c.tokenizer);
    c.context_length = args.context_length.unwrap_or(c.context_length);
    Ok(c)
}

/// Runs `flipstream loader`.
pub(super) fn run(args: LoaderArgs, global: Global) -> anyhow::Result<ExitCode> {
    let saved = args.from_state.as_deref().map(read_state).transpose()?;
    let mut config = resolve(&args, saved.as_ref())?;
    let epoch = epoch_of(args.epoch, saved.as_ref())?;
    config.epochs = Some(epoch + 1);
    let start = saved.map_or(Start::Epoch(epoch), Start::State);
    let rank = Rank {
        rank: args.rank,
        world_size: args.world_size,
    };
    let mut loader = Loader::open(&args.url, config.clone(), rank, start).map_err(loader_error)?;
    let info = loader.info().clone();
    let remaining = info.batches_per_epoch.saturating_sub(info.start.batch);
    let total = args.batches.map_or(remaining, |n| n.min(remaining));
    if !global.quiet {
        eprintln!("{}", opening_line(&args, &info, epoch, config.batch_size));
    }
    let started = Instant::now();
    let streamed = stream(&mut loader, &args, total, global)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.keys {
        return Ok(ExitCode::SUCCESS);
    }
    let stats = loader.stats();
    let summary = Summary {
        url: args.url.clone(),
        mode: config.mode,
        split: config.split,
        rank: args.rank,
        world_size: args.world_size,
        epoch,
        batches: streamed.batches,
        images: streamed.images,
        seconds,
        images_per_s: streamed.images as f64 / seconds.max(1e-9),
        substituted: stats.substituted,
        units_lost: stats.units_lost,
        decode_failures: stats.decode_failures,
        row_groups_read: stats.row_groups_read,
        bytes_fetched: stats.bytes_fetched,
        batches_per_epoch: info.batches_per_epoch,
        dropped_per_epoch: info.dropped_per_epoch,
        state_after: streamed.last_state,
    };
    if global.json {
        write_stdout(&crate::cli::json_summary(&summary)?)?;
    } else {
        write_stdout(&summary_text(&summary))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The epoch to read: `--epoch`, or the saved state's (both given, they must agree).
fn epoch_of(epoch: Option<u64>, saved: Option<&LoaderState>) -> anyhow::Result<u64> {
    match (epoch, saved) {
        (Some(e), Some(s)) if e != s.epoch => Err(UsageError(format!(
            "--epoch {e} contradicts --from-state, which is at epoch {}",
            s.epoch
        ))
        .into()),
        (_, Some(s)) => Ok(s.epoch),
        (e, None) => Ok(e.unwrap_or(0)),
    }
}

/// What is about to be streamed, for stderr.
fn opening_line(args: &LoaderArgs, info: &LoaderInfo, epoch: u64, batch_size: usize) -> String {
    let dropped = match info.dropped_per_epoch {
        0 => String::new(),
        n => format!(" ({n} rows under one global batch dropped)"),
    };
    format!(
        "{}: {} rows in {} row groups; epoch {epoch}, rank {}/{}: {} batches of {} from batch {}{dropped}",
        args.url,
        info.total_rows,
        info.units,
        args.rank,
        args.world_size,
        info.batches_per_epoch,
        batch_size / args.world_size,
        info.start.batch,
    )
}

/// What [`stream`] read.
struct Streamed {
    batches: u64,
    images: u64,
    /// The loader state after the last batch, to resume from.
    last_state: Option<LoaderState>,
}

/// Reads up to `total` batches, printing their keys with `--keys` (until stdout closes) and a
/// progress bar otherwise.
fn stream(
    loader: &mut Loader,
    args: &LoaderArgs,
    total: u64,
    global: Global,
) -> anyhow::Result<Streamed> {
    let bar = ProgressBar::new(total);
    if global.quiet || args.keys {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} batches {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    let mut streamed = Streamed {
        batches: 0,
        images: 0,
        last_state: None,
    };
    let mut substituted = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..total {
        let Some(batch) = loader.next() else {
            break;
        };
        super::progress::show_loader_notices(&loader.take_notices(), Some(&bar), global);
        let batch = batch.with_context(|| format!("streaming {}", args.url))?;
        streamed.batches += 1;
        streamed.images += batch.len() as u64;
        if args.keys && !print_keys(&mut out, &batch, global.json)? {
            break; // stdout closed (e.g. piped into `head`)
        }
        bar.inc(1);
        if batch.substituted > 0 {
            substituted += u64::from(batch.substituted);
            bar.set_message(format!("{substituted} substituted"));
        }
        streamed.last_state = Some(batch.state_after);
    }
    super::progress::show_loader_notices(&loader.take_notices(), Some(&bar), global);
    bar.finish_and_clear();
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(streamed),
    }
}

/// The human summary: throughput, losses, and how to resume.
fn summary_text(summary: &Summary) -> String {
    let mut text = format!(
        "{} images in {} batches, {:.2} s: {:.0} images/s\n\
         substituted {} ({} images undecodable, {} row groups lost); {} row groups, {:.1} MB fetched",
        summary.images,
        summary.batches,
        summary.seconds,
        summary.images_per_s,
        summary.substituted,
        summary.decode_failures,
        summary.units_lost,
        summary.row_groups_read,
        summary.bytes_fetched as f64 / 1e6
    );
    if let Some(s) = &summary.state_after {
        text.push_str(&format!("\nresume with --from-state '{}'", s.to_json()));
    }
    text
}
