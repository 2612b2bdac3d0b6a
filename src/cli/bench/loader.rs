//! `flipstream bench loader`: streaming-loader throughput (augmented u8 batches) on WebDataset tars
//! converted once to flipstream shards; `scripts/bench-loader.sh` runs it next to a WebDataset
//! pipeline on the same images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use flipstream_loader::bench::{LoaderBenchOptions, import_webdataset_tars, measure_loader};
use flipstream_shard::WriterSettings;

use crate::cli::loader::{loader_error, write_stdout};
use crate::cli::{Global, UsageError};

/// Arguments of `flipstream bench loader`.
#[derive(Debug, Args)]
pub(crate) struct LoaderBenchArgs {
    /// Folder of WebDataset tars (`<key>.jpg` + `<key>.txt`) holding the benchmark images.
    #[arg(long)]
    pub tars: PathBuf,

    /// Where to write (once) the flipstream dataset made from the same images.
    #[arg(long)]
    pub dataset: PathBuf,

    /// Decode threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Epochs streamed in the measurement.
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,

    /// Global batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,

    /// Output image side.
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,

    /// Smallest RandomResizedCrop area fraction (the largest is 1).
    #[arg(long, default_value_t = 0.5)]
    pub min_scale: f64,
}

pub(super) fn run(args: LoaderBenchArgs, global: Global) -> anyhow::Result<ExitCode> {
    let mut tars: Vec<PathBuf> = std::fs::read_dir(&args.tars)
        .map_err(|e| UsageError(format!("--tars {}: {e}", args.tars.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    if tars.is_empty() {
        return Err(UsageError(format!("--tars {}: no .tar files", args.tars.display())).into());
    }
    let url = args.dataset.display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let import = runtime
        .block_on(import_webdataset_tars(
            &tars,
            &url,
            WriterSettings::default(),
        ))
        .with_context(|| format!("writing {url} from {}", args.tars.display()))?;
    drop(runtime);
    if !global.quiet && import.units_written > 0 {
        eprintln!(
            "wrote {} rows from {} tars to {url}",
            import.accepted, import.units_written
        );
    }
    let options = LoaderBenchOptions {
        threads: args.threads,
        epochs: args.epochs,
        batch_size: args.batch_size,
        image_size: args.image_size,
        crop_scale: (args.min_scale, 1.0),
        ..Default::default()
    };
    let m = measure_loader(&url, &options).map_err(loader_error)?;
    if global.json {
        write_stdout(&serde_json::to_string(&m)?)?;
    } else {
        write_stdout(&format!(
            "flipstream loader, {} thread(s): {} images in {:.2} s = {:.0} images/s{}",
            m.threads,
            m.images,
            m.seconds,
            m.images_per_s,
            m.images_per_cpu_s
                .map(|v| format!(", {v:.0} per CPU-second"))
                .unwrap_or_default()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
