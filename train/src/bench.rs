//! The train-step benchmark (`flipstream bench train-step`): full optimizer steps (forward, loss,
//! backward, AdamW) on random data, timed per mask ratio in one process.
//!
//! Each mask ratio gets a fresh [`TrainStep`] (same seed, same batch), `warmup` untimed steps and
//! `steps` timed ones; the median is reported with images/s, the speedup over mask 0 and the
//! achieved matmul FLOP/s from [`flops_per_sample`] (MFU when the device's peak is given). Every
//! step reads its metrics back to the host, so a step's time includes all device work.
//!
//! With several ranks ([`StepBenchOptions::dist`]) the batch is the global batch, each rank steps
//! on its share, and the time each step spends in collectives (all-gather of the embeddings,
//! gradient all-reduce, waiting for the slower rank included) is reported beside the step time.
//!
//! Settings mirror `bench/openclip_step.py`, the open_clip peer: no gradient clipping, no
//! accumulation, AdamW (0.9, 0.95), wd 0.2, the same random batch every step.

use std::time::Instant;

use flipstream_shard::problems::Problem;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Tensor};

use crate::config::{ModelConfig, Precision, Preset, RunConfig, TrainConfig, kept_patches};
use crate::dist::{DistSetup, World};
use crate::error::{Result, TorchContext, TrainError};
use crate::model::flops_per_sample;
use crate::objective::ObjectiveConfig;
use crate::step::TrainStep;

/// User + system CPU time of this process so far (Linux; `None` elsewhere).
pub use flipstream_loader::bench::process_cpu_seconds;

/// What to measure.
#[derive(Debug, Clone)]
pub struct StepBenchOptions {
    /// Name shown in the report (a preset name or a config path).
    pub model_name: String,
    /// The architecture.
    pub model: ModelConfig,
    /// The objective (its heads are part of each step; FLOP counts cover the two towers only).
    pub objective: ObjectiveConfig,
    /// Images per step.
    pub batch: usize,
    /// Mask ratios, each in [0, 1), measured in this order.
    pub mask_ratios: Vec<f64>,
    /// Timed steps per mask ratio.
    pub steps: usize,
    /// Untimed steps per mask ratio before timing.
    pub warmup: usize,
    /// libtorch intra-op threads; `None` keeps libtorch's default.
    pub threads: Option<usize>,
    /// Where to run.
    pub device: Device,
    /// fp32 or bf16.
    pub precision: Precision,
    /// Seed of the weights, data and masks.
    pub seed: u64,
    /// The device's peak in TFLOP/s, for MFU.
    pub peak_tflops: Option<f64>,
    /// This process's place among the ranks ([`DistSetup::single`] for one process).
    pub dist: DistSetup,
}

/// Timings of one mask ratio.
#[derive(Debug, Clone, Serialize)]
pub struct MaskTiming {
    /// Fraction of patches removed.
    pub mask_ratio: f64,
    /// Patch tokens kept per image.
    pub kept_patches: usize,
    /// Median step time.
    pub median_s: f64,
    /// Fastest step.
    pub min_s: f64,
    /// Slowest step.
    pub max_s: f64,
    /// Every timed step, in order.
    pub step_times_s: Vec<f64>,
    /// Median CPU time of the process per timed step (user + system, all threads; Linux only).
    /// Less sensitive than wall time to other processes on a shared machine.
    pub median_cpu_s: Option<f64>,
    /// Median time per step spent in collectives (several ranks only).
    pub comm_median_s: Option<f64>,
    /// `comm_median_s / median_s`.
    pub comm_share: Option<f64>,
    /// `batch / median_s` (the global batch: all ranks together).
    pub images_per_s: f64,
    /// Median step time at mask 0 divided by this one (when mask 0 was measured).
    pub speedup_vs_unmasked: Option<f64>,
    /// Training matmul FLOPs per image-text pair.
    pub flops_per_sample: f64,
    /// Achieved matmul TFLOP/s at the median.
    pub achieved_tflops: f64,
    /// `achieved_tflops / (peak_tflops · ranks)`, when the peak (of one device) was given.
    pub mfu: Option<f64>,
    /// Loss of the last step (a sanity check: finite, near ln(batch)).
    pub last_loss: f64,
}

