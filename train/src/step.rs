//! [`TrainStep`]: the model, AdamW and the schedule together; one call of [`TrainStep::step`] is one
//! optimizer step from a batch of u8 images `[B, H, W, 3]` and token ids `[B, n]`.
//!
//! A step: move the batch to the device; draw the patch mask of this step from `(seed, step)` at the
//! schedule's mask ratio; the run's [`Objective`] forwards the batch (u8 → float and CLIP
//! normalisation happen on the device, see [`crate::model::vision`]); the loss is the weighted sum
//! of its terms — `contrastive` (symmetric InfoNCE) and the objective's own; gradients; one host
//! synchronisation to read the loss, every term, accuracy, gradient norm and logit scale (a NaN or
//! infinite loss or gradient norm is an error and the weights stay untouched); clip; AdamW at the
//! schedule's lr; clamp the logit scale.
//!
//! With `accum_steps = k > 1` the batch is cut into `k` micro-batches and the gradient still equals
//! the full-batch gradient: the features of all micro-batches are first computed without
//! gradients, then each micro-batch is recomputed with gradients and the loss is taken over the
//! whole batch with the other micro-batches' features held fixed (open_clip's `accum_freq`). The
//! logit scale's gradient is taken from the first micro-batch only, so it is counted once. The
//! objective's local terms are means over each micro-batch, weighted by `1/k`. This costs one
//! extra forward pass and keeps only one micro-batch's activations.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, TchError, Tensor};

use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION, TrainProgress};
use crate::config::RunConfig;
use crate::error::{Result, TorchContext, TrainError};
use crate::loss::clip_loss;
use crate::model::{ClipModel, Compute, ImageOutput, PatchMask, check_images, check_tokens};
use crate::objective::{self, Batch, Embeddings, Objective};
use crate::optim::{AdamW, Gradients};
use crate::schedule::{Phase, Schedule};

/// Separates inference masks (`encode_images_masked`) from the training masks of the same seed.
const EVAL_MASK_DOMAIN: u64 = 0x6576_616c_6d61_736b; // "evalmask"

/// What one optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The 0-based optimizer step this was.
    pub step: u64,
    /// The loss of the batch (before the update): the weighted sum of `terms`.
    pub loss: f64,
    /// Each loss term by name (`contrastive`, `reconstruction`, …), unweighted.
    pub terms: BTreeMap<String, f64>,
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
    objective: Box<dyn Objective>,
    optim: AdamW,
    schedule: Schedule,
    compute: Compute,
    step: u64,
}

