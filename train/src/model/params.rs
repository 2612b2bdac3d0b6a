//! The model's parameters: [`ParamStore`], an ordered list of named leaf tensors, and
//! [`Initializer`], which creates them from a seed.
//!
//! Initial values are drawn on the CPU from a ChaCha stream in creation order, then moved to the
//! target device: the same seed gives the same weights on every device, thread count and libtorch
//! build. The order of the list is the order of creation, which fixes the optimizer's and the
//! checkpoint's layout.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, TchError, Tensor};

/// Parameter names (last path component or a component) that are never weight-decayed, in
/// addition to every tensor with fewer than 2 dimensions (biases, norm weights, the logit scale).
pub const NO_DECAY_NAMES: [&str; 4] = ["cls_token", "mask_token", "pos_embed", "logit_scale"];

/// Whether AdamW applies weight decay to a parameter: tensors of 2 or more dimensions, except the
/// CLS and mask tokens, position embeddings and the logit scale (FLIP / MAE's rule).
pub fn applies_weight_decay(name: &str, ndim: usize) -> bool {
    ndim >= 2 && !name.split('.').any(|part| NO_DECAY_NAMES.contains(&part))
}

/// One tensor of the model and its dotted name (`visual.blocks.0.attn.qkv.weight`); trainable
/// unless frozen ([`ParamStore::freeze`]).
#[derive(Debug)]
pub struct Param {
    name: String,
    tensor: Tensor,
    trainable: bool,
}

impl Param {
    /// The dotted name, as stored in checkpoints.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leaf tensor (requires grad when trainable).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Whether the optimizer updates it (frozen parameters get no gradient and no optimizer state,
    /// and are still saved with the weights).
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// Whether weight decay applies (see [`applies_weight_decay`]).
    pub fn decays(&self) -> bool {
        applies_weight_decay(&self.name, self.tensor.dim())
    }
}

/// All tensors of a model, trainable and frozen, in creation order.
#[derive(Debug, Default)]
pub struct ParamStore {
    params: Vec<Param>,
}

impl ParamStore {
    /// Every parameter in creation order (what a checkpoint's weights hold).
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.params.iter()
    }

    /// The trainable parameters in creation order (what gradients and the optimizer cover).
    pub fn trainable(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.trainable)
    }

    /// Freezes every parameter whose name starts with one of `prefixes`: it stops requiring
    /// gradients and leaves the optimizer. Returns how many were frozen.
    pub fn freeze(&mut self, prefixes: &[&str]) -> Result<usize, TchError> {
        let mut frozen = 0;
        for p in &mut self.params {
            if p.trainable && prefixes.iter().any(|x| p.name.starts_with(x)) {
                p.tensor = p.tensor.f_set_requires_grad(false)?;
                p.trainable = false;
                frozen += 1;
            }
        }
        Ok(frozen)
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|p| p.tensor.numel()).sum()
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The trainable leaf tensors, in order (for `run_backward`).
    pub fn tensors(&self) -> Vec<&Tensor> {
        self.trainable().map(|p| &p.tensor).collect()
    }
}

/// Creates named parameters with seeded initial values on a device.
pub struct Initializer {
    rng: ChaCha8Rng,
    device: Device,
    store: ParamStore,
}

impl Initializer {
    /// A fresh initializer drawing from `seed`.
    pub fn new(seed: u64, device: Device) -> Self {
        Initializer {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
            store: ParamStore::default(),
        }
    }

    /// The parameters created so far.
    pub fn finish(self) -> ParamStore {
        self.store
    }

    /// Normal(0, std²) values.
    pub fn normal(&mut self, name: &str, shape: &[i64], std: f64) -> Result<Tensor, TchError> {
        let std = std as f32;
        let values = (0..numel(shape))
            .map(|_| self.rng.sample::<f32, _>(StandardNormal) * std)
            .collect::<Vec<_>>();
        self.add(name, &values, shape)
    }

    /// Uniform values in [-bound, bound).
    pub fn uniform(&mut self, name: &str, shape: &[i64], bound: f64) -> Result<Tensor, TchError> {
        let bound = bound as f32;
        let values = (0..numel(shape))
            .map(|_| self.rng.random_range(-bound..bound))
            .collect::<Vec<_>>();
        self.add(name, &values, shape)
    }

    /// Xavier/Glorot uniform for a weight whose first dimension is `fan_out` and whose other
    /// dimensions multiply to `fan_in`.
    pub fn xavier_uniform(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, TchError> {
        let fan_out = shape.first().copied().unwrap_or(1) as f64;
        let fan_in = shape.iter().skip(1).product::<i64>().max(1) as f64;
        self.uniform(name, shape, (6.0 / (fan_in + fan_out)).sqrt())
    }

    /// A constant.
    pub fn constant(&mut self, name: &str, shape: &[i64], value: f32) -> Result<Tensor, TchError> {
        self.add(name, &vec![value; numel(shape)], shape)
    }

    fn add(&mut self, name: &str, values: &[f32], shape: &[i64]) -> Result<Tensor, TchError> {
        let tensor = Tensor::f_from_slice(values)?
            .f_view(shape)?
            .f_to_device(self.device)?
            .f_to_kind(Kind::Float)?;
        let tensor = tensor.f_set_requires_grad(true)?;
        self.store.params.push(Param {
            name: name.to_string(),
            tensor: tensor.shallow_clone(),
            trainable: true,
        });
        Ok(tensor)
    }
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().map(|&d| d.max(0) as usize).product()
}