/// The whole benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepBenchReport {
    /// Model name (preset or config).
    pub model_name: String,
    /// The architecture measured.
    pub model: ModelConfig,
    /// The objective measured.
    pub objective: ObjectiveConfig,
    /// Trainable scalars.
    pub parameters: usize,
    /// Images per step (the global batch).
    pub batch: usize,
    /// Ranks sharing each batch.
    pub ranks: usize,
    /// Timed steps per mask ratio.
    pub steps: usize,
    /// Untimed steps per mask ratio.
    pub warmup: usize,
    /// libtorch intra-op threads in effect (per rank).
    pub threads: i32,
    /// Device, as libtorch names it.
    pub device: String,
    /// Precision.
    pub precision: Precision,
    /// One entry per mask ratio.
    pub results: Vec<MaskTiming>,
}

/// Progress of the benchmark, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct BenchProgress {
    /// Mask ratio being measured.
    pub mask_ratio: f64,
    /// Steps done for this ratio (warmup included).
    pub done: usize,
    /// Steps planned for this ratio (warmup included).
    pub total: usize,
    /// Duration of the step just done.
    pub seconds: f64,
}

/// A random batch: u8 images and right-padded token ids ending in the highest id (CLIP's EOT).
pub fn random_batch(model: &ModelConfig, batch: usize, seed: u64) -> Result<(Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let side = model.image_size;
    let pixels: Vec<u8> = (0..batch * side * side * 3).map(|_| rng.random()).collect();
    let ctx = model.context_length;
    let eot = model.vocab_size.saturating_sub(1) as i64;
    let mut tokens = vec![model.pad_id as i64; batch * ctx];
    for row in tokens.chunks_mut(ctx) {
        let len = rng.random_range(ctx.min(2)..=ctx);
        for t in row.iter_mut().take(len) {
            *t = rng.random_range(1..eot.max(2));
        }
        if let Some(last) = row.get_mut(len.saturating_sub(1)) {
            *last = eot;
        }
    }
    let build = || -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        Ok((
            Tensor::f_from_slice(&pixels)?.f_view([batch as i64, side as i64, side as i64, 3])?,
            Tensor::f_from_slice(&tokens)?.f_view([batch as i64, ctx as i64])?,
        ))
    };
    build().context(|| "building the random batch".into())
}

/// The run config the benchmark uses for `mask_ratio`.
fn bench_config(opts: &StepBenchOptions, mask_ratio: f64) -> RunConfig {
    RunConfig {
        model: opts.model.clone(),
        train: bench_train_config(opts, mask_ratio),
        objective: opts.objective.clone(),
    }
}

/// The training config the benchmark uses for `mask_ratio`.
fn bench_train_config(opts: &StepBenchOptions, mask_ratio: f64) -> TrainConfig {
    TrainConfig {
        batch_size: opts.batch,
        warmup_steps: 0,
        total_steps: 1_000_000,
        grad_clip_norm: None,
        accum_steps: 1,
        mask_ratio,
        unmasked_tune: None,
        seed: opts.seed,
        precision: opts.precision,
        ..Preset::Small.train()
    }
}

