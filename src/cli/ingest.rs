//! `flipstream ingest`: web pairs in, committed Parquet shards out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use flipstream_imaging::{OutputFormat, ProcessSpec, ResizeMode};
use flipstream_ingest::caption::{CaptionRules, Overlong};
use flipstream_ingest::config::{DedupRules, IngestConfig};
use flipstream_ingest::fetch::FetchConfig;
use flipstream_ingest::pipeline::{self, IngestError, IngestSummary, RunOptions};
use flipstream_ingest::source::SourceError;
use flipstream_ingest::source::SourceOptions;
use flipstream_ingest::workers::WorkerSlot;
use flipstream_shard::WriterSettings;
use flipstream_shard::problems::Validate;

use super::{Global, UsageError, progress};

/// Arguments of `flipstream ingest`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Inputs: WebDataset tars, Parquet with image bytes (img2dataset / Hugging Face layouts), folders of
images with .txt captions, and URL lists (Parquet, CSV, TSV, JSON lines; plain, .gz or .zst) that
are downloaded. Local paths, globs, brace ranges (shard-{00000..00099}.tar) and object-store URLs
(s3://, gs://, az://) are accepted.

Every input item ends up either as a shard row or as a rejection row with a reason; re-running the
same command skips committed units, so an interrupted run is resumed by running it again.
Run disjoint parts on many machines with --worker-index/--num-workers (or a Slurm array /
Kubernetes indexed Job); they all write into the same dataset.")]
pub(crate) struct IngestArgs {
    /// Inputs: files, folders, globs, or object-store URLs.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Where the dataset goes: a local path, file://, s3://bucket/prefix, gs://…, az://….
    #[arg(long, short = 'o', value_name = "URL")]
    pub out: String,

    /// TOML file with any part of the configuration (see docs/ingest.md); flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    // ---- image filters and output
    /// Reject images whose shortest side is below this many pixels (0 = no minimum).
    #[arg(long, value_name = "PX", help_heading = "Images")]
    pub min_side: Option<u32>,
    /// Reject images whose long side / short side is above this (0 = no maximum).
    #[arg(long, value_name = "RATIO", help_heading = "Images")]
    pub max_aspect_ratio: Option<f64>,
    /// Refuse images declaring more pixels than this (decompression-bomb guard).
    #[arg(long, value_name = "N", help_heading = "Images")]
    pub max_pixels: Option<u64>,
    /// How stored images are resized.
    #[arg(long, value_enum, help_heading = "Images")]
    pub resize_mode: Option<ResizeModeArg>,
    /// Target size in pixels for the resize mode (e.g. shortest side for keep-ratio).
    #[arg(long, value_name = "PX", help_heading = "Images")]
    pub size: Option<u32>,
    /// Also enlarge images smaller than the target (default: only shrink).
    #[arg(long, help_heading = "Images")]
    pub upscale: bool,
    /// Encoding of stored images.
    #[arg(long, value_enum, help_heading = "Images")]
    pub format: Option<FormatArg>,
    /// Encoding quality (1–100) for JPEG and WebP.
    #[arg(long, value_name = "Q", help_heading = "Images")]
    pub quality: Option<u8>,
    /// Always re-encode, even when the source bytes could be stored as they are.
    #[arg(long, help_heading = "Images")]
    pub no_keep_original: bool,

    // ---- captions
    /// Reject captions with fewer words than this.
    #[arg(long, value_name = "N", help_heading = "Captions")]
    pub min_words: Option<usize>,
    /// Reject captions with fewer characters than this (after cleanup).
    #[arg(long, value_name = "N", help_heading = "Captions")]
    pub min_chars: Option<usize>,
    /// Longest caption kept, in characters; longer ones are truncated at a word boundary.
    #[arg(long, value_name = "N", help_heading = "Captions")]
    pub max_chars: Option<usize>,
    /// Reject captions over --max-chars instead of truncating them.
    #[arg(long, help_heading = "Captions")]
    pub reject_long_captions: bool,

    // ---- dedup
    /// Keep exact and near duplicates (by default both are rejected within each unit).
    #[arg(long, help_heading = "Duplicates")]
    pub no_dedup: bool,
    /// Largest pHash Hamming distance that counts as a near-duplicate (0–16).
    #[arg(long, value_name = "BITS", help_heading = "Duplicates")]
    pub near_dup_distance: Option<u32>,

    // ---- inputs
    /// Column (or JSON field) holding the image bytes; default: auto-detected.
    #[arg(long, value_name = "NAME", help_heading = "Inputs")]
    pub image_column: Option<String>,
    /// Column holding the caption; default: auto-detected (caption, text, TEXT, txt…).
    #[arg(long, value_name = "NAME", help_heading = "Inputs")]
    pub caption_column: Option<String>,
    /// Column holding each item's own key; default: auto-detected (key, uid, id).
    #[arg(long, value_name = "NAME", help_heading = "Inputs")]
    pub key_column: Option<String>,
    /// Column holding the URL; default: auto-detected (url, URL).
    #[arg(long, value_name = "NAME", help_heading = "Inputs")]
    pub url_column: Option<String>,
    /// Rows (Parquet) or files (folders) per unit of work.
    #[arg(long, value_name = "N", help_heading = "Inputs")]
    pub unit_rows: Option<u64>,

    // ---- downloads
    /// Downloads in flight at once (URL lists).
    #[arg(long, value_name = "N", help_heading = "Downloads")]
    pub concurrency: Option<usize>,
    /// Retries after a transient download failure.
    #[arg(long, value_name = "N", help_heading = "Downloads")]
    pub retries: Option<u32>,
    /// Time allowed for one download attempt, in seconds.
    #[arg(long, value_name = "SECS", help_heading = "Downloads")]
    pub timeout: Option<f64>,
    /// Largest image downloaded, in bytes.
    #[arg(long, value_name = "BYTES", help_heading = "Downloads")]
    pub max_body_bytes: Option<u64>,
    /// User-Agent header of downloads.
    #[arg(long, value_name = "UA", help_heading = "Downloads")]
    pub user_agent: Option<String>,
    /// Allow URLs that resolve to loopback or private addresses (trusted lists only). Link-local
    /// addresses, where the cloud metadata endpoint 169.254.169.254 lives, stay refused unless
    /// named with --allow-network.
    #[arg(long, help_heading = "Downloads")]
    pub allow_private_addresses: bool,
    /// Allow URLs (and redirects) into these networks, comma-separated CIDRs (an internal
    /// mirror, say: 10.1.0.0/16); the only way to reach a link-local address.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "CIDRS",
        help_heading = "Downloads"
    )]
    pub allow_network: Vec<ipnet::IpNet>,
    /// Download images even when the server opts out with X-Robots-Tag (noai, noimageai…).
    #[arg(long, help_heading = "Downloads")]
    pub ignore_opt_outs: bool,

    // ---- output layout
    /// Rows per shard file.
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub shard_rows: Option<u64>,
    /// Rows per Parquet row group (the unit a streaming loader fetches).
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub row_group_rows: Option<usize>,

    // ---- running
    /// This worker's index (0-based); default from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "I", help_heading = "Running")]
    pub worker_index: Option<u32>,
    /// Number of workers sharing the inputs; default from SLURM_ARRAY_TASK_COUNT, else 1.
    #[arg(long, value_name = "N", help_heading = "Running")]
    pub num_workers: Option<u32>,
    /// CPU threads for image processing (default: all cores).
    #[arg(long, value_name = "N", help_heading = "Running")]
    pub threads: Option<usize>,
    /// Units processed at the same time.
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = "Running")]
    pub units_in_flight: usize,
    /// Also fetch again the items of committed units that failed for a transient reason
    /// (download_error; HTTP 408, 429, 5xx) and commit what now succeeds as retry units of the
    /// same dataset; permanent failures are never re-tried. Run the same command with this flag;
    /// a second time re-tries only what is still failing (docs/fetching.md).
    #[arg(long, help_heading = "Running")]
    pub retry_failed: bool,
}

