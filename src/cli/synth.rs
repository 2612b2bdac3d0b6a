//! `flipstream synth`: generate synthetic web image-text pairs with ground truth (labels, planted
//! dirt) in WebDataset, Parquet, folder or URL-list layout. All logic lives in
//! `flipstream_synth`; this module maps flags to a `SynthConfig` and prints the result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use flipstream_synth::{
    DirtKind, DirtMix, Layout, Overwrite, SizeMix, SynthConfig, SynthError, SynthSummary,
};

use super::{Global, UsageError};

const AFTER_HELP: &str = "\
Dirt kinds (each item gets at most one; ⌈fraction·count⌉ items per kind, at least one):
  truncated, corrupt, zero_byte, not_image, tiny, extreme_aspect, duplicate_exact,
  near_duplicate, caption_empty, caption_one_word, caption_overlong, caption_html,
  caption_invalid_utf8 (webdataset, folder only), exif_rotated, cmyk, gray16, grayscale,
  palette_alpha, animated, decompression_bomb, missing_file (urls only).
Kinds a layout cannot carry are recorded as `dirt_skipped` in synth.jsonl.

Output: the data files, synth.jsonl (one line of ground truth per item) and synth.json
(options, seed, version, counts, bytes). See docs/synth.md.

Examples:
  flipstream synth --out data/raw --count 2000 --dirt default
  flipstream synth --out data/urls --layout urls --url-base http://127.0.0.1:8000/ --dirt missing_file=0.05";

/// Arguments of `flipstream synth`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct SynthArgs {
    /// Output folder. Must not exist or be empty (see --force); written to a hidden temporary
    /// sibling first and renamed into place when complete.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Number of image-text pairs to generate.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub count: u64,

    /// Seed. The same seed and options give byte-identical output, whatever the thread count.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,

    /// On-disk layout.
    #[arg(long, value_enum, default_value_t = LayoutArg::Webdataset, value_name = "L")]
    pub layout: LayoutArg,

    /// Items per shard file (webdataset, parquet). Duplicates always copy an earlier item of the
    /// same block of this many items, in every layout.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub shard_size: u64,

    /// Planted dirt: `off`, `default` (web-like preset, about 16 % of items), or
    /// `kind=fraction,…` (may start with `default,` to change single kinds of the preset).
    /// Fractions must sum to at most 1.
    #[arg(long, default_value = "off", value_name = "SPEC")]
    pub dirt: String,

    /// Size classes of the main object as weights: `default` (small=25,medium=45,large=30) or
    /// `class=weight,…` with classes small (diameter 20–30 % of the shortest side), medium
    /// (36–50 %) and large (58–76 %); classes left out weigh 0.
    #[arg(long, default_value = "default", value_name = "SPEC")]
    pub object_sizes: String,

    /// URL prefix of the `urls` layout: an item's URL is this plus `files/<key>.<ext>`.
    #[arg(long, default_value = "http://127.0.0.1:8000/", value_name = "URL")]
    pub url_base: String,

    /// Replace an existing non-empty output folder (the old one stays until the new one is
    /// complete).
    #[arg(long)]
    pub force: bool,
}

/// `--layout` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// `shard-00000.tar`, … with members `<key>.<ext>`, `<key>.txt`, `<key>.json`.
    Webdataset,
    /// `part-00000.parquet`, … in Hugging Face style (`image: struct<bytes, path>`, caption, url,
    /// label columns).
    Parquet,
    /// `images/<key>.<ext>`, `images/<key>.txt`, `images/<key>.json`.
    Folder,
    /// `urls.parquet` (url, caption, uid, labels) and the files it names under `files/`.
    Urls,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Webdataset => Layout::Webdataset,
            LayoutArg::Parquet => Layout::Parquet,
            LayoutArg::Folder => Layout::Folder,
            LayoutArg::Urls => Layout::Urls,
        }
    }
}

/// Usage errors of the library become [`UsageError`] (exit code 2).
pub(super) fn cli_error(e: SynthError) -> anyhow::Error {
    if e.is_usage() {
        anyhow::Error::new(UsageError(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}

/// Generates the pairs and prints the summary.
pub(super) fn run(args: SynthArgs, global: Global) -> anyhow::Result<ExitCode> {
    let dirt: DirtMix = args.dirt.parse().map_err(cli_error)?;
    let sizes: SizeMix = args.object_sizes.parse().map_err(cli_error)?;
    let config = SynthConfig {
        count: args.count,
        seed: args.seed,
        layout: args.layout.into(),
        shard_size: args.shard_size,
        dirt,
        url_base: args.url_base,
        sizes,
    };
    config.validate().map_err(cli_error)?;
    let overwrite = if args.force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    };
    let progress = super::progress::Meter::new(global, "synth", "pairs");
    let started = Instant::now();
    let summary =
        flipstream_synth::generate(&config, &args.out, overwrite, &progress).map_err(cli_error)?;
    let elapsed = started.elapsed().as_secs_f64();
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).context("serialising the summary")?
        );
    } else {
        print_summary(&summary, &args.out, elapsed);
    }
    Ok(ExitCode::SUCCESS)
}

fn counts<K: std::fmt::Display>(map: impl IntoIterator<Item = (K, u64)>) -> String {
    map.into_iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(s: &SynthSummary, out: &std::path::Path, elapsed: f64) {
    let dirty: u64 = s.dirt.values().sum();
    println!(
        "synth: {} pairs → {} ({}, {:.1} MB) in {:.2} s ({:.0} pairs/s)",
        s.items,
        out.display(),
        s.config.layout,
        s.total_bytes as f64 / 1e6,
        elapsed,
        s.items as f64 / elapsed.max(1e-9)
    );
    let mut files = s.data_files.join(", ");
    if s.loose_files > 0 {
        let sub = if s.config.layout == Layout::Urls {
            "files/"
        } else {
            "images/"
        };
        files = [files, format!("{} files under {sub}", s.loose_files)]
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect::<Vec<_>>()
            .join(" and ");
    }
    println!("files:   {files}");
    println!(
        "formats: {}",
        counts(s.formats.iter().map(|(k, n)| (k, *n)))
    );
    if dirty == 0 {
        println!("dirt:    none ({} clean)", s.clean);
    } else {
        println!(
            "dirt:    {dirty} items ({:.1} %), {} clean: {}",
            100.0 * dirty as f64 / s.items.max(1) as f64,
            s.clean,
            counts(
                DirtKind::ALL
                    .iter()
                    .filter_map(|k| s.dirt.get(k).map(|n| (k, *n)))
            )
        );
    }
    if !s.dirt_skipped.is_empty() {
        println!(
            "skipped: {} (the layout cannot carry them)",
            counts(s.dirt_skipped.iter().map(|(k, n)| (k, *n)))
        );
    }
    println!(
        "truth:   {} and {}",
        out.join(flipstream_synth::SIDECAR_FILE).display(),
        out.join(flipstream_synth::SUMMARY_FILE).display()
    );
}
