//! AdamW on plain tensors ([`AdamW`]), so that its step count and moments can be saved and restored
//! exactly, and gradient handling ([`Gradients`]): collection from a backward pass, accumulation,
//! global-norm clipping.
//!
//! The update is PyTorch's AdamW (decoupled weight decay, bias-corrected moments):
//!
//! ```text
//! p ← p · (1 − lr·wd)                       only for parameters that decay
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! Weight decay follows [`applies_weight_decay`](crate::model::applies_weight_decay): none for
//! tensors with fewer than 2 dimensions (biases, norm weights, logit scale), the CLS token and
//! position embeddings.

mod fused_cpu;

use std::collections::HashMap;

use tch::{Kind, TchError, Tensor};

use crate::config::TrainConfig;
use crate::error::{Result, TorchContext};
use crate::model::ParamStore;

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay for the parameters that decay.
    pub weight_decay: f64,
}

impl From<&TrainConfig> for AdamWConfig {
    fn from(c: &TrainConfig) -> Self {
        AdamWConfig {
            beta1: c.betas[0],
            beta2: c.betas[1],
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }
}

/// One gradient per trainable parameter, in the [`ParamStore`]'s order.
#[derive(Debug)]
pub struct Gradients {
    grads: Vec<Tensor>,
}

impl Gradients {
    /// Gradients of the scalar `loss` with respect to every trainable parameter (a parameter the
    /// loss does not depend on gets zeros). Nothing accumulates in `.grad`: there is nothing to zero between steps.
    pub fn backward(loss: &Tensor, params: &ParamStore) -> Result<Self> {
        let tensors = params.tensors();
        let run = || -> std::result::Result<Vec<Tensor>, TchError> {
            let grads = Tensor::f_run_backward(&[loss], &tensors, false, false)?;
            grads
                .into_iter()
                .zip(&tensors)
                .map(|(g, p)| if g.defined() { Ok(g) } else { p.f_zeros_like() })
                .collect()
        };
        Ok(Gradients {
            grads: run().context(|| "backward pass".to_string())?,
        })
    }

    /// The gradients in parameter order.
    pub fn as_slice(&self) -> &[Tensor] {
        &self.grads
    }

    /// Adds `other` element-wise (gradient accumulation).
    pub fn add_(&mut self, other: &Gradients) -> Result<()> {
        for (g, o) in self.grads.iter_mut().zip(&other.grads) {
            let _ = g
                .f_add_(o)
                .context(|| "accumulating gradients".to_string())?;
        }
        Ok(())
    }

    /// The global L2 norm over all gradients (scalar float32 tensor on the gradients' device).
    pub fn global_norm(&self) -> Result<Tensor> {
        let run = || -> std::result::Result<Tensor, TchError> {
            let norms = self
                .grads
                .iter()
                .map(|g| g.f_norm()?.f_to_kind(Kind::Float))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Tensor::f_stack(&norms, 0)?.f_norm()
        };
        run().context(|| "gradient norm".to_string())
    }

    /// Scales the gradients so that their global norm is at most `max_norm`, given their current
    /// `norm` (from [`Gradients::global_norm`]); like `torch.nn.utils.clip_grad_norm_`, without a
    /// host synchronisation.
    pub fn clip_(&mut self, norm: &Tensor, max_norm: f64) -> Result<()> {
        let run = |grads: &mut [Tensor]| -> std::result::Result<(), TchError> {
            let coef = norm
                .f_add_scalar(1e-6)?
                .f_reciprocal()?
                .f_mul_scalar(max_norm)?
                .f_clamp_max(1.0)?;
            for g in grads {
                let _ = g.f_mul_(&coef)?;
            }
            Ok(())
        };
        run(&mut self.grads).context(|| "clipping gradients".to_string())
    }
}

/// The first and second moment of one parameter.
#[derive(Debug)]
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW whose state is plain tensors.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    steps: u64,
    names: Vec<String>,
    decays: Vec<bool>,
    moments: Vec<Moments>,
    /// Float32 CPU tensors through [`fused_cpu`] (see [`AdamW::set_fused`]).
    fused: bool,
}

/// Safetensors name prefix of the first moments.
pub const EXP_AVG_PREFIX: &str = "exp_avg/";
/// Safetensors name prefix of the second moments.
pub const EXP_AVG_SQ_PREFIX: &str = "exp_avg_sq/";