/// Resize modes as flags.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ResizeModeArg {
    /// Store as decoded (no resize).
    No,
    /// Shortest side = --size, aspect kept.
    KeepRatio,
    /// Longest side = --size, aspect kept.
    KeepRatioLargest,
    /// Shortest side = --size, then a centred --size × --size crop.
    CenterCrop,
    /// Fit inside --size × --size and pad to a square.
    Border,
}

/// Output encodings as flags.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    /// JPEG (4:2:0).
    Jpeg,
    /// Lossy WebP.
    Webp,
    /// PNG (lossless).
    Png,
}

impl IngestArgs {
    /// The configuration: defaults, then the TOML file, then the flags.
    fn resolve_config(&self) -> anyhow::Result<IngestConfig> {
        let mut c = self.config_file()?;
        self.apply_image_flags(&mut c.image)?;
        self.apply_caption_flags(&mut c.caption, &mut c.dedup);
        self.apply_source_flags(&mut c.sources);
        self.apply_fetch_flags(&mut c.fetch)?;
        self.apply_writer_flags(&mut c.writer);
        c.validate()
            .map_err(|problems| UsageError(problems.to_string()))?;
        Ok(c)
    }

    /// `--config`'s settings, or the defaults.
    fn config_file(&self) -> anyhow::Result<IngestConfig> {
        Ok(match &self.config {
            None => IngestConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    UsageError(format!("cannot read --config {}: {e}", path.display()))
                })?;
                IngestConfig::from_toml(&text)
                    .map_err(|e| UsageError(format!("--config {}: {e}", path.display())))?
            }
        })
    }

    /// `--min-side`, `--max-aspect-ratio`, `--max-pixels`, `--resize-mode`, `--size`, `--upscale`,
    /// `--format`, `--quality`, `--no-keep-original`.
    fn apply_image_flags(&self, img: &mut ProcessSpec) -> anyhow::Result<()> {
        if let Some(v) = self.min_side {
            img.min_side = (v > 0).then_some(v);
        }
        if let Some(v) = self.max_aspect_ratio {
            if v.is_nan() || v < 0.0 {
                return Err(UsageError(format!(
                    "--max-aspect-ratio {v}: give a ratio of at least 1, or 0 for no limit"
                ))
                .into());
            }
            img.max_aspect_ratio = (v > 0.0).then_some(v);
        }
        if let Some(v) = self.max_pixels {
            img.max_pixels = v;
        }
        if let Some(m) = self.resize_mode {
            img.resize.mode = match m {
                ResizeModeArg::No => ResizeMode::No,
                ResizeModeArg::KeepRatio => ResizeMode::KeepRatio,
                ResizeModeArg::KeepRatioLargest => ResizeMode::KeepRatioLargest,
                ResizeModeArg::CenterCrop => ResizeMode::CenterCrop,
                ResizeModeArg::Border => ResizeMode::Border,
            };
        }
        if let Some(v) = self.size {
            img.resize.size = v;
        }
        if self.upscale {
            img.resize.downscale_only = false;
        }
        if let Some(f) = self.format {
            img.encode.format = match f {
                FormatArg::Jpeg => OutputFormat::Jpeg,
                FormatArg::Webp => OutputFormat::Webp,
                FormatArg::Png => OutputFormat::Png,
            };
        }
        if let Some(q) = self.quality {
            img.encode.quality = q;
        }
        if self.no_keep_original {
            img.keep_original.clear();
        }
        Ok(())
    }

    /// The caption filters and the dedup switches.
    fn apply_caption_flags(&self, cap: &mut CaptionRules, dedup: &mut DedupRules) {
        if let Some(v) = self.min_words {
            cap.min_words = v;
        }
        if let Some(v) = self.min_chars {
            cap.min_chars = v;
        }
        if let Some(v) = self.max_chars {
            cap.max_chars = v;
        }
        if self.reject_long_captions {
            cap.overlong = Overlong::Reject;
        }
        if self.no_dedup {
            dedup.exact = false;
            dedup.near = false;
        }
        if let Some(v) = self.near_dup_distance {
            dedup.near_distance = v;
        }
    }

    /// The input column names and the unit size.
    fn apply_source_flags(&self, src: &mut SourceOptions) {
        for (flag, field) in [
            (&self.image_column, &mut src.image_column),
            (&self.caption_column, &mut src.caption_column),
            (&self.key_column, &mut src.key_column),
            (&self.url_column, &mut src.url_column),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        if let Some(v) = self.unit_rows {
            src.unit_rows = v;
        }
    }

    /// The URL fetcher's settings.
    fn apply_fetch_flags(&self, f: &mut FetchConfig) -> anyhow::Result<()> {
        if let Some(v) = self.concurrency {
            f.concurrency = v;
        }
        if let Some(v) = self.retries {
            f.retries = v;
        }
        if let Some(secs) = self.timeout {
            if secs.is_nan() || secs <= 0.0 {
                return Err(UsageError(format!("--timeout must be positive, got {secs}")).into());
            }
            f.total_timeout_ms = (secs * 1000.0) as u64;
        }
        if let Some(v) = self.max_body_bytes {
            f.max_body_bytes = v;
        }
        if let Some(v) = &self.user_agent {
            f.user_agent.clone_from(v);
        }
        f.allowed_networks
            .extend(self.allow_network.iter().copied());
        if self.allow_private_addresses {
            f.allow_private_addresses = true;
        }
        if self.ignore_opt_outs {
            f.respect_opt_outs = false;
        }
        Ok(())
    }

    /// The shard layout.
    fn apply_writer_flags(&self, writer: &mut WriterSettings) {
        if let Some(v) = self.shard_rows {
            writer.shard_rows = v;
        }
        if let Some(v) = self.row_group_rows {
            writer.row_group_rows = v;
        }
    }
}

