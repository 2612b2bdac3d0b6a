//! `flipstream bench ingest`: ingest throughput against its floor, in one run, on a folder of
//! images. The floor is our whole image step (hash, probe, decode, pHash, resize, encode) over
//! images already in memory, on every thread, with no I/O, no captions, no dedup and no writing;
//! the full run is `flipstream ingest` of the same images packed (untimed) into a WebDataset tar
//! with their `.txt` captions (or `a photo <name>` where none) — read, caption cleanup, process,
//! write Parquet, commit — into a scratch dataset. Both use the same image settings, which match
//! img2dataset's `resize_mode=keep_ratio, image_size=256, encode_quality=90` (every image
//! re-encoded). `scripts/bench-ingest.sh` puts img2dataset beside it, on the same files over HTTP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use flipstream_imaging::{self as imaging, DctScaling, ProcessSpec};
use flipstream_ingest::config::IngestConfig;
use flipstream_ingest::pipeline::{self, RunOptions};
use rayon::prelude::*;
use serde::Serialize;

use super::timing::{Measure, measure};
use crate::cli::{Global, UsageError};

/// Arguments of `flipstream bench ingest`.
#[derive(Debug, Args)]
pub(crate) struct BenchIngestArgs {
    /// Folder of images (.jpg, .jpeg, .png, .webp, .gif), with or without .txt captions.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,

    /// Shortest side after the resize (only shrinking).
    #[arg(long, default_value_t = 256)]
    pub size: u32,

    /// JPEG quality of the re-encoded images.
    #[arg(long, default_value_t = 90)]
    pub quality: u8,

    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Timed repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

#[derive(Debug, Serialize)]
struct IngestBench {
    benchmark: &'static str,
    images_dir: String,
    input_bytes: u64,
    threads: usize,
    size: u32,
    quality: u8,
    results: Vec<Measure>,
    /// Full ingest images/s ÷ floor images/s (1.0 = ingest costs nothing beyond the image step).
    ingest_vs_floor: f64,
}

/// The image settings of the comparison: no size filters, keep-ratio resize, always re-encode.
fn image_spec(size: u32, quality: u8) -> ProcessSpec {
    let mut spec = ProcessSpec {
        min_side: None,
        max_aspect_ratio: None,
        keep_original: Vec::new(),
        ..ProcessSpec::default()
    };
    spec.resize.size = size;
    spec.encode.quality = quality;
    spec
}

/// Packs the images into one WebDataset tar: `<stem>.<ext>` + `<stem>.txt`.
fn write_tar(path: &std::path::Path, files: &[PathBuf], images: &[Vec<u8>]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut append = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
            .with_context(|| format!("writing {}", path.display()))
    };
    for (i, (file, bytes)) in files.iter().zip(images).enumerate() {
        let ext = file.extension().and_then(|x| x.to_str()).unwrap_or("jpg");
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let caption = std::fs::read_to_string(file.with_extension("txt"))
            .unwrap_or_else(|_| format!("a photo {stem}"));
        let key = format!("{i:09}");
        append(&format!("{key}.{ext}"), bytes)?;
        append(&format!("{key}.txt"), caption.as_bytes())?;
    }
    tar.into_inner()
        .with_context(|| format!("finishing {}", path.display()))?;
    Ok(())
}

