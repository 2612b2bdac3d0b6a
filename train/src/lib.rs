//! flipstream trainer on libtorch (tch): the only crate that links libtorch.
//!
//! [`device`] picks where tensors live (`cpu`, `cuda`, `cuda:N`, `auto`).

pub mod device;