/// Runs `flipstream ingest`.
pub(super) fn run(args: IngestArgs, global: Global) -> anyhow::Result<ExitCode> {
    let config = args.resolve_config()?;
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("rendering the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let worker = WorkerSlot::resolve(args.worker_index, args.num_workers, &|k| {
        std::env::var(k).ok()
    })
    .map_err(UsageError)?;
    if args.units_in_flight == 0 {
        return Err(UsageError("--units-in-flight must be at least 1".into()).into());
    }
    super::init_rayon(args.threads)?;
    let progress = Arc::new(progress::Meter::new(global, "ingest", "items"));
    let opts = RunOptions {
        worker,
        units_in_flight: args.units_in_flight,
        retry_failed: args.retry_failed,
        ..RunOptions::default()
    };
    check_output_outside_inputs(&args.inputs, &args.out)?;
    let runtime = super::runtime()?;
    let summary = runtime
        .block_on(pipeline::run(
            &args.inputs,
            &args.out,
            config,
            opts,
            progress,
        ))
        .map_err(|e| match e {
            IngestError::Config(msg) => anyhow::Error::new(UsageError(msg)),
            // An input that names nothing usable is the caller's to fix (docs/ingest.md).
            IngestError::Inputs(
                e @ (SourceError::NoMatch { .. }
                | SourceError::NotFound { .. }
                | SourceError::InvalidInput { .. }
                | SourceError::UnknownKind { .. }),
            ) => anyhow::Error::new(UsageError(e.to_string())),
            other => anyhow::Error::new(other),
        })?;
    if global.json {
        println!("{}", crate::cli::json_summary(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.units_failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &summary.units_failed {
            eprintln!("error: unit {} ({}) failed: {}", f.unit, f.source, f.error);
        }
        eprintln!(
            "error: {} unit(s) failed and were not committed; run the same command again to retry them",
            summary.units_failed.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// A local path without its glob part (`raw/*.tar` → `raw`), made absolute as far as it exists.
fn local_root(input: &str) -> Option<std::path::PathBuf> {
    let path = input.strip_prefix("file://").unwrap_or(input);
    if path.contains("://") {
        return None;
    }
    let literal: std::path::PathBuf = std::path::Path::new(path)
        .components()
        .take_while(|c| {
            !c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        })
        .collect();
    // Canonicalise the longest existing ancestor, keep the rest as written.
    let mut existing = literal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(abs) = existing.canonicalize() {
            return Some(rest.iter().rev().fold(abs, |p, c| p.join(c)));
        }
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?;
        if existing.as_os_str().is_empty() {
            existing = std::path::Path::new(".");
        }
    }
}

/// Refuses an output folder inside (or equal to) an input folder, or under a recursive (`**`)
/// pattern: the documented crash recovery — the same command again — would then ingest the
/// dataset's own files. (A one-level pattern such as `raw/*.tar` cannot reach them.)
fn check_output_outside_inputs(inputs: &[String], out: &str) -> anyhow::Result<()> {
    let Some(out_root) = local_root(out) else {
        return Ok(());
    };
    for input in inputs {
        let pattern = input.contains(['*', '?', '[', '{']);
        if pattern && !input.contains("**") {
            continue;
        }
        if let Some(root) = local_root(input)
            && out_root.starts_with(&root)
        {
            return Err(UsageError(format!(
                "--out {out} is inside the input {input}: a re-run would ingest the dataset's own \
                 files; choose an output outside the inputs"
            ))
            .into());
        }
    }
    Ok(())
}

fn print_summary(s: &IngestSummary) {
    let c = &s.counts;
    let pct = |n: u64| {
        if c.read > 0 {
            100.0 * n as f64 / c.read as f64
        } else {
            0.0
        }
    };
    println!("dataset     {}", s.dataset);
    println!(
        "units       {} planned, {} for worker {}/{}, {} already committed, {} committed now, {} failed",
        s.units_planned,
        s.units_assigned,
        s.worker.index,
        s.worker.count,
        s.units_skipped,
        s.units_committed,
        s.units_failed.len()
    );
    if let Some(r) = &s.retried {
        let still: u64 = r.still_failing.values().sum();
        println!(
            "retried     {} unit(s) with transient failures, {} committed now: {} item(s) fetched again, {} recovered, {} still rejected",
            r.units_planned, r.units_committed, r.items, r.recovered, still
        );
    }
    println!("read        {}", c.read);
    println!("accepted    {} ({:.1}%)", c.accepted, pct(c.accepted));
    println!("rejected    {} ({:.1}%)", c.rejected, pct(c.rejected));
    let mut reasons: Vec<(&String, &u64)> = c.rejected_by_reason.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, n) in reasons {
        println!("  {reason:<22} {n:>8} ({:.1}%)", pct(*n));
    }
    println!("input       {}", human_bytes(c.input_bytes));
    println!("written     {}", human_bytes(s.bytes_written));
    if s.passthrough_nulled > 0 {
        println!(
            "note        {} passthrough value(s) did not fit their column and were stored as null",
            s.passthrough_nulled
        );
    }
    println!(
        "time        {:.1} s ({:.1} items/s)",
        s.elapsed_s, s.items_per_s
    );
}

/// `1.5 MB`-style sizes.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
