//! `flipstream bench <kind>`: benchmarks that print a table or JSON on stdout and their progress on
//! stderr. Each kind is a subcommand of [`BenchKind`] in a module of its own; the figures and the
//! commands that produced them are in docs/benchmarks.md.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::Global;

mod fidelity;
mod ingest;
mod loader;
mod stats;
mod synth;
mod timing;
mod train_step;

/// Arguments of `flipstream bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub kind: BenchKind,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchKind {
    /// Time training steps (forward + loss + backward + AdamW) on random data for each mask ratio
    /// and report the median, images/s, speedup over mask 0 and achieved FLOP/s.
    TrainStep(train_step::TrainStepArgs),
    /// Measure `flipstream stats`: rows per second and bytes fetched as a share of the dataset.
    /// Without URL, generates a dataset of random-byte images first (or reuses the one in --dir).
    Stats(stats::BenchStatsArgs),
    /// Ingest images/s against its floor (the image step alone, in memory) on a folder of
    /// images, in one run (`scripts/bench-ingest.sh` adds img2dataset on the same files).
    Ingest(ingest::BenchIngestArgs),
    /// Streaming loader throughput: augmented 224×224 u8 batches from WebDataset tars converted
    /// to flipstream shards (run by `scripts/bench-loader.sh`, next to a WebDataset pipeline).
    Loader(loader::LoaderBenchArgs),
    /// Synthetic pairs/s against the encoders alone, with the time per stage (scene, drawing,
    /// encoding) and per output format, in one run.
    Synth(synth::BenchSynthArgs),
    /// Learning fidelity: CLIP against FLIP at equal epochs and equal wall-clock, the bigger
    /// batch, unmasked tuning and masked inference, several seeds; writes docs/fidelity.md with
    /// a table and plots (tens of minutes on a CPU).
    Fidelity(fidelity::FidelityArgs),
}

/// Runs `flipstream bench …`.
pub(super) fn run(args: BenchArgs, global: Global) -> anyhow::Result<ExitCode> {
    match args.kind {
        BenchKind::TrainStep(a) => train_step::run(a, global),
        BenchKind::Stats(a) => stats::run(a, global),
        BenchKind::Loader(a) => loader::run(a, global),
        BenchKind::Ingest(a) => ingest::run(a, global),
        BenchKind::Synth(a) => synth::run(a, global),
        BenchKind::Fidelity(a) => fidelity::run(a, global),
    }
}
