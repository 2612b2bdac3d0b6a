//! Per-sample random patch masking (FLIP / MAE `random_masking`): uniform noise per patch, a stable
//! argsort, and the first ⌊L·(1−r)⌋ patches of that order are kept.
//!
//! The noise comes from a ChaCha stream keyed by `(seed, step)` and is drawn on the CPU, so a run
//! resumed at step `k` masks exactly as the uninterrupted run did, on any device and any number of
//! threads. The indices are then moved to the training device.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, TchError, Tensor};

use crate::config::kept_patches;

/// Separates the mask stream from the weight-initialisation stream of the same seed.
const MASK_STREAM_DOMAIN: u64 = 0x6d61_736b_5f66_6c69; // "mask_fli"

/// Which patches each sample keeps.
#[derive(Debug)]
pub struct PatchMask {
    /// `[B, K]` int64: indices of the kept patches, in noise order (MAE keeps them unsorted).
    pub ids_keep: Tensor,
    /// `[B, L]` int64: the inverse permutation, for decoders that put mask tokens back in place.
    pub ids_restore: Tensor,
    /// `[B, L]` float32: 0 where kept, 1 where removed (in original patch order).
    pub mask: Tensor,
}

impl PatchMask {
    /// The mask of `batch` samples with `num_patches` patches each at `ratio`, for optimizer step
    /// `step` of a run seeded with `seed`. Deterministic; built on the CPU.
    pub fn random(
        batch: usize,
        num_patches: usize,
        ratio: f64,
        seed: u64,
        step: u64,
    ) -> Result<Self, TchError> {
        Self::from_noise(&mask_noise(batch, num_patches, seed, step)?, ratio)
    }

    /// The mask for given `[B, L]` noise: small noise is kept first.
    pub fn from_noise(noise: &Tensor, ratio: f64) -> Result<Self, TchError> {
        let (batch, num_patches) = noise.size2()?;
        let keep = kept_patches(num_patches as usize, ratio) as i64;
        let ids_shuffle = noise.f_argsort_stable(true, 1, false)?;
        let ids_restore = ids_shuffle.f_argsort_stable(true, 1, false)?;
        let ids_keep = ids_shuffle.f_narrow(1, 0, keep)?.f_contiguous()?;
        // 0 for the first `keep` positions of the shuffled order, then unshuffled.
        let shuffled = Tensor::f_ones([batch, num_patches], (Kind::Float, noise.device()))?;
        let mut kept_head = shuffled.f_narrow(1, 0, keep)?;
        let _ = kept_head.f_fill_(0.0)?;
        let mask = shuffled.f_gather(1, &ids_restore, false)?;
        Ok(PatchMask {
            ids_keep,
            ids_restore,
            mask,
        })
    }

    /// Number of kept patches per sample.
    pub fn kept(&self) -> i64 {
        self.ids_keep.size().get(1).copied().unwrap_or(0)
    }

    /// The same mask on `device`.
    pub fn to_device(&self, device: Device) -> Result<Self, TchError> {
        Ok(PatchMask {
            ids_keep: self.ids_keep.f_to_device(device)?,
            ids_restore: self.ids_restore.f_to_device(device)?,
            mask: self.mask.f_to_device(device)?,
        })
    }

    /// Rows `start .. start + len` (one micro-batch).
    pub fn narrow(&self, start: i64, len: i64) -> Result<Self, TchError> {
        Ok(PatchMask {
            ids_keep: self.ids_keep.f_narrow(0, start, len)?,
            ids_restore: self.ids_restore.f_narrow(0, start, len)?,
            mask: self.mask.f_narrow(0, start, len)?,
        })
    }
}

/// Uniform [0, 1) noise `[batch, num_patches]` (float32, CPU) for step `step` of seed `seed`.
pub fn mask_noise(
    batch: usize,
    num_patches: usize,
    seed: u64,
    step: u64,
) -> Result<Tensor, TchError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ MASK_STREAM_DOMAIN);
    rng.set_stream(step);
    let noise: Vec<f32> = (0..batch * num_patches)
        .map(|_| rng.random::<f32>())
        .collect();
    Tensor::f_from_slice(&noise)?.f_view([batch as i64, num_patches as i64])
}