impl TrainStep {
    /// A fresh run: validated config, model initialised from `train.seed`, zero optimizer state.
    /// On the CPU this also calls [`crate::cpu_memory::retain_freed_memory`].
    pub fn new(config: RunConfig, device: Device) -> Result<Self> {
        config.validate()?;
        if device == Device::Cpu {
            crate::cpu_memory::retain_freed_memory();
        }
        let (model, objective) = objective::build(&config, device)?;
        let optim = AdamW::new(model.params(), (&config.train).into())?;
        let schedule = Schedule::new(&config.train);
        let compute = Compute::for_precision(config.train.precision);
        Ok(TrainStep {
            config,
            model,
            objective,
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
    /// config (the model config and the objective must match the checkpoint's; see
    /// [`checkpoint::load`]).
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointMeta> {
        let saved = checkpoint::read_meta(dir)?;
        let differences =
            checkpoint::objective_differences(&saved.config.objective, &self.config.objective);
        if !differences.is_empty() {
            return Err(TrainError::CheckpointMismatch {
                path: dir.to_path_buf(),
                differences,
            });
        }
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
        let sv = self.schedule.at(self.step);
        let batch = self.prepare(images, tokens, sv.mask_ratio)?;
        let accum = self.config.train.accum_steps as i64;
        let mut losses = if accum == 1 {
            self.full_batch(&batch)?
        } else {
            self.accumulated(&batch, accum)?
        };
        let grad_norm = losses.grads.global_norm()?;
        let read = self.read_values(&losses, &grad_norm)?;
        for (what, value) in [("loss", read.loss), ("gradient norm", read.grad_norm)] {
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
        if let Some(max_norm) = self.config.train.grad_clip_norm {
            losses.grads.clip_(&grad_norm, max_norm)?;
        }
        self.optim.step(self.model.params(), &losses.grads, sv.lr)?;
        self.model.clamp_logit_scale_()?;
        let metrics = StepMetrics {
            step: self.step,
            loss: read.loss,
            terms: read.terms,
            accuracy: read.accuracy,
            lr: sv.lr,
            logit_scale: read.logit_scale,
            grad_norm: read.grad_norm,
            mask_ratio: sv.mask_ratio,
            phase: sv.phase,
        };
        self.step += 1;
        Ok(metrics)
    }

    /// Checks the batch and moves it to the device with this step's mask at `mask_ratio`.
    fn prepare(&self, images: &Tensor, tokens: &Tensor, mask_ratio: f64) -> Result<Batch> {
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
        let device = self.model.device();
        let prepare = || -> std::result::Result<Batch, TchError> {
            let mask = if mask_ratio > 0.0 {
                let m = PatchMask::random(
                    b as usize,
                    cfg.model.num_patches(),
                    mask_ratio,
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
        prepare().context(|| format!("moving batch of step {} to {device:?}", self.step))
    }

    /// Every value a step reports, read in one host synchronisation.
    fn read_values(&self, losses: &StepLosses, grad_norm: &Tensor) -> Result<ReadValues> {
        let fetch = || -> std::result::Result<Vec<f64>, TchError> {
            let scale = self
                .model
                .logit_scale()
                .map_err(|e| TchError::Kind(e.to_string()))?
                .f_detach()?;
            let mut all = vec![
                losses.accuracy.shallow_clone(),
                grad_norm.shallow_clone(),
                scale,
            ];
            for (_, _, value) in &losses.terms {
                all.push(value.f_detach()?);
            }
            let all = Tensor::f_stack(&all, 0)?;
            Vec::<f64>::try_from(&all.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)
        };
        let values = fetch().context(|| "reading step metrics".to_string())?;
        let [accuracy, grad_norm, logit_scale, ref terms @ ..] = values[..] else {
            return Err(TrainError::Torch {
                context: "reading step metrics".into(),
                source: TchError::Shape(format!("{values:?}")),
            });
        };
        let loss = losses
            .terms
            .iter()
            .zip(terms)
            .map(|((_, weight, _), value)| weight * value)
            .sum();
        Ok(ReadValues {
            loss,
            terms: losses
                .terms
                .iter()
                .zip(terms)
                .map(|((name, _, _), value)| (name.to_string(), *value))
                .collect(),
            accuracy,
            grad_norm,
            logit_scale,
        })
    }

    /// The weighted loss of one (micro-)batch: `contrastive` over `embeddings` (which may join
    /// other micro-batches' fixed embeddings) at `scale`, plus the local `terms` times
    /// `local_scale`.
    fn weighted_loss(
        &self,
        embeddings: Option<Embeddings>,
        scale: &Tensor,
        terms: Vec<objective::Term>,
        local_scale: f64,
    ) -> Result<WeightedLoss> {
        let mut parts: Vec<(&'static str, f64, Tensor)> = Vec::new();
        let mut accuracy = None;
        if let (Some(e), Some(weight)) = (embeddings, self.objective.contrastive_weight()) {
            let c = clip_loss(&e.images, &e.texts, scale).context(|| "contrastive loss".into())?;
            accuracy = Some(c.accuracy);
            parts.push(("contrastive", weight, c.loss));
        }
        parts.extend(terms.into_iter().map(|t| (t.name, t.weight, t.value)));
        let mut total: Option<Tensor> = None;
        for (name, weight, value) in &parts {
            let scaled = if *name == "contrastive" {
                value.f_mul_scalar(*weight)
            } else {
                value.f_mul_scalar(*weight * local_scale)
            }
            .context(|| format!("weighting the {name} term"))?;
            total = Some(match total {
                None => scaled,
                Some(t) => t.f_add(&scaled).context(|| "summing loss terms".into())?,
            });
        }
        let total = total.ok_or_else(|| TrainError::Input {
            what: "objective",
            detail: format!("{} produced no loss term", self.objective.kind()),
        })?;
        let accuracy = match accuracy {
            Some(a) => a,
            None => Tensor::f_zeros([], (Kind::Float, self.model.device()))
                .context(|| "accuracy".into())?,
        };
        Ok(WeightedLoss {
            total,
            accuracy,
            terms: parts,
        })
    }

    /// Loss terms, accuracy and gradients of one forward/backward over the whole batch.
    fn full_batch(&self, batch: &Batch) -> Result<StepLosses> {
        let out = self.objective.forward(&self.model, batch, self.compute)?;
        let scale = self.model.logit_scale()?;
        let loss = self.weighted_loss(out.embeddings, &scale, out.terms, 1.0)?;
        let grads = Gradients::backward(&loss.total, self.model.params())?;
        Ok(StepLosses {
            terms: loss.terms,
            accuracy: loss.accuracy,
            grads,
        })
    }

    /// The full-batch gradient in `accum` micro-batches (see the module docs).
    fn accumulated(&self, batch: &Batch, accum: i64) -> Result<StepLosses> {
        let micro = batch_size(&batch.images) / accum;
        let slice = |i: i64| {
            batch
                .narrow(i * micro, micro)
                .context(|| format!("micro-batch {i}"))
        };
        let cached = match self.objective.contrastive_weight() {
            Some(_) => tch::no_grad(|| {
                (0..accum)
                    .map(|i| {
                        self.objective
                            .embeddings(&self.model, &slice(i)?, self.compute)
                    })
                    .collect::<Result<Vec<_>>>()
            })?,
            None => Vec::new(),
        };
        let scale = self.model.logit_scale()?;
        let mut total: Option<Gradients> = None;
        let mut reported: Vec<(&'static str, f64, Tensor)> = Vec::new();
        let mut accuracy = None;
        for i in 0..accum {
            let out = self
                .objective
                .forward(&self.model, &slice(i)?, self.compute)?;
            let embeddings = out
                .embeddings
                .map(|own| join_micro_batches(&cached, i as usize, own))
                .transpose()?;
            // The logit scale's gradient is taken once, from the first micro-batch.
            let s = if i == 0 {
                scale.shallow_clone()
            } else {
                scale.f_detach().context(|| "logit scale".into())?
            };
            let loss = self.weighted_loss(embeddings, &s, out.terms, 1.0 / accum as f64)?;
            let grads = Gradients::backward(&loss.total, self.model.params())?;
            match &mut total {
                None => total = Some(grads),
                Some(t) => t.add_(&grads)?,
            }
            accuracy.get_or_insert(loss.accuracy);
            merge_reported(&mut reported, loss.terms, accum)?;
        }
        match (total, accuracy) {
            (Some(grads), Some(accuracy)) => Ok(StepLosses {
                terms: reported,
                accuracy,
                grads,
            }),
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
        Ok(self.image_outputs(images, ratio, draw)?.embeds)
    }

    /// The image tower's embeddings, pooled features and tokens, no gradient; `ratio` and `draw`
    /// as in [`TrainStep::encode_images_masked`].
    pub fn image_outputs(&self, images: &Tensor, ratio: f64, draw: u64) -> Result<ImageOutput> {
        if ratio <= 0.0 {
            return tch::no_grad(|| self.model.encode_image(images, None, self.compute));
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
        tch::no_grad(|| self.model.encode_image(images, Some(&mask), self.compute))
    }

    /// The objective's validation terms (such as MUG's caption loss) of a batch of whole images and
    /// their captions, no gradient; empty for objectives without any.
    pub fn validation_terms(&self, images: &Tensor, tokens: &Tensor) -> Result<Vec<(String, f64)>> {
        check_images(images, &self.config.model)?;
        check_tokens(tokens, &self.config.model)?;
        let device = self.model.device();
        let batch = Batch {
            images: images
                .f_to_device(device)
                .context(|| "validation images".into())?,
            tokens: tokens
                .f_to_device(device)
                .context(|| "validation tokens".into())?,
            mask: None,
        };
        let terms = tch::no_grad(|| {
            self.objective
                .validation_terms(&self.model, &batch, self.compute)
        })?;
        terms
            .into_iter()
            .map(|t| {
                let value = t.value.f_double_value(&[]).context(|| t.name.to_string())?;
                Ok((t.name.to_string(), value))
            })
            .collect()
    }

    /// L2-normalised text embeddings `[B, embed_dim]` of token ids, no gradient.
    pub fn encode_texts(&self, tokens: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.model.text_features(tokens, self.compute))
    }
}

/// A micro-batch's loss, and its terms for the report.
struct WeightedLoss {
    /// What the backward pass differentiates.
    total: Tensor,
    /// In-batch contrastive accuracy (0 without a contrastive term).
    accuracy: Tensor,
    /// `(name, weight, unweighted value)` of each term.
    terms: Vec<(&'static str, f64, Tensor)>,
}

/// A step's terms (over the whole batch), accuracy and gradients.
struct StepLosses {
    terms: Vec<(&'static str, f64, Tensor)>,
    accuracy: Tensor,
    grads: Gradients,
}

/// What [`TrainStep::read_values`] brings to the host.
struct ReadValues {
    loss: f64,
    terms: BTreeMap<String, f64>,
    accuracy: f64,
    grad_norm: f64,
    logit_scale: f64,
}

/// The whole batch's embeddings: the fixed ones of `cached` with micro-batch `own_index`'s
/// replaced by `own` (which carries gradients).
fn join_micro_batches(
    cached: &[Embeddings],
    own_index: usize,
    own: Embeddings,
) -> Result<Embeddings> {
    let join = |pick: &dyn Fn(&Embeddings) -> &Tensor, own: &Tensor| {
        let parts: Vec<Tensor> = cached
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if j == own_index {
                    own.shallow_clone()
                } else {
                    pick(c).shallow_clone()
                }
            })
            .collect();
        Tensor::f_cat(&parts, 0)
    };
    Ok(Embeddings {
        images: join(&|c| &c.images, &own.images).context(|| "joining image features".into())?,
        texts: join(&|c| &c.texts, &own.texts).context(|| "joining text features".into())?,
    })
}

/// Adds one micro-batch's terms to the step's report: `contrastive` (already over the whole
/// batch) from the first micro-batch, the local terms as the mean over the `accum` micro-batches.
fn merge_reported(
    reported: &mut Vec<(&'static str, f64, Tensor)>,
    terms: Vec<(&'static str, f64, Tensor)>,
    accum: i64,
) -> Result<()> {
    for (name, weight, value) in terms {
        let value = value.f_detach().context(|| format!("{name} term"))?;
        let share = if name == "contrastive" {
            value
        } else {
            value
                .f_div_scalar(accum as f64)
                .context(|| format!("{name} term"))?
        };
        match reported.iter_mut().find(|(n, _, _)| *n == name) {
            None => reported.push((name, weight, share)),
            Some((_, _, sum)) if name != "contrastive" => {
                *sum = sum.f_add(&share).context(|| format!("{name} term"))?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Size of the first dimension (0 for a scalar).
fn batch_size(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}
