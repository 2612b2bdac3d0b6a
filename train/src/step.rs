//! [`TrainStep`]: the model, AdamW and the schedule together; one call of [`TrainStep::step`] is one
//! optimizer step from a batch of u8 images `[B, H, W, 3]` and token ids `[B, n]`.
//!
//! A step: move the batch to the device; draw the patch mask of this step from `(seed, step)` at the
//! schedule's mask ratio; forward both towers (u8 → float and CLIP normalisation happen on the
//! device, see [`crate::model::vision`]); symmetric InfoNCE; gradients; one host synchronisation
//! to read loss, accuracy, gradient norm and logit scale (a NaN or infinite loss or gradient norm
//! is an error and the weights stay untouched); clip; AdamW at the schedule's lr; clamp the logit
//! scale.
//!
//! With `accum_steps = k > 1` the batch is cut into `k` micro-batches and the gradient still equals
//! the full-batch gradient: the features of all micro-batches are first computed without
//! gradients, then each micro-batch is recomputed with gradients and the loss is taken over the
//! whole batch with the other micro-batches' features held fixed (open_clip's `accum_freq`). The
//! logit scale's gradient is taken from the first micro-batch only, so it is counted once. This
//! costs one extra forward pass and keeps only one micro-batch's activations.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, TchError, Tensor};

use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION, TrainProgress};
use crate::config::RunConfig;
use crate::error::{Result, TorchContext, TrainError};
use crate::loss::clip_loss;
use crate::model::{ClipModel, Compute, PatchMask, check_images, check_tokens};
use crate::optim::{AdamW, Gradients};
use crate::schedule::{Phase, Schedule};

/// Separates inference masks (`encode_images_masked`) from the training masks of the same seed.
const EVAL_MASK_DOMAIN: u64 = 0x6576_616c_6d61_736b; // "evalmask"

/// What one optimizer step reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The 0-based optimizer step this was.
    pub step: u64,
    /// Contrastive loss of the batch (before the update).
    pub loss: f64,
    /// Mean image→text / text→image in-batch top-1 accuracy.
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// The logit scale (exp of its log) used in the loss.
    pub logit_scale: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Fraction of patches removed.
    pub mask_ratio: f64,
    /// Schedule phase.
    pub phase: Phase,
}

/// Model + optimizer + schedule, stepping on batches.
#[derive(Debug)]
pub struct TrainStep {
    config: RunConfig,
    model: ClipModel,
    optim: AdamW,
    schedule: Schedule,
    compute: Compute,
    step: u64,
}

/// A batch moved to the device, and its mask.
struct Batch {
    images: Tensor,
    tokens: Tensor,
    mask: Option<PatchMask>,
}

impl Batch {
    /// Rows `start .. start + len`.
    fn narrow(&self, start: i64, len: i64) -> std::result::Result<Batch, TchError> {
        Ok(Batch {
            images: self.images.f_narrow(0, start, len)?,
            tokens: self.tokens.f_narrow(0, start, len)?,
            mask: self
                .mask
                .as_ref()
                .map(|m| m.narrow(start, len))
                .transpose()?,
        })
    }
}

impl TrainStep {
    /// A fresh run: validated config, model initialised from `train.seed`, zero optimizer state.
    /// On the CPU this also calls [`crate::cpu_memory::retain_freed_memory`].
    pub fn new(config: RunConfig, device: Device) -> Result<Self> {
        config.validate()?;
        if device == Device::Cpu {
            crate::cpu_memory::retain_freed_memory();
        }
        let model = ClipModel::new(&config.model, config.train.seed, device)?;
        let optim = AdamW::new(model.params(), (&config.train).into())?;
        let schedule = Schedule::new(&config.train);
        let compute = Compute::for_precision(config.train.precision);
        Ok(TrainStep {
            config,
            model,
            optim,
            schedule,
            compute,
            step: 0,
        })
    }

    /// Continues the run saved in checkpoint folder `dir`, with the config stored in it (so the
    /// schedule and masks continue exactly).
    pub fn resume(dir: &Path, device: Device) -> Result<(Self, CheckpointMeta)> {
        let meta = checkpoint::read_meta(dir)?;
        let mut trainer = TrainStep::new(meta.config.clone(), device)?;
        let meta = trainer.load_checkpoint(dir)?;
        Ok((trainer, meta))
    }

    /// Loads weights, optimizer state and step from `dir` into this trainer, keeping this trainer's
    /// config (the model config must match the checkpoint's; see [`checkpoint::load`]).
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointMeta> {
        let meta = checkpoint::load(dir, &self.model, Some(&mut self.optim))?;
        self.step = meta.step;
        Ok(meta)
    }