impl AdamW {
    /// Zero moments for every trainable parameter of `params` (frozen ones have no state).
    pub fn new(params: &ParamStore, config: AdamWConfig) -> Result<Self> {
        let mut moments = Vec::with_capacity(params.len());
        for p in params.trainable() {
            let zeros = || p.tensor().f_detach()?.f_zeros_like();
            let make = || -> std::result::Result<Moments, TchError> {
                Ok(Moments {
                    exp_avg: zeros()?,
                    exp_avg_sq: zeros()?,
                })
            };
            moments.push(make().context(|| format!("optimizer state for {}", p.name()))?);
        }
        Ok(AdamW {
            config,
            steps: 0,
            names: params.trainable().map(|p| p.name().to_string()).collect(),
            decays: params.trainable().map(|p| p.decays()).collect(),
            moments,
            fused: true,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    /// Updates taken so far (the `t` of the bias correction).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Names of the parameters that are weight-decayed.
    pub fn decayed(&self) -> Vec<&str> {
        self.names
            .iter()
            .zip(&self.decays)
            .filter(|(_, d)| **d)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Names of the parameters that are not weight-decayed.
    pub fn not_decayed(&self) -> Vec<&str> {
        self.names
            .iter()
            .zip(&self.decays)
            .filter(|(_, d)| !**d)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// One AdamW update of the trainable `params` with `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &ParamStore, grads: &Gradients, lr: f64) -> Result<()> {
        self.steps += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let t = self.steps.min(i32::MAX as u64) as i32;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let step_size = lr / bias_correction1;
        // step·m/(√v/√bc2 + ε) = (step·√bc2)·m/(√v + ε·√bc2): one pass fewer over the moments.
        let scaled_eps = eps * bias_correction2_sqrt;
        let scaled_step = step_size * bias_correction2_sqrt;
        let decay_factor = 1.0 - lr * weight_decay;
        let coefficients = |decays: bool| fused_cpu::Coefficients {
            decay: if decays { decay_factor as f32 } else { 1.0 },
            w1: (1.0 - beta1) as f32,
            w2: (1.0 - beta2) as f32,
            step: scaled_step as f32,
            eps: scaled_eps as f32,
        };
        let update = |p: &Tensor,
                      g: &Tensor,
                      m: &Moments,
                      decays: bool|
         -> std::result::Result<(), TchError> {
            let mut p = p.shallow_clone();
            let (mut exp_avg, mut exp_avg_sq) =
                (m.exp_avg.shallow_clone(), m.exp_avg_sq.shallow_clone());
            if decays && weight_decay != 0.0 {
                let _ = p.f_mul_scalar_(decay_factor)?;
            }
            let _ = exp_avg.f_lerp_(g, 1.0 - beta1)?;
            let _ = exp_avg_sq.f_lerp_(&g.f_square()?, 1.0 - beta2)?;
            if scaled_step != 0.0 {
                // p += m / denom with denom = −(√v + ε·√bc2)/(step·√bc2): one temporary.
                let mut denom = exp_avg_sq.f_sqrt()?;
                let _ = denom.f_add_scalar_(scaled_eps)?;
                let _ = denom.f_mul_scalar_(-1.0 / scaled_step)?;
                let _ = p.f_addcdiv_(&exp_avg, &denom)?;
            }
            Ok(())
        };
        let fused = self.fused;
        tch::no_grad(|| -> Result<()> {
            // Float32 CPU parameters go through the one-pass kernel, all in one parallel sweep;
            // anything else (CUDA, other dtypes, non-contiguous gradients) through tensor ops.
            let mut jobs = Vec::new();
            for (((p, g), m), (name, decays)) in params
                .trainable()
                .zip(grads.as_slice())
                .zip(&self.moments)
                .zip(self.names.iter().zip(&self.decays))
            {
                let job = if fused {
                    let c = coefficients(*decays);
                    fused_cpu::Job::new(p.tensor(), g, &m.exp_avg, &m.exp_avg_sq, c)
                } else {
                    None
                };
                match job {
                    Some(job) => jobs.push(job),
                    None => update(p.tensor(), g, m, *decays)
                        .context(|| format!("AdamW update of {name}"))?,
                }
            }
            let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
            fused_cpu::run(jobs, threads);
            Ok(())
        })
    }

    /// Whether float32 CPU parameters are updated by the one-pass kernel (the default) rather than
    /// by tensor ops; both compute the same update up to float32 rounding.
    pub fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// The moments as named tensors (`exp_avg/<param>`, `exp_avg_sq/<param>`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len());
        for (name, m) in self.names.iter().zip(&self.moments) {
            out.push((format!("{EXP_AVG_PREFIX}{name}"), &m.exp_avg));
            out.push((format!("{EXP_AVG_SQ_PREFIX}{name}"), &m.exp_avg_sq));
        }
        out
    }

    /// Restores the step count and moments from named tensors as written by
    /// [`AdamW::state_tensors`]. On mismatch nothing is changed and every missing, unexpected or
    /// differently shaped tensor is listed.
    pub fn load_state(
        &mut self,
        steps: u64,
        tensors: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), Vec<String>> {
        let expected: Vec<(String, Vec<i64>)> = self
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let problems = shape_differences(&expected, tensors);
        if !problems.is_empty() {
            return Err(problems);
        }
        let copy = |dst: &mut Tensor, name: &str| -> std::result::Result<(), TchError> {
            let src = tensors
                .get(name)
                .ok_or_else(|| TchError::Kind(format!("missing {name}")))?;
            tch::no_grad(|| dst.f_copy_(src))
        };
        for (name, m) in self.names.iter().zip(self.moments.iter_mut()) {
            for (prefix, dst) in [
                (EXP_AVG_PREFIX, &mut m.exp_avg),
                (EXP_AVG_SQ_PREFIX, &mut m.exp_avg_sq),
            ] {
                let key = format!("{prefix}{name}");
                copy(dst, &key).map_err(|e| vec![format!("{key}: {e}")])?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Differences between `expected` (name, shape) and the `found` tensors: missing, unexpected and
/// reshaped entries, sorted by name.
pub fn shape_differences(
    expected: &[(String, Vec<i64>)],
    found: &HashMap<String, Tensor>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match found.get(name) {
            None => problems.push(format!("tensor {name} {shape:?} is missing")),
            Some(t) if t.size() != *shape => problems.push(format!(
                "tensor {name} has shape {:?} in the checkpoint, {shape:?} in this model",
                t.size()
            )),
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&String> = found
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .collect();
    extra.sort();
    problems.extend(
        extra
            .into_iter()
            .map(|n| format!("tensor {n} is not part of this model")),
    );
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::Initializer;
    use tch::Device;

    /// PyTorch's AdamW for one scalar, in f64.
    fn reference(mut p: f64, grads: &[f64], lrs: &[f64], wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9, 0.95, 1e-8);
        let (mut m, mut v) = (0.0, 0.0);
        for (t, (&g, &lr)) in grads.iter().zip(lrs).enumerate() {
            let t = t as i32 + 1;
            p *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let denom = (v.sqrt() / (1.0 - b2.powi(t)).sqrt()) + eps;
            p -= lr / (1.0 - b1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn matches_pytorch_adamw_and_skips_decay_for_vectors() {
        // The one-pass CPU kernel and the tensor-op path (what CUDA uses) alike.
        for fused in [true, false] {
            check_against_reference(fused);
        }
    }

    fn check_against_reference(fused: bool) {
        let mut init = Initializer::new(0, Device::Cpu);
        let w = init.constant("layer.weight", &[2, 2], 0.5).unwrap();
        let b = init.constant("layer.bias", &[2], 0.5).unwrap();
        let params = init.finish();
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.2,
        };
        let mut opt = AdamW::new(&params, config).unwrap();
        opt.set_fused(fused);
        assert_eq!(opt.decayed(), ["layer.weight"]);
        assert_eq!(opt.not_decayed(), ["layer.bias"]);
        let grads = [0.3, -0.1, 0.02, 0.0];
        let lrs = [1e-2, 5e-3, 2e-3, 1e-3];
        for (g, lr) in grads.iter().zip(lrs) {
            let gw = Tensor::full([2, 2], *g, (Kind::Float, Device::Cpu));
            let gb = Tensor::full([2], *g, (Kind::Float, Device::Cpu));
            opt.step(
                &params,
                &Gradients {
                    grads: vec![gw, gb],
                },
                lr,
            )
            .unwrap();
        }
        let expect_w = reference(0.5, &grads, &lrs, 0.2);
        let expect_b = reference(0.5, &grads, &lrs, 0.0);
        assert!(
            (w.double_value(&[0, 1]) - expect_w).abs() < 1e-6,
            "fused {fused}: {} vs {expect_w}",
            w.double_value(&[0, 1])
        );
        assert!(
            (b.double_value(&[1]) - expect_b).abs() < 1e-6,
            "fused {fused}: {} vs {expect_b}",
            b.double_value(&[1])
        );
        assert!(
            expect_w < expect_b,
            "decay must pull the matrix further down"
        );
        assert_eq!(opt.steps(), 4);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = Gradients {
            grads: vec![
                Tensor::from_slice(&[3.0f32, 0.0]),
                Tensor::from_slice(&[4.0f32]),
            ],
        };
        let norm = g.global_norm().unwrap();
        assert!((norm.double_value(&[]) - 5.0).abs() < 1e-6);
        g.clip_(&norm, 1.0).unwrap();
        assert!((g.global_norm().unwrap().double_value(&[]) - 1.0).abs() < 1e-5);
        let norm = g.global_norm().unwrap();
        g.clip_(&norm, 10.0).unwrap(); // below the maximum: unchanged
        assert!((g.as_slice()[1].double_value(&[0]) - 0.8).abs() < 1e-5);
    }
}
