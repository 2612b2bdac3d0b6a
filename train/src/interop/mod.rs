//! Models in and out of the libraries people use CLIP models with: open_clip and transformers.
//!
//! - [`export`]: a run's checkpoint as an open_clip (`local-dir:`) or transformers (`CLIPModel`)
//!   folder with the same embeddings (`flipstream export`).
//! - [`import`]: an open_clip folder's weights and architecture as flipstream's, to start a run
//!   from (`flipstream train --init open_clip:DIR`).
//! - [`open_clip`], [`hf`]: each target's tensor names and config files, both directions in one
//!   place per target.
//! - [`weights`]: the renaming helpers and the tensor rewrites both targets share.
//! - [`tokenizer`]: the exported tokenizer folder.

pub mod export;
pub mod hf;
pub mod import;
pub mod open_clip;
pub mod tokenizer;
pub mod weights;

pub use export::{
    ExportFormat, ExportRequest, ExportSummary, ExportedFile, export_model, refusals,
};
pub use import::{ImportedModel, OPEN_CLIP_PREFIX, import_open_clip, open_clip_config};