/// The objective to time; a CAE v2 objective without a teacher gets a fresh CLIP model of the same
/// shape, saved in the returned temporary folder (kept alive by the caller).
fn with_bench_teacher(
    opts: &StepBenchOptions,
) -> Result<(ObjectiveConfig, Option<tempfile::TempDir>)> {
    let ObjectiveConfig::CaeV2(settings) = &opts.objective else {
        return Ok((opts.objective.clone(), None));
    };
    if !settings.teacher.trim().is_empty() {
        return Ok((opts.objective.clone(), None));
    }
    let dir = tempfile::tempdir().map_err(|source| TrainError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let config = RunConfig {
        objective: ObjectiveConfig::for_kind(crate::objective::ObjectiveKind::Clip, &opts.model),
        ..bench_config(opts, 0.0)
    };
    let teacher = TrainStep::new(config, Device::Cpu)?;
    teacher.save_checkpoint(dir.path(), &crate::checkpoint::TrainProgress::default())?;
    let mut settings = settings.clone();
    settings.teacher = dir.path().display().to_string();
    Ok((ObjectiveConfig::CaeV2(settings), Some(dir)))
}

/// Runs the benchmark; `progress` is called after every step.
pub fn run_train_step_bench(
    opts: &StepBenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<StepBenchReport> {
    let mut problems = Vec::new();
    for (key, value) in [("steps", opts.steps), ("batch", opts.batch)] {
        if value == 0 {
            problems.push(Problem::new(key, "must be at least 1"));
        }
    }
    if opts.mask_ratios.is_empty() {
        problems.push(Problem::new("mask_ratios", "must hold at least one ratio"));
    }
    crate::config::into_result(problems)?;
    // CAE v2 without a teacher: a freshly initialised CLIP model of the same shape serves (the
    // teacher's weights do not change the cost of a step).
    let (objective, _teacher_dir) = with_bench_teacher(opts)?;
    let opts = &StepBenchOptions {
        objective,
        ..opts.clone()
    };
    for &r in &opts.mask_ratios {
        bench_config(opts, r).validate()?;
    }
    if let Some(n) = opts.threads {
        tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
    }
    let ranks = opts.dist.world_size.max(1);
    if !opts.batch.is_multiple_of(ranks) {
        return Err(TrainError::DistSetup(format!(
            "the batch of {} is not divisible by {ranks} ranks",
            opts.batch
        )));
    }
    let (images, tokens) = random_batch(&opts.model, opts.batch, opts.seed)?;
    // This rank's share of the global batch.
    let share = (opts.batch / ranks) as i64;
    let first = opts.dist.rank as i64 * share;
    let (images, tokens) = (
        images.narrow(0, first, share),
        tokens.narrow(0, first, share),
    );
    let mut world = World::connect(&opts.dist, opts.device)?;
    let mut results: Vec<MaskTiming> = Vec::new();
    let mut parameters = 0;
    for &mask_ratio in &opts.mask_ratios {
        let mut trainer = TrainStep::new(bench_config(opts, mask_ratio), opts.device)?;
        trainer.join(world)?;
        parameters = trainer.model().params().num_elements();
        let total = opts.warmup + opts.steps;
        let mut times = Vec::with_capacity(opts.steps);
        let mut cpu_times = Vec::with_capacity(opts.steps);
        let mut comm_times = Vec::with_capacity(opts.steps);
        let mut last_loss = f64::NAN;
        for i in 0..total {
            let cpu_start = process_cpu_seconds();
            let comm_start = trainer.world().comm_time();
            let start = Instant::now();
            let metrics = trainer.step(&images, &tokens)?;
            let seconds = start.elapsed().as_secs_f64();
            last_loss = metrics.loss;
            if i >= opts.warmup {
                times.push(seconds);
                comm_times.push((trainer.world().comm_time() - comm_start).as_secs_f64());
                if let (Some(a), Some(b)) = (cpu_start, process_cpu_seconds()) {
                    cpu_times.push(b - a);
                }
            }
            progress(BenchProgress {
                mask_ratio,
                done: i + 1,
                total,
                seconds,
            });
        }
        world = trainer.leave();
        let median_s = median(&times);
        let comm_median_s = (ranks > 1).then(|| median(&comm_times));
        let flops = flops_per_sample(&opts.model, mask_ratio);
        let achieved_tflops = flops * opts.batch as f64 / median_s / 1e12;
        results.push(MaskTiming {
            mask_ratio,
            kept_patches: kept_patches(opts.model.num_patches(), mask_ratio),
            median_s,
            min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
            max_s: times.iter().copied().fold(0.0, f64::max),
            step_times_s: times,
            median_cpu_s: (cpu_times.len() == opts.steps).then(|| median(&cpu_times)),
            comm_median_s,
            comm_share: comm_median_s.map(|c| c / median_s),
            images_per_s: opts.batch as f64 / median_s,
            speedup_vs_unmasked: None,
            flops_per_sample: flops,
            achieved_tflops,
            mfu: opts
                .peak_tflops
                .filter(|p| *p > 0.0)
                .map(|p| achieved_tflops / (p * ranks as f64)),
            last_loss,
        });
    }
    if let Some(base) = results
        .iter()
        .find(|r| r.mask_ratio == 0.0)
        .map(|r| r.median_s)
    {
        for r in &mut results {
            r.speedup_vs_unmasked = Some(base / r.median_s);
        }
    }
    Ok(StepBenchReport {
        model_name: opts.model_name.clone(),
        model: opts.model.clone(),
        objective: opts.objective.clone(),
        parameters,
        batch: opts.batch,
        ranks,
        steps: opts.steps,
        warmup: opts.warmup,
        threads: tch::get_num_threads(),
        device: format!("{:?}", opts.device).to_lowercase(),
        precision: opts.precision,
        results,
    })
}

/// Median of a non-empty list (mean of the middle two for even lengths); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
