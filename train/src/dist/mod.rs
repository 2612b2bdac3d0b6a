//! Data-parallel training on PyTorch's own distributed engine (c10d).
//!
//! - [`ffi`]: [`ProcessGroup`], the c10d process group behind a small C++ shim (`csrc/`).
//! - [`launch`]: who this process is — [`DistSetup`] from the variables that torchrun and Slurm
//!   set, or from `--nproc` (which starts the local ranks itself).
//! - [`World`] (here): the ranks of a run as the trainer sees them, with the collectives it needs:
//!   a summed all-reduce of values and of gradients (flat buckets), an all-gather, a broadcast of
//!   the parameters, a barrier. With one process every collective is the identity, so the single
//!   process path has no special case.
//!
//! What is synchronised, and how the global contrastive batch is formed, is described in
//! `docs/distributed.md` and in [`crate::step`].

pub mod ffi;
pub mod launch;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

pub use ffi::ProcessGroup;
pub use launch::{DistSetup, LaunchSource};

use crate::error::{Result, TorchContext, TrainError};

/// Gradient all-reduce bucket size: large enough that per-message latency does not dominate,
/// small enough not to double the gradients' memory (PyTorch DDP uses 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// The c10d backend of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors (and CUDA tensors through host copies).
    Gloo,
    /// NCCL: CUDA tensors.
    Nccl,
}

impl Backend {
    /// The c10d name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// NCCL for CUDA devices, Gloo otherwise.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cuda(_) => Backend::Nccl,
            _ => Backend::Gloo,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            _ => Err(format!("unknown backend {s:?}: expected gloo or nccl")),
        }
    }
}

/// The ranks of a run, from this process's point of view.
#[derive(Debug)]
pub struct World {
    rank: usize,
    size: usize,
    group: Option<ProcessGroup>,
    /// Where small host values travel for a collective: the rank's GPU for NCCL, else the CPU.
    comm_device: Device,
    /// Time spent in collectives so far (nanoseconds), waiting for slower ranks included.
    comm_nanos: AtomicU64,
}

impl Default for World {
    fn default() -> Self {
        World::single()
    }
}

impl World {
    /// One process: every collective is the identity.
    pub fn single() -> Self {
        World {
            rank: 0,
            size: 1,
            group: None,
            comm_device: Device::Cpu,
            comm_nanos: AtomicU64::new(0),
        }
    }

    /// Joins the group described by `setup` on `device` (NCCL needs a CUDA device).
    pub fn connect(setup: &DistSetup, device: Device) -> Result<Self> {
        if setup.world_size <= 1 {
            return Ok(World::single());
        }
        let backend = setup.backend.unwrap_or(Backend::for_device(device));
        if backend == Backend::Nccl && !matches!(device, Device::Cuda(_)) {
            return Err(TrainError::DistSetup(format!(
                "nccl needs a CUDA device, this rank trains on {device:?}; use --dist-backend gloo"
            )));
        }
        if backend == Backend::Nccl && !ffi::has_nccl() {
            return Err(TrainError::DistSetup(
                "this build has no NCCL (libtorch without CUDA, or the CUDA headers were missing \
                 when it was built); use --dist-backend gloo"
                    .into(),
            ));
        }
        let group = ProcessGroup::connect(
            backend,
            &setup.master_addr,
            setup.master_port,
            setup.rank,
            setup.world_size,
            setup.timeout,
        )?;
        Ok(World {
            rank: setup.rank,
            size: setup.world_size,
            group: Some(group),
            comm_device: if backend == Backend::Nccl {
                device
            } else {
                Device::Cpu
            },
            comm_nanos: AtomicU64::new(0),
        })
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True on rank 0, which writes checkpoints and metrics.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// The backend, or `None` for a single process.
    pub fn backend(&self) -> Option<Backend> {
        self.group.as_ref().map(ProcessGroup::backend)
    }

    /// Time spent in collectives since this world was joined, waiting for slower ranks
    /// included (zero for one process).
    pub fn comm_time(&self) -> Duration {
        Duration::from_nanos(self.comm_nanos.load(Ordering::Relaxed))
    }

    /// Runs `f` on the group, adding its duration to [`World::comm_time`]; `Ok` without a group.
    fn timed(&self, f: impl FnOnce(&ProcessGroup) -> Result<()>) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let start = Instant::now();
        let out = f(g);
        let nanos = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.comm_nanos.fetch_add(nanos, Ordering::Relaxed);
        out
    }