    /// Saves weights, optimizer state and a sidecar with `progress` into `dir`.
    pub fn save_checkpoint(&self, dir: &Path, progress: &TrainProgress) -> Result<CheckpointMeta> {
        let meta = CheckpointMeta {
            format_version: FORMAT_VERSION,
            step: self.step,
            schedule: self.schedule.at(self.step),
            total_steps: self.schedule.total_steps(),
            seed: self.config.train.seed,
            model_fingerprint: self.config.model.fingerprint(),
            config: self.config.clone(),
            progress: progress.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            flipstream_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        checkpoint::save(dir, &self.model, &self.optim, &meta)?;
        Ok(meta)
    }

    /// The run's config.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW {
        &self.optim
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Optimizer steps taken: the index of the next step.
    pub fn global_step(&self) -> u64 {
        self.step
    }

    /// Where the model lives.
    pub fn device(&self) -> Device {
        self.model.device()
    }

    /// One optimizer step on a batch: u8 `images` `[B, image_size, image_size, 3]` (HWC RGB) and
    /// int64 `tokens` `[B, n]` padded with `pad_id`, on any device. `B` must be divisible by
    /// `accum_steps`.
    pub fn step(&mut self, images: &Tensor, tokens: &Tensor) -> Result<StepMetrics> {
        let cfg = &self.config;
        check_images(images, &cfg.model)?;
        check_tokens(tokens, &cfg.model)?;
        let (b, b_tokens) = (batch_size(images), batch_size(tokens));
        if b != b_tokens {
            return Err(TrainError::Input {
                what: "batch",
                detail: format!("{b} images but {b_tokens} token rows"),
            });
        }
        let accum = cfg.train.accum_steps as i64;
        if b % accum != 0 {
            return Err(TrainError::Input {
                what: "batch",
                detail: format!(
                    "{b} samples cannot be split into train.accum_steps = {accum} equal micro-batches"
                ),
            });
        }
        let sv = self.schedule.at(self.step);
        let device = self.model.device();
        let prepare = || -> std::result::Result<Batch, TchError> {
            let mask = if sv.mask_ratio > 0.0 {
                let m = PatchMask::random(
                    b as usize,
                    cfg.model.num_patches(),
                    sv.mask_ratio,
                    cfg.train.seed,
                    self.step,
                )?;
                Some(m.to_device(device)?)
            } else {
                None
            };
            Ok(Batch {
                images: images.f_to_device(device)?,
                tokens: tokens.f_to_device(device)?,
                mask,
            })
        };
        let batch =
            prepare().context(|| format!("moving batch of step {} to {device:?}", self.step))?;
        let (loss, accuracy, mut grads) = if accum == 1 {
            self.full_batch(&batch)?
        } else {
            self.accumulated(&batch, accum)?
        };
        let grad_norm = grads.global_norm()?;
        let fetch = || -> std::result::Result<Vec<f64>, TchError> {
            let scale = self
                .model
                .logit_scale()
                .map_err(|e| TchError::Kind(e.to_string()))?
                .f_detach()?;
            let all = Tensor::f_stack(
                &[
                    loss.f_detach()?,
                    accuracy.shallow_clone(),
                    grad_norm.shallow_clone(),
                    scale,
                ],
                0,
            )?;
            Vec::<f64>::try_from(&all.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)
        };
        let values = fetch().context(|| "reading step metrics".to_string())?;
        let [loss, accuracy, grad_norm_value, logit_scale] = values[..] else {
            return Err(TrainError::Torch {
                context: "reading step metrics".into(),
                source: TchError::Shape(format!("{values:?}")),
            });
        };
        for (what, value) in [("loss", loss), ("gradient norm", grad_norm_value)] {
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    what,
                    value,
                    step: self.step,
                    lr: sv.lr,
                    mask_ratio: sv.mask_ratio,
                });
            }
        }
        if let Some(max_norm) = cfg.train.grad_clip_norm {
            grads.clip_(&grad_norm, max_norm)?;
        }
        self.optim.step(self.model.params(), &grads, sv.lr)?;
        self.model.clamp_logit_scale_()?;
        let metrics = StepMetrics {
            step: self.step,
            loss,
            accuracy,
            lr: sv.lr,
            logit_scale,
            grad_norm: grad_norm_value,
            mask_ratio: sv.mask_ratio,
            phase: sv.phase,
        };
        self.step += 1;
        Ok(metrics)
    }

    /// Loss, accuracy and gradients of one forward/backward over the whole batch.
    fn full_batch(&self, batch: &Batch) -> Result<(Tensor, Tensor, Gradients)> {
        let out = self.model.forward(
            &batch.images,
            &batch.tokens,
            batch.mask.as_ref(),
            self.compute,
        )?;
        let loss = clip_loss(&out.image_embeds, &out.text_embeds, &out.logit_scale)
            .context(|| "contrastive loss".into())?;
        let grads = Gradients::backward(&loss.loss, self.model.params())?;
        Ok((loss.loss, loss.accuracy, grads))
    }

    /// The full-batch gradient in `accum` micro-batches (see the module docs).
    fn accumulated(&self, batch: &Batch, accum: i64) -> Result<(Tensor, Tensor, Gradients)> {
        let micro = batch_size(&batch.images) / accum;
        let slice = |i: i64| {
            batch
                .narrow(i * micro, micro)
                .context(|| format!("micro-batch {i}"))
        };
        let features = |m: &Batch| -> Result<(Tensor, Tensor)> {
            Ok((
                self.model
                    .image_features(&m.images, m.mask.as_ref(), self.compute)?,
                self.model.text_features(&m.tokens, self.compute)?,
            ))
        };
        let cached = tch::no_grad(|| {
            (0..accum)
                .map(|i| features(&slice(i)?))
                .collect::<Result<Vec<_>>>()
        })?;
        let scale = self.model.logit_scale()?;
        let mut total: Option<Gradients> = None;
        let mut first: Option<(Tensor, Tensor)> = None;
        for i in 0..accum {
            let (img, txt) = features(&slice(i)?)?;
            let join = |pick: &dyn Fn(&(Tensor, Tensor)) -> Tensor,
                        own: &Tensor|
             -> std::result::Result<Tensor, TchError> {
                let parts: Vec<Tensor> = cached
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        if j as i64 == i {
                            own.shallow_clone()
                        } else {
                            pick(c)
                        }
                    })
                    .collect();
                Tensor::f_cat(&parts, 0)
            };
            let all_img =
                join(&|c| c.0.shallow_clone(), &img).context(|| "joining image features".into())?;
            let all_txt =
                join(&|c| c.1.shallow_clone(), &txt).context(|| "joining text features".into())?;
            let s = if i == 0 {
                scale.shallow_clone()
            } else {
                scale.f_detach().context(|| "logit scale".into())?
            };
            let loss = clip_loss(&all_img, &all_txt, &s)
                .context(|| format!("contrastive loss of micro-batch {i}"))?;
            let grads = Gradients::backward(&loss.loss, self.model.params())?;
            match &mut total {
                None => total = Some(grads),
                Some(t) => t.add_(&grads)?,
            }
            if first.is_none() {
                first = Some((loss.loss, loss.accuracy));
            }
        }
        match (first, total) {
            (Some((loss, accuracy)), Some(grads)) => Ok((loss, accuracy, grads)),
            _ => Err(TrainError::Input {
                what: "batch",
                detail: "no micro-batch".into(),
            }),
        }
    }

    /// L2-normalised image embeddings `[B, embed_dim]` of u8 images, every patch, no gradient.
    pub fn encode_images(&self, images: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.model.image_features(images, None, self.compute))
    }

    /// Like [`TrainStep::encode_images`] with a fraction `ratio` of the patches removed (FLIP
    /// Table 1d's masked inference). The mask is drawn from the run's seed and `draw` (one value
    /// per batch), in a stream apart from the training masks; ratio 0 encodes every patch.
    pub fn encode_images_masked(&self, images: &Tensor, ratio: f64, draw: u64) -> Result<Tensor> {
        if ratio <= 0.0 {
            return self.encode_images(images);
        }
        check_images(images, &self.config.model)?;
        let mask = PatchMask::random(
            batch_size(images) as usize,
            self.config.model.num_patches(),
            ratio,
            self.config.train.seed ^ EVAL_MASK_DOMAIN,
            draw,
        )
        .context(|| format!("drawing an inference mask at ratio {ratio}"))?;
        tch::no_grad(|| self.model.image_features(images, Some(&mask), self.compute))
    }

    /// L2-normalised text embeddings `[B, embed_dim]` of token ids, no gradient.
    pub fn encode_texts(&self, tokens: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.model.text_features(tokens, self.compute))
    }
}

/// Size of the first dimension (0 for a scalar).
fn batch_size(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}
