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
//! With `accum_steps = k > 1`, or with more than one rank ([`World`]), the gradient still equals
//! the gradient of the loss over the **global** batch (every micro-batch of every rank), in the
//! GradCache manner: (1) the embeddings of the rank's micro-batches are computed without a graph
//! (with `k = 1` the forward pass with its graph is kept instead); (2) every rank's embeddings are
//! all-gathered, and the rank's rows of the contrastive loss against all `N` columns
//! ([`clip_loss_rows`], open_clip's `local_loss`) give, by one small backward pass, the loss's
//! gradient with respect to every gathered embedding and the logit scale; summed over the ranks
//! (an all-reduce of `[N, E]`), the rank's own rows of it are the exact gradient for its
//! embeddings (open_clip's `gather_with_grad`); (3) each micro-batch runs forward with its graph
//! and backward from `⟨embeddings, their gradient⟩` plus its local terms weighted `1/(k·W)`, so
//! only one micro-batch's activations are held; (4) the gradients are summed over the ranks in
//! flat buckets ([`World::all_reduce_grads`]). The logit scale's gradient enters once per rank,
//! from its rows, and the ranks' sum is the global one. Reported values (loss, terms, accuracy)
//! are reduced the same way, so every rank reports, checks and applies identical numbers and the
//! weights stay identical on every rank.
//!
//! Masks are drawn for the global batch from `(seed, step)` and each rank takes the rows of its
//! samples ([`TrainStep::step_rows`]), so a sample's mask does not depend on the world size.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, TchError, Tensor};