    /// In place: `tensor` becomes its sum over the ranks.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        self.timed(|g| g.all_reduce_sum(tensor))
    }

    /// The sums over the ranks of `values`, as f64 (carried as a float64 tensor).
    pub fn sum_values(&self, values: &[f64]) -> Result<Vec<f64>> {
        if self.group.is_none() {
            return Ok(values.to_vec());
        }
        let t = self.to_comm_device(&Tensor::from_slice(values))?;
        self.all_reduce_sum(&t)?;
        Vec::<f64>::try_from(
            &t.f_to_device(Device::Cpu)
                .context(|| "reduced values".into())?,
        )
        .context(|| "reduced values".into())
    }

    /// Every rank's `input` (`[n, …]`, the same shape on every rank) stacked in rank order:
    /// `[size · n, …]`, without gradient.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor> {
        if self.group.is_none() {
            return input.f_detach().context(|| "all-gather".into());
        }
        let mut shape = input.size();
        if let Some(first) = shape.first_mut() {
            *first *= self.size as i64;
        }
        let input = input
            .f_detach()
            .and_then(|t| t.f_contiguous())
            .context(|| "all-gather input".into())?;
        let output = Tensor::f_empty(&shape, (input.kind(), input.device()))
            .context(|| "all-gather output".into())?;
        self.timed(|g| g.all_gather(&output, &input))?;
        Ok(output)
    }

    /// Every rank's rows of `input` (`[n_r, …]`: the row counts may differ, the rest of the shape
    /// and the kind may not) concatenated in rank order, with each rank's row count.
    pub fn all_gather_rows(&self, input: &Tensor) -> Result<(Tensor, Vec<i64>)> {
        let n = input.size().first().copied().unwrap_or(0);
        if self.group.is_none() {
            return Ok((input.f_detach().context(|| "all-gather".into())?, vec![n]));
        }
        let counts = self.all_gather(&Tensor::from_slice(&[n]))?;
        let counts = Vec::<i64>::try_from(&counts).context(|| "row counts".into())?;
        let most = counts.iter().copied().max().unwrap_or(0);
        if most == 0 {
            return Ok((input.f_detach().context(|| "all-gather".into())?, counts));
        }
        let run = || -> std::result::Result<Tensor, tch::TchError> {
            let mut shape = input.size();
            shape[0] = most - n;
            let pad = Tensor::f_zeros(&shape, (input.kind(), input.device()))?;
            Tensor::f_cat(&[input.f_detach()?, pad], 0)
        };
        let padded = run().context(|| "padding rows for the all-gather".into())?;
        let all = self.all_gather(&padded)?;
        let parts = counts
            .iter()
            .enumerate()
            .map(|(r, &c)| all.f_narrow(0, r as i64 * most, c))
            .collect::<std::result::Result<Vec<_>, _>>()
            .context(|| "unpadding gathered rows".into())?;
        let rows = Tensor::f_cat(&parts, 0).context(|| "joining gathered rows".into())?;
        Ok((rows, counts))
    }

    /// Every rank's `bytes`, in rank order.
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (all, counts) = self.all_gather_rows(&Tensor::from_slice(bytes))?;
        let all = Vec::<u8>::try_from(&all).context(|| "gathered bytes".into())?;
        let mut out = Vec::with_capacity(counts.len());
        let mut offset = 0usize;
        for c in counts {
            let c = c.max(0) as usize;
            out.push(
                all.get(offset..offset + c)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default(),
            );
            offset += c;
        }
        Ok(out)
    }

    /// In place: every tensor of `tensors` becomes rank 0's (the initial weights, so that every
    /// rank starts from the same model whatever its device's initialisation does).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        tch::no_grad(|| {
            for t in tensors {
                if t.is_contiguous() {
                    self.timed(|g| g.broadcast(t, 0))?;
                } else {
                    let c = t.contiguous();
                    self.timed(|g| g.broadcast(&c, 0))?;
                    t.shallow_clone()
                        .f_copy_(&c)
                        .context(|| "broadcast".into())?;
                }
            }
            Ok(())
        })
    }

    /// In place: each gradient becomes its sum over the ranks, in flat buckets of up to
    /// `bucket_bytes` (one all-reduce per bucket instead of one per parameter).
    pub fn all_reduce_grads(&self, grads: &[Tensor], bucket_bytes: usize) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        for bucket in buckets(grads, bucket_bytes) {
            let parts = &grads[bucket];
            let flat = Tensor::f_cat(
                &parts
                    .iter()
                    .map(|g| g.f_reshape([-1]))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .context(|| "flattening gradients".into())?,
                0,
            )
            .context(|| "flattening gradients".into())?;
            self.all_reduce_sum(&flat)?;
            let mut offset = 0;
            for g in parts {
                let n = g.numel() as i64;
                let reduced = flat
                    .f_narrow(0, offset, n)
                    .and_then(|s| s.f_view_as(g))
                    .context(|| "unflattening gradients".into())?;
                g.shallow_clone()
                    .f_copy_(&reduced)
                    .context(|| "unflattening gradients".into())?;
                offset += n;
            }
        }
        Ok(())
    }

    /// Returns once every rank has reached it.
    pub fn barrier(&self) -> Result<()> {
        self.timed(ProcessGroup::barrier)
    }

    /// Fails on every rank when the ranks' `fingerprint`s (of their settings) differ: rank 0's is
    /// broadcast, each rank compares, and the verdicts are summed so that all ranks agree.
    pub fn check_same(&self, what: &str, fingerprint: &[u8; 32]) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let mine: Vec<i64> = fingerprint.iter().map(|&b| i64::from(b)).collect();
        let theirs = self.to_comm_device(&Tensor::from_slice(&mine))?;
        self.timed(|g| g.broadcast(&theirs, 0))?;
        let main = Vec::<i64>::try_from(&theirs.f_to_device(Device::Cpu).context(|| what.into())?)
            .context(|| what.into())?;
        let differ = f64::from(u8::from(main != mine));
        let verdicts = self.sum_values(&[differ])?;
        if verdicts[0] > 0.0 {
            return Err(TrainError::DistSetup(format!(
                "{} rank(s) have other {what} than rank 0{}; start every rank with the same arguments",
                verdicts[0],
                if differ > 0.0 {
                    " (this one among them)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// A copy of `t` where this group's backend needs it (the rank's GPU for NCCL, else CPU).
    fn to_comm_device(&self, t: &Tensor) -> Result<Tensor> {
        t.f_to_device(self.comm_device)
            .context(|| "moving to the communication device".into())
    }
}

/// Consecutive index ranges of `tensors` whose float32 sizes add up to at most `bucket_bytes`
/// (a single larger tensor gets a bucket of its own).
fn buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        if i > start && bytes + size > bucket_bytes {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_tensor_once_and_respect_the_size() {
        let t = |n: i64| Tensor::zeros([n], (tch::Kind::Float, Device::Cpu));
        let ts = vec![t(10), t(10), t(30), t(5), t(100), t(1)];
        let b = buckets(&ts, 100); // 25 floats per bucket
        assert_eq!(b, vec![0..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(buckets(&ts, 1 << 20), vec![0..6]);
        assert!(buckets(&[], 100).is_empty());
    }

    #[test]
    fn a_single_process_world_is_the_identity() {
        let w = World::single();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        w.all_reduce_sum(&t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0]);
        assert_eq!(w.sum_values(&[3.0]).unwrap(), vec![3.0]);
        assert_eq!(w.all_gather(&t).unwrap().size(), vec![2]);
        w.check_same("settings", &[0; 32]).unwrap();
        assert!(w.is_main() && w.size() == 1);
    }
}
