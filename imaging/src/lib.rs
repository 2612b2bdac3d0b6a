//! Image decode / resize / encode / hashes, shared by ingest and the streaming loader: pure
//! functions on bytes and pixels (no I/O, no async), safe on untrusted input.
//!
//! - [`probe`]: format, declared size and EXIF orientation from the header only.
//! - [`decode`] with [`DecodeOptions`]: limits checked before allocating (decompression bombs are
//!   [`ImageError::TooManyPixels`]), everything brought to upright RGB8, JPEGs decoded by
//!   libjpeg-turbo at the largest DCT reduction ([`DctScaling`]) that keeps the shortest side at
//!   or above [`DecodeOptions::target_min_side`].
//! - [`resize`] with [`ResizeSpec`] (img2dataset's modes, SIMD `fast_image_resize`) and, for the
//!   loader, [`crop_resize_into`] writing straight into a batch buffer.
//! - [`encode`] with [`EncodeSpec`] (JPEG 4:2:0, WebP, PNG) and [`should_keep_original`].
//! - [`content_hash`] (BLAKE3), [`phash`] (DCT perceptual hash) and [`hamming`].
//! - [`process_for_shard`] with [`ProcessSpec`]: ingest's hot path in one call.
//!
//! Every error is an [`ImageError`] whose [`ImageError::reason`] is the
//! [`flipstream_schemas::RejectReason`] to store. docs/imaging.md has the measurements behind the
//! choices (decoder, scaling, filter) and the throughput figures.

mod convert;
mod decode;
mod encode;
mod error;
mod exif;
pub mod fixtures;
mod format;
mod hash;
mod jpeg;
mod orientation;
mod probe;
mod process;
mod resize;
mod scale;

pub use decode::{
    DEFAULT_MAX_ALLOC_BYTES, DEFAULT_MAX_PIXELS, DecodeOptions, Decoded, decode, decode_probed,
};
pub use encode::{DEFAULT_QUALITY, EncodeSpec, OutputFormat, encode, should_keep_original};
pub use error::ImageError;
pub use format::ImageFormat;
pub use hash::{content_hash, hamming, phash};
pub use jpeg::{ChromaSampling, JpegEncodeOptions, RawPixels, compress as compress_jpeg};
pub use orientation::Orientation;
pub use probe::{ProbeInfo, probe};
pub use process::{ProcessSpec, Processed, process_for_shard};
pub use resize::resample_rgb8;
pub use resize::{
    CropRect, DEFAULT_SIZE, ResizeFilter, ResizeMode, ResizePlan, ResizeSpec, crop_resize_into,
    crop_resize_into_with, resize,
};
pub use scale::{DctScaling, ScaleFactor};