use crate::checkpoint::{self, CheckpointMeta, FORMAT_VERSION, Snapshot, TrainProgress};
use crate::config::RunConfig;
use crate::dist::{BUCKET_BYTES, World};
use crate::error::{Result, TorchContext, TrainError};
use crate::loss::{clip_loss, clip_loss_rows};
use crate::model::masking::mask_noise;
use crate::model::{ClipModel, Compute, ImageOutput, PatchMask, check_images, check_tokens};
use crate::objective::{self, Batch, Embeddings, Objective, ObjectiveOutput};
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
    world: World,
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
            world: World::single(),
        })
    }

    /// Makes this trainer one rank of `world`: every rank gets rank 0's weights and optimizer
    /// state (so that all start identical whatever their device's initialisation), and from now
    /// on each [`TrainStep::step_rows`] is a step over the global batch.
    pub fn join(&mut self, world: World) -> Result<()> {
        let mut tensors: Vec<Tensor> = self
            .model
            .params()
            .tensors()
            .into_iter()
            .map(Tensor::shallow_clone)
            .collect();
        tensors.extend(
            self.optim
                .state_tensors()
                .into_iter()
                .map(|(_, t)| t.shallow_clone()),
        );
        world.broadcast_from_main(&tensors)?;
        self.world = world;
        Ok(())
    }

    /// The ranks this trainer is one of.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Ends this trainer, handing back its ranks (to join another trainer).
    pub fn leave(self) -> World {
        self.world
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

    /// Replaces the towers' initial weights by `weights` (flipstream names, e.g. an open_clip
    /// import); the objective's heads keep theirs (see [`checkpoint::load_towers`]).
    pub fn load_towers(
        &mut self,
        weights: &std::collections::HashMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        checkpoint::load_towers(&self.model, weights, origin)
    }

    /// Saves weights, optimizer state and a sidecar with `progress` into `dir`.
    pub fn save_checkpoint(&self, dir: &Path, progress: &TrainProgress) -> Result<CheckpointMeta> {
        self.snapshot(progress)?.write(dir)
    }

    /// The checkpoint after the steps taken so far, copied to host memory: the part of a save
    /// that must happen before the next step ([`Snapshot::write`] does the rest).
    pub fn snapshot(&self, progress: &TrainProgress) -> Result<Snapshot> {
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
            checksums: Default::default(),
        };
        Snapshot::take(&self.model, &self.optim, &meta)
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
    /// `accum_steps`. With several ranks, this rank's share is taken to be rows `rank·B ..` of the
    /// global batch; see [`TrainStep::step_rows`].
    pub fn step(&mut self, images: &Tensor, tokens: &Tensor) -> Result<StepMetrics> {
        self.step_rows(images, tokens, None)
    }

    /// [`TrainStep::step`] on this rank's share of a global batch of `B · world_size` samples,
    /// sample `i` being row `rows[i]` of the global batch (its mask is that row's; the loader's
    /// [`flipstream_loader::Rank::global_rows`]).
    pub fn step_rows(
        &mut self,
        images: &Tensor,
        tokens: &Tensor,
        rows: Option<&[usize]>,
    ) -> Result<StepMetrics> {
        let sv = self.schedule.at(self.step);
        let accum = self.config.train.accum_steps_in(sv.phase) as i64;
        let batch = self.prepare(images, tokens, rows, sv.mask_ratio, accum)?;
        let mut losses = if accum == 1 && self.world.size() == 1 {
            self.full_batch(&batch)?
        } else {
            self.cached(&batch, accum)?
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
    fn prepare(
        &self,
        images: &Tensor,
        tokens: &Tensor,
        rows: Option<&[usize]>,
        mask_ratio: f64,
        accum: i64,
    ) -> Result<Batch> {
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
        if b % accum != 0 {
            return Err(TrainError::Input {
                what: "batch",
                detail: format!(
                    "{b} samples cannot be split into accum_steps = {accum} equal micro-batches"
                ),
            });
        }
        let rows = self.global_rows(b as usize, rows)?;
        let device = self.model.device();
        let prepare = || -> std::result::Result<Batch, TchError> {
            let mask = if mask_ratio > 0.0 {
                let global = b as usize * self.world.size();
                let noise = mask_noise(global, cfg.model.num_patches(), cfg.train.seed, self.step)?;
                let noise = match &rows {
                    None => noise,
                    Some(rows) => noise.f_index_select(0, &Tensor::f_from_slice(rows)?)?,
                };
                Some(PatchMask::from_noise(&noise, mask_ratio)?.to_device(device)?)
            } else {
                None
            };
            Ok(Batch {
                images: upload(images, device)?,
                tokens: upload(tokens, device)?,
                mask,
            })
        };
        prepare().context(|| format!("moving batch of step {} to {device:?}", self.step))
    }

    /// The global-batch rows of this rank's `b` samples (`None`: all rows, one process), checked.
    fn global_rows(&self, b: usize, rows: Option<&[usize]>) -> Result<Option<Vec<i64>>> {
        let (world, rank) = (self.world.size(), self.world.rank());
        let rows: Vec<usize> = match rows {
            Some(r) => r.to_vec(),
            None if world == 1 => return Ok(None),
            None => (rank * b..(rank + 1) * b).collect(),
        };
        let global = b * world;
        if rows.len() != b || rows.iter().any(|&r| r >= global) {
            return Err(TrainError::Input {
                what: "batch",
                detail: format!(
                    "{} global rows given for {b} samples of a global batch of {global}",
                    rows.len()
                ),
            });
        }
        Ok(Some(rows.into_iter().map(|r| r as i64).collect()))
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
        let mut parts: Vec<Reported> = Vec::new();
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

    /// The gradient of the loss over the global batch, from this rank's `accum` micro-batches
    /// (the GradCache scheme of the module docs).
    fn cached(&self, batch: &Batch, accum: i64) -> Result<StepLosses> {
        let micro = batch_size(&batch.images) / accum;
        let slice = |i: i64| {
            batch
                .narrow(i * micro, micro)
                .context(|| format!("micro-batch {i}"))
        };
        // (1) and (2): this rank's embeddings and their gradient; with one micro-batch the forward
        // pass (and its graph) is kept for (3).
        let mut kept: Option<ObjectiveOutput> = None;
        let contrastive = match self.objective.contrastive_weight() {
            None => None,
            Some(weight) => {
                let local = if accum == 1 {
                    let out = self.objective.forward(&self.model, batch, self.compute)?;
                    let e = detached(out.embeddings.as_ref(), self.objective.kind())?;
                    kept = Some(out);
                    e
                } else {
                    tch::no_grad(|| {
                        let parts = (0..accum)
                            .map(|i| {
                                self.objective
                                    .embeddings(&self.model, &slice(i)?, self.compute)
                            })
                            .collect::<Result<Vec<_>>>()?;
                        concat(&parts)
                    })?
                };
                Some((weight, self.embedding_gradients(&local)?))
            }
        };
        // (3) Each micro-batch with its graph, back from its embeddings' gradient and local terms.
        let mut total: Option<Gradients> = None;
        let mut reported: Vec<Reported> = Vec::new();
        for i in 0..accum {
            let out = match kept.take() {
                Some(out) => out,
                None => self
                    .objective
                    .forward(&self.model, &slice(i)?, self.compute)?,
            };
            let own = contrastive
                .as_ref()
                .map(|(weight, g)| (*weight, g, i * micro, micro));
            let loss = self.micro_batch_loss(&out, own, accum)?;
            let grads = Gradients::backward(&loss, self.model.params())?;
            match &mut total {
                None => total = Some(grads),
                Some(t) => t.add_(&grads)?,
            }
            let terms = out
                .terms
                .into_iter()
                .map(|t| (t.name, t.weight, t.value))
                .collect();
            merge_reported(&mut reported, terms, accum)?;
        }
        let grads = total.ok_or_else(|| TrainError::Input {
            what: "batch",
            detail: "no micro-batch".into(),
        })?;
        // (4) The global gradient.
        self.world
            .all_reduce_grads(grads.as_slice(), BUCKET_BYTES)?;
        let accuracy = match contrastive {
            Some((weight, g)) => {
                reported.insert(0, ("contrastive", weight, g.loss));
                g.accuracy
            }
            None => Tensor::f_zeros([], (Kind::Float, self.model.device()))
                .context(|| "accuracy".into())?,
        };
        let (terms, accuracy) = self.reduce_reported(reported, accuracy)?;
        Ok(StepLosses {
            terms,
            accuracy,
            grads,
        })
    }

    /// What micro-batch `out` back-propagates, (3) of the module docs: `⟨embeddings, their
    /// gradient⟩` (rows `start .. start + len` of the rank's embedding gradients `g`, times the
    /// contrastive `weight`; the logit scale's term with the first micro-batch) plus the local
    /// terms weighted `1/(accum · world size)`.
    fn micro_batch_loss(
        &self,
        out: &ObjectiveOutput,
        contrastive: Option<(f64, &EmbeddingGradients, i64, i64)>,
        accum: i64,
    ) -> Result<Tensor> {
        let mut parts: Vec<Tensor> = Vec::new();
        if let (Some((weight, g, start, len)), Some(e)) = (contrastive, &out.embeddings) {
            let rows = |t: &Tensor| t.f_narrow(0, start, len);
            let surrogate = || -> std::result::Result<Tensor, TchError> {
                let s = e.images.f_mul(&rows(&g.images)?)?.f_sum(Kind::Float)?;
                let s = s.f_add(&e.texts.f_mul(&rows(&g.texts)?)?.f_sum(Kind::Float)?)?;
                s.f_mul_scalar(weight)
            };
            parts.push(surrogate().context(|| "contrastive surrogate".into())?);
            if start == 0 {
                // The logit scale's gradient, once per rank.
                let scale = self.model.logit_scale()?;
                parts.push(
                    scale
                        .f_mul(&g.scale)
                        .and_then(|t| t.f_mul_scalar(weight))
                        .context(|| "logit scale surrogate".into())?,
                );
            }
        }
        let local_scale = 1.0 / (accum as f64 * self.world.size() as f64);
        for t in &out.terms {
            parts.push(
                t.value
                    .f_mul_scalar(t.weight * local_scale)
                    .context(|| format!("weighting the {} term", t.name))?,
            );
        }
        sum_all(parts).ok_or_else(|| TrainError::Input {
            what: "objective",
            detail: format!("{} produced no loss term", self.objective.kind()),
        })?
    }

    /// (2) of the module docs: the contrastive loss of this rank's rows over the gathered global
    /// batch, and its gradient with respect to this rank's `local` embeddings (summed over the
    /// ranks) and the logit scale (this rank's share).
    fn embedding_gradients(&self, local: &Embeddings) -> Result<EmbeddingGradients> {
        let (world, rank) = (self.world.size() as i64, self.world.rank() as i64);
        let b = batch_size(&local.images);
        let leaf = |t: Tensor| t.f_detach().map(|t| t.set_requires_grad(true));
        let all_images =
            leaf(self.world.all_gather(&local.images)?).context(|| "gathered images".into())?;
        let all_texts =
            leaf(self.world.all_gather(&local.texts)?).context(|| "gathered texts".into())?;
        let scale = leaf(self.model.logit_scale()?).context(|| "logit scale".into())?;
        let run = || -> std::result::Result<(Tensor, Tensor, Vec<Tensor>), TchError> {
            let offset = rank * b;
            let c = clip_loss_rows(
                &all_images.f_narrow(0, offset, b)?,
                &all_texts.f_narrow(0, offset, b)?,
                &all_images,
                &all_texts,
                &scale,
                offset,
            )?;
            // This rank's share of the global mean.
            let share = c.loss.f_div_scalar(world as f64)?;
            let grads = Tensor::f_run_backward(
                &[&share],
                &[&all_images, &all_texts, &scale],
                false,
                false,
            )?;
            Ok((
                share.f_detach()?,
                c.accuracy.f_div_scalar(world as f64)?,
                grads,
            ))
        };
        let (loss, accuracy, grads) =
            run().context(|| "contrastive loss over the global batch".into())?;
        let [g_images, g_texts, g_scale] =
            <[Tensor; 3]>::try_from(grads).map_err(|_| TrainError::Input {
                what: "objective",
                detail: "the contrastive loss gave no gradient".into(),
            })?;
        self.world.all_reduce_sum(&g_images)?;
        self.world.all_reduce_sum(&g_texts)?;
        let own = |g: &Tensor| g.f_narrow(0, rank * b, b).context(|| "own rows".into());
        Ok(EmbeddingGradients {
            images: own(&g_images)?,
            texts: own(&g_texts)?,
            scale: g_scale,
            loss,
            accuracy,
        })
    }

    /// Sums the ranks' shares of the reported values: `contrastive` and the accuracy are already
    /// shares, the local terms (means over this rank's samples) become means over the ranks.
    fn reduce_reported(
        &self,
        reported: Vec<Reported>,
        accuracy: Tensor,
    ) -> Result<(Vec<Reported>, Tensor)> {
        let world = self.world.size() as f64;
        let run = || -> std::result::Result<Tensor, TchError> {
            let mut values = vec![accuracy.f_reshape([1])?];
            for (name, _, v) in &reported {
                let v = v.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([1])?;
                values.push(if *name == "contrastive" {
                    v
                } else {
                    v.f_div_scalar(world)?
                });
            }
            Tensor::f_cat(&values, 0)
        };
        let values = run().context(|| "step values".into())?;
        self.world.all_reduce_sum(&values)?;
        let pick = |i: i64| values.f_get(i).context(|| "step values".into());
        let terms = reported
            .iter()
            .enumerate()
            .map(|(i, (name, weight, _))| Ok((*name, *weight, pick(i as i64 + 1)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok((terms, pick(0)?))
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

/// A loss term for the report: `(name, weight, unweighted value)`.
type Reported = (&'static str, f64, Tensor);

/// A micro-batch's loss, and its terms for the report.
struct WeightedLoss {
    /// What the backward pass differentiates.
    total: Tensor,
    /// In-batch contrastive accuracy (0 without a contrastive term).
    accuracy: Tensor,
    /// `(name, weight, unweighted value)` of each term.
    terms: Vec<Reported>,
}

/// A step's terms (over the whole batch), accuracy and gradients.
struct StepLosses {
    terms: Vec<Reported>,
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

/// What [`TrainStep::embedding_gradients`] returns.
struct EmbeddingGradients {
    /// `[b, E]`: the global loss's gradient for this rank's image embeddings.
    images: Tensor,
    /// `[b, E]`: likewise for the text embeddings.
    texts: Tensor,
    /// This rank's share of the logit scale's gradient (scalar).
    scale: Tensor,
    /// This rank's share of the global contrastive loss (no gradient).
    loss: Tensor,
    /// This rank's share of the global in-batch accuracy.
    accuracy: Tensor,
}

/// The embeddings of a forward pass, without their graph.
fn detached(e: Option<&Embeddings>, kind: objective::ObjectiveKind) -> Result<Embeddings> {
    let e = e.ok_or_else(|| TrainError::Input {
        what: "objective",
        detail: format!("{kind} has a contrastive weight but returned no embeddings"),
    })?;
    Ok(Embeddings {
        images: e.images.f_detach().context(|| "image embeddings".into())?,
        texts: e.texts.f_detach().context(|| "text embeddings".into())?,
    })
}

/// The micro-batches' embeddings, concatenated in order.
fn concat(parts: &[Embeddings]) -> Result<Embeddings> {
    let cat = |pick: &dyn Fn(&Embeddings) -> &Tensor| {
        let ts: Vec<&Tensor> = parts.iter().map(pick).collect();
        Tensor::f_cat(&ts, 0).context(|| "joining micro-batch embeddings".into())
    };
    Ok(Embeddings {
        images: cat(&|e| &e.images)?,
        texts: cat(&|e| &e.texts)?,
    })
}

/// The sum of `parts` (`None` when empty).
fn sum_all(parts: Vec<Tensor>) -> Option<Result<Tensor>> {
    let mut iter = parts.into_iter();
    let first = iter.next()?;
    Some(iter.try_fold(first, |acc, t| {
        acc.f_add(&t).context(|| "summing loss terms".into())
    }))
}

/// Adds one micro-batch's local terms to the step's report, as the mean over the `accum`
/// micro-batches.
fn merge_reported(reported: &mut Vec<Reported>, terms: Vec<Reported>, accum: i64) -> Result<()> {
    for (name, weight, value) in terms {
        let share = value
            .f_detach()
            .and_then(|v| v.f_div_scalar(accum as f64))
            .context(|| format!("{name} term"))?;
        match reported.iter_mut().find(|(n, _, _)| *n == name) {
            None => reported.push((name, weight, share)),
            Some((_, _, sum)) => *sum = sum.f_add(&share).context(|| format!("{name} term"))?,
        }
    }
    Ok(())
}

/// `t` on `device`. A host tensor bound for a GPU goes through pinned (page-locked) memory with a
/// non-blocking copy, so the host does not wait for the transfer and the copy can overlap the
/// device's work already queued.
fn upload(t: &Tensor, device: Device) -> std::result::Result<Tensor, TchError> {
    match device {
        Device::Cuda(_) if t.device() == Device::Cpu => {
            t.f_pin_memory(device)?
                .f_to_device_(device, t.kind(), true, false)
        }
        _ => t.f_to_device(device),
    }
}

/// Size of the first dimension (0 for a scalar).
fn batch_size(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}
