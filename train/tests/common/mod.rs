//! Helpers shared by the trainer's integration tests: a very small model config and a learnable
//! synthetic task (solid-colour images ↔ one token per colour).

#![allow(dead_code, clippy::unwrap_used)]

use flipstream_train::objective::MaeClipSettings;
use flipstream_train::{
    ModelConfig, ObjectiveConfig, PatchEmbed, Precision, Preset, RunConfig, TextPool, TrainConfig,
    VisionPool,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// Eight colours, the corners of the RGB cube: the classes of the synthetic task.
pub(crate) const COLOURS: [[u8; 3]; 8] = [
    [0, 0, 0],
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [255, 0, 255],
    [0, 255, 255],
    [255, 255, 255],
];

/// A model far smaller than the tiny preset: 32 px, patch 8 (16 patches), width 64 × 2 blocks;
/// text 32 wide, 1 block, ctx 8, vocab 16 (end token 15).
pub(crate) fn micro_model() -> ModelConfig {
    ModelConfig {
        image_size: 32,
        patch_size: 8,
        vision_width: 64,
        vision_depth: 2,
        vision_heads: 2,
        vocab_size: 16,
        eot_id: Some(15),
        context_length: 8,
        text_width: 32,
        text_depth: 1,
        text_heads: 2,
        embed_dim: 32,
        ..Preset::Tiny.model()
    }
}

/// Training settings for [`micro_model`]: batch 8, lr 2e-3, 10 warmup steps, mask 0.5.
pub(crate) fn micro_train() -> TrainConfig {
    TrainConfig {
        batch_size: 8,
        base_lr: 2e-3 * 256.0 / 8.0,
        warmup_steps: 10,
        total_steps: 200,
        mask_ratio: 0.5,
        seed: 7,
        precision: Precision::Fp32,
        grad_clip_norm: Some(1.0),
        ..Preset::Tiny.train()
    }
}

/// The micro run config.
pub(crate) fn micro_run() -> RunConfig {
    RunConfig {
        model: micro_model(),
        train: micro_train(),
        objective: ObjectiveConfig::default(),
    }
}

/// The micro run trained with MAE+CLIP: a 32-wide, 1-block decoder, raw (not per-patch
/// normalised) pixel targets so that the colour task's patches can be reconstructed.
pub(crate) fn micro_run_mae() -> RunConfig {
    let mut run = micro_run();
    let mut settings = MaeClipSettings::for_model(&run.model);
    settings.decoder_width = 32;
    settings.decoder_depth = 1;
    settings.decoder_heads = 2;
    settings.norm_pix_loss = false;
    run.objective = ObjectiveConfig::MaeClip(settings);
    run
}

/// The micro run with CLS pooling.
pub(crate) fn micro_run_cls() -> RunConfig {
    let mut run = micro_run();
    run.model.vision_pool = VisionPool::Cls;
    run
}

/// The micro run with FLIP's own pooling: a CLS token inside the average.
pub(crate) fn micro_run_avg_cls() -> RunConfig {
    let mut run = micro_run();
    run.model.vision_pool = VisionPool::AvgCls;
    run
}

/// The micro run with the convolutional stem (hybrid ViT).
pub(crate) fn micro_run_conv() -> RunConfig {
    let mut run = micro_run();
    run.model.patch_embed = PatchEmbed::Conv;
    run
}

/// The micro run with FLIP's text tower: non-causal attention, pooled at the first token.
pub(crate) fn micro_run_flip_text() -> RunConfig {
    let mut run = micro_run();
    run.model.text_causal = false;
    run.model.text_pool = TextPool::First;
    run
}

/// The micro run with the text embedding averaged over the caption's tokens.
pub(crate) fn micro_run_mean_text() -> RunConfig {
    let mut run = micro_run();
    run.model.text_pool = TextPool::Mean;
    run
}

/// Every micro architecture variant.
pub(crate) fn micro_variants() -> Vec<RunConfig> {
    vec![
        micro_run(),
        micro_run_cls(),
        micro_run_avg_cls(),
        micro_run_conv(),
        micro_run_flip_text(),
        micro_run_mean_text(),
    ]
}

/// A batch of the colour task for `step`: each of the 8 classes once (shuffled), images of that
/// colour with ±20 noise, captions `[class + 1, 15 (EOT), pad…]`.
pub(crate) fn colour_batch(model: &ModelConfig, step: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + step);
    let mut classes: Vec<usize> = (0..COLOURS.len()).collect();
    for i in (1..classes.len()).rev() {
        classes.swap(i, rng.random_range(0..=i));
    }
    let side = model.image_size;
    let mut pixels = Vec::with_capacity(classes.len() * side * side * 3);
    let mut tokens = vec![0i64; classes.len() * model.context_length];
    for (row, &c) in classes.iter().enumerate() {
        for _ in 0..side * side {
            for value in COLOURS[c] {
                let noise: i32 = rng.random_range(-20..=20);
                pixels.push((value as i32 + noise).clamp(0, 255) as u8);
            }
        }
        tokens[row * model.context_length] = c as i64 + 1;
        tokens[row * model.context_length + 1] = model.vocab_size as i64 - 1;
    }
    let b = classes.len() as i64;
    (
        Tensor::from_slice(&pixels).view([b, side as i64, side as i64, 3]),
        Tensor::from_slice(&tokens).view([b, model.context_length as i64]),
    )
}

/// Element-wise equality of two tensors' values (bit for bit for float32).
pub(crate) fn same_values(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.eq_tensor(b).all().int64_value(&[]) == 1
}

/// Largest absolute difference.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
