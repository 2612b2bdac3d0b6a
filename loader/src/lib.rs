//! The streaming loader: committed row groups → augmented u8 image batches (+ captions, tokens),
//! deterministic, elastic and exactly resumable.
//!
//! ```no_run
//! use flipstream_loader::{Loader, LoaderConfig, Rank, Start};
//! # fn main() -> Result<(), flipstream_loader::LoaderError> {
//! let config = LoaderConfig { batch_size: 1024, seed: 7, epochs: Some(32), ..Default::default() };
//! let rank = Rank { rank: 0, world_size: 8 };
//! let loader = Loader::open("s3://bucket/laion-256", config, rank, Start::Epoch(0))?;
//! for batch in loader {
//!     let batch = batch?; // 128 × 224 × 224 × 3 u8 (HWC), keys, captions
//!     // ... train, and put `batch.state_after` into the checkpoint
//! }
//! # Ok(()) }
//! ```
//!
//! - `config`: [`LoaderConfig`] (serde, `Default`), [`Mode`], [`SplitSelection`], [`Rank`].
//! - [`order`](self#the-order): which rows make batch `t` (a pure function of the settings);
//!   see `docs/loader.md` for the specification and its guarantees.
//! - `state`: [`LoaderState`], the tiny resume state that goes into every checkpoint.
//! - `units`: [`Units`], the committed row groups with their row counts in the split.
//! - `batch`: [`Batch`], what the iterator yields.
//! - `fetch`, `augment`, `pipeline`: ranged reads with retries, decode + RandomResizedCrop +
//!   flip, and the producer thread behind the blocking [`Loader`] iterator.
//! - [`bench`](mod@bench): the loader benchmark (`flipstream bench loader`).
//! - [`tokenize`]: caption tokenization and byte-level BPE training ([`TextTokenizer`]).
//!
//! # The order
//! Units are permuted per epoch, concatenated, cut into `lanes` contiguous lanes, shuffled within
//! blocks of `shuffle_block` positions per lane, and global batch `t` takes `batch_size / lanes`
//! consecutive items of every lane; rank `r` owns lanes `l ≡ r (mod world_size)`. Bad samples
//! are replaced by another sample of the same lane's chunk and counted in [`Batch::substituted`].

mod augment;
mod batch;
pub mod bench;
mod config;
mod error;
mod fetch;
mod order;
mod pipeline;
mod rng;
mod state;
pub mod tokenize;
mod units;

pub use batch::Batch;
pub use config::{Interpolation, LoaderConfig, Mode, Rank, SplitSelection};
pub use error::{LoaderError, LoaderResult};
pub use pipeline::{Loader, LoaderInfo, LoaderStats, Start};
pub use state::LoaderState;
pub use tokenize::TextTokenizer;
pub use units::{Unit, Units};
