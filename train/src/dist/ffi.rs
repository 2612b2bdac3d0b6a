//! The c10d shim (`csrc/dist_shim.cpp`) seen from Rust: [`ProcessGroup`], a PyTorch process group
//! (TCPStore rendezvous + Gloo or NCCL backend) whose collectives take tch tensors. Every C++
//! exception comes back as a [`TrainError::Distributed`]. Without the `dist` feature the shim is
//! not compiled and [`ProcessGroup::connect`] says so.
//!
//! This is the crate's FFI boundary, hence the module-wide `unsafe_code` allowance; each unsafe
//! block says why it holds.
#![allow(unsafe_code)]

use std::time::Duration;

use tch::Tensor;

use super::Backend;
use crate::error::{Result, TrainError};

#[cfg(feature = "dist")]
mod sys {
    use std::ffi::{c_char, c_int, c_longlong, c_void};

    use tch::Tensor;

    // `*mut Tensor` on the C++ side is `at::Tensor*`: tch's `Tensor::as_ptr` points at one.
    type TensorPtr = *const c_void;

    unsafe extern "C" {
        pub(super) fn fs_dist_has_nccl() -> c_int;
        pub(super) fn fs_dist_error_free(err: *mut c_char);
        pub(super) fn fs_dist_group_new(
            backend: *const c_char,
            master: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            timeout_ms: c_longlong,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub(super) fn fs_dist_group_free(group: *mut c_void);
        pub(super) fn fs_dist_all_reduce_sum(
            group: *mut c_void,
            tensor: TensorPtr,
            err: *mut *mut c_char,
        ) -> c_int;
        pub(super) fn fs_dist_all_gather(
            group: *mut c_void,
            output: TensorPtr,
            input: TensorPtr,
            err: *mut *mut c_char,
        ) -> c_int;
        pub(super) fn fs_dist_broadcast(
            group: *mut c_void,
            tensor: TensorPtr,
            root: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        pub(super) fn fs_dist_barrier(group: *mut c_void, err: *mut *mut c_char) -> c_int;
    }

    pub(super) fn ptr(t: &Tensor) -> TensorPtr {
        t.as_ptr().cast()
    }

    /// Takes the shim's error message (and frees it).
    pub(super) fn take_error(err: *mut c_char) -> String {
        if err.is_null() {
            return "unknown error (no message)".into();
        }
        // SAFETY: the shim returns a NUL-terminated malloc'ed copy, which we free once.
        let text = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { fs_dist_error_free(err) };
        text
    }
}

/// A live c10d process group. Collectives block until every rank has joined them, or fail after
/// the group's timeout (or at once when a peer's connection closes).
#[derive(Debug)]
pub struct ProcessGroup {
    #[cfg(feature = "dist")]
    raw: *mut std::ffi::c_void,
    backend: Backend,
}

// SAFETY: the C++ group is used from one thread at a time (&mut self or &self on one thread); it
// has no thread affinity.
unsafe impl Send for ProcessGroup {}

#[cfg(feature = "dist")]
fn failed(what: &str, detail: String) -> TrainError {
    TrainError::Distributed {
        context: what.to_string(),
        detail,
    }
}

/// Whether this build can create NCCL groups.
pub fn has_nccl() -> bool {
    #[cfg(feature = "dist")]
    // SAFETY: a pure query.
    return unsafe { sys::fs_dist_has_nccl() } != 0;
    #[cfg(not(feature = "dist"))]
    false
}

#[cfg(feature = "dist")]
impl ProcessGroup {
    /// Joins the group of `world` ranks whose rendezvous (a TCPStore) rank 0 serves on
    /// `master:port`; waits up to `timeout` for the others.
    pub fn connect(
        backend: Backend,
        master: &str,
        port: u16,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Result<Self> {
        use std::ffi::CString;
        let c = |s: &str| {
            CString::new(s).map_err(|_| failed("connecting", format!("{s:?} contains a NUL byte")))
        };
        let (name, host) = (c(backend.name())?, c(master)?);
        let mut err = std::ptr::null_mut();
        // SAFETY: valid C strings; the shim copies them.
        let raw = unsafe {
            sys::fs_dist_group_new(
                name.as_ptr(),
                host.as_ptr(),
                i32::from(port),
                rank as i32,
                world as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(TrainError::DistSetup(format!(
                "rank {rank} of {world} could not join the {} group at {master}:{port} within {:?}: {}; \
                 check MASTER_ADDR / MASTER_PORT and that every rank was started",
                backend.name(),
                timeout,
                sys::take_error(err)
            )));
        }
        Ok(ProcessGroup { raw, backend })
    }

    fn call(
        &self,
        what: &str,
        f: impl FnOnce(*mut std::ffi::c_void, *mut *mut std::ffi::c_char) -> i32,
    ) -> Result<()> {
        let mut err = std::ptr::null_mut();
        if f(self.raw, &mut err) == 0 {
            Ok(())
        } else {
            Err(failed(
                what,
                format!(
                    "{}; another rank has stopped or cannot be reached (its log, or the \
                     launcher's, says which)",
                    sys::take_error(err)
                ),
            ))
        }
    }

    /// In place: `tensor` becomes the element-wise sum over the ranks.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        // SAFETY: a live group and tensor; the shim does not keep the pointer.
        self.call("all-reduce", |g, e| unsafe {
            sys::fs_dist_all_reduce_sum(g, sys::ptr(tensor), e)
        })
    }

    /// `output` (`[world · n, …]`, contiguous) receives every rank's `input` (`[n, …]`) in rank
    /// order.
    pub fn all_gather(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        // SAFETY: as above.
        self.call("all-gather", |g, e| unsafe {
            sys::fs_dist_all_gather(g, sys::ptr(output), sys::ptr(input), e)
        })
    }

    /// In place: `tensor` becomes rank `root`'s.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        // SAFETY: as above.
        self.call("broadcast", |g, e| unsafe {
            sys::fs_dist_broadcast(g, sys::ptr(tensor), root as i32, e)
        })
    }

    /// Returns once every rank has reached it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: a live group.
        self.call("barrier", |g, e| unsafe { sys::fs_dist_barrier(g, e) })
    }
}

#[cfg(feature = "dist")]
impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by fs_dist_group_new, freed once.
        unsafe { sys::fs_dist_group_free(self.raw) };
    }
}

#[cfg(not(feature = "dist"))]
impl ProcessGroup {
    /// Always fails: this build has no c10d shim.
    pub fn connect(
        backend: Backend,
        master: &str,
        port: u16,
        rank: usize,
        world: usize,
        _timeout: Duration,
    ) -> Result<Self> {
        let _ = (master, port, rank, world);
        Err(TrainError::DistSetup(format!(
            "a {} group cannot be joined: this flipstream was built without the dist feature; \
             rebuild with default features",
            backend.name()
        )))
    }

    /// Unreachable without the feature (no group can exist).
    pub fn all_reduce_sum(&self, _tensor: &Tensor) -> Result<()> {
        Ok(())
    }

    /// Unreachable without the feature.
    pub fn all_gather(&self, _output: &Tensor, _input: &Tensor) -> Result<()> {
        Ok(())
    }

    /// Unreachable without the feature.
    pub fn broadcast(&self, _tensor: &Tensor, _root: usize) -> Result<()> {
        Ok(())
    }

    /// Unreachable without the feature.
    pub fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

impl ProcessGroup {
    /// The backend this group runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}