/// Runs `flipstream bench ingest`.
pub(super) fn run(args: BenchIngestArgs, global: Global) -> anyhow::Result<ExitCode> {
    if args.repeat == 0 || args.size == 0 || !(1..=100).contains(&args.quality) {
        return Err(UsageError(
            "--repeat and --size must be at least 1, --quality in 1..=100".into(),
        )
        .into());
    }
    let (files, images) = read_images(&args.images)?;
    crate::cli::init_rayon(args.threads)?;
    let threads = rayon::current_num_threads();
    let input_bytes = images.iter().map(|b| b.len() as u64).sum();
    if !global.quiet {
        eprintln!(
            "{} images ({:.1} MB) from {}, {threads} thread(s)",
            images.len(),
            input_bytes as f64 / 1e6,
            args.images.display()
        );
    }
    let spec = image_spec(args.size, args.quality);
    let mut results = measure_floor(&images, &spec, args.repeat)?;
    let ingest = measure_ingest(&files, &images, spec, args.repeat)?;
    let ingest_vs_floor = ingest.items_per_s / results[0].items_per_s;
    results.push(ingest);
    let report = IngestBench {
        benchmark: "ingest",
        images_dir: args.images.display().to_string(),
        input_bytes,
        threads,
        size: args.size,
        quality: args.quality,
        results,
        ingest_vs_floor,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The image files of `dir` (JPEG, PNG, WebP, GIF by extension), in name order, and their bytes.
fn read_images(dir: &std::path::Path) -> anyhow::Result<(Vec<PathBuf>, Vec<Vec<u8>>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| UsageError(format!("--images {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                matches!(
                    x.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "webp" | "gif"
                )
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(UsageError(format!("--images {}: no images", dir.display())).into());
    }
    let images = files
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    Ok((files, images))
}

/// The floor: the whole image step in memory on every thread, with and without DCT-scaled decode.
fn measure_floor(
    images: &[Vec<u8>],
    spec: &ProcessSpec,
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let floor_step = |spec: &ProcessSpec| -> anyhow::Result<usize> {
        let ok = images
            .par_iter()
            .filter(|b| {
                let _hash = imaging::content_hash(b);
                imaging::process_for_shard(b, spec).is_ok()
            })
            .count();
        Ok(ok)
    };
    let full_decode = ProcessSpec {
        dct_scaling: DctScaling::Off,
        ..spec.clone()
    };
    Ok(vec![
        measure("floor: image step in memory", repeat, || floor_step(spec))?,
        measure("floor without DCT-scaled decode", repeat, || {
            floor_step(&full_decode)
        })?,
    ])
}

/// The whole pipeline on the same images packed into a tar (read, captions, image step, Parquet,
/// commit), into a scratch folder removed afterwards.
fn measure_ingest(
    files: &[PathBuf],
    images: &[Vec<u8>],
    spec: ProcessSpec,
    repeat: usize,
) -> anyhow::Result<Measure> {
    let mut config = IngestConfig {
        image: spec,
        ..IngestConfig::default()
    };
    config.caption.min_words = 0;
    config.caption.min_chars = 0;
    config.dedup.exact = false;
    config.dedup.near = false;
    let runtime = crate::cli::runtime()?;
    let scratch =
        std::env::temp_dir().join(format!("flipstream-bench-ingest-{}", std::process::id()));
    let tar_path = scratch.with_extension("tar");
    write_tar(&tar_path, files, images)?;
    let input = tar_path.to_string_lossy().into_owned();
    let ingest = measure(
        "flipstream ingest (folder → local Parquet)",
        repeat,
        || {
            let _ = std::fs::remove_dir_all(&scratch);
            let url = scratch.to_string_lossy().into_owned();
            let summary = runtime.block_on(pipeline::run(
                std::slice::from_ref(&input),
                &url,
                config.clone(),
                RunOptions::default(),
                std::sync::Arc::new(()),
            ))?;
            Ok(summary.counts.read as usize)
        },
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&tar_path);
    ingest
}

/// The human table.
fn print_table(report: &IngestBench) {
    println!(
        "{:<46} {:>7} {:>9} {:>10} {:>12}",
        "", "images", "wall s", "images/s", "per CPU-s"
    );
    for m in &report.results {
        println!(
            "{:<46} {:>7} {:>9.2} {:>10.0} {:>12.0}",
            m.name, m.items, m.median_wall_s, m.items_per_s, m.items_per_cpu_s
        );
    }
    println!("ingest / floor (images/s): {:.2}", report.ingest_vs_floor);
}
