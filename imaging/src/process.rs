//! [`process_for_shard`]: ingest's whole image step in one call — probe → size filters → decode
//! (JPEGs at a reduced DCT scale) → perceptual hash → resize → encode, or keep the source bytes.

use super::decode::{DEFAULT_MAX_ALLOC_BYTES, DEFAULT_MAX_PIXELS, DecodeOptions, decode_probed};
use super::encode::{EncodeSpec, encode, should_keep_original};
use super::error::ImageError;
use super::format::ImageFormat;
use super::hash::phash;
use super::probe::probe;
use super::resize::{ResizeSpec, resize};
use super::scale::{DctScaling, ScaleFactor};

/// Everything ingest decides about an image, in one place (serde: part of the ingest config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessSpec {
    /// Refuse images whose declared `width * height` is above this (`too_many_pixels`).
    pub max_pixels: u64,
    /// Refuse images whose decode would allocate more than this many bytes (`too_many_pixels`).
    pub max_alloc_bytes: u64,
    /// Refuse images whose shortest side (after EXIF orientation) is below this (`too_small`);
    /// checked on the header, before decoding. `None`: no minimum. Default 200 (DataComp's basic
    /// filtering).
    pub min_side: Option<u32>,
    /// Refuse images whose long side / short side is above this (`aspect_ratio`); checked on the
    /// header. `None`: no maximum. Default 3 (DataComp's basic filtering).
    pub max_aspect_ratio: Option<f64>,
    /// How images are resized.
    pub resize: ResizeSpec,
    /// How resized images are encoded.
    pub encode: EncodeSpec,
    /// Source formats whose bytes are stored as they are when nothing about the pixels changes
    /// (see [`should_keep_original`]). Default: `[jpeg]`.
    pub keep_original: Vec<ImageFormat>,
    /// Which DCT reductions JPEG decoding may use to skip pixels the resize throws away (default
    /// `powers_of_two`; `off` only costs time, for comparisons).
    pub dct_scaling: DctScaling,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_alloc_bytes: DEFAULT_MAX_ALLOC_BYTES,
            min_side: Some(200),
            max_aspect_ratio: Some(3.0),
            resize: ResizeSpec::default(),
            encode: EncodeSpec::default(),
            keep_original: vec![ImageFormat::Jpeg],
            dct_scaling: DctScaling::PowersOfTwo,
        }
    }
}

/// What ingest stores for an accepted image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The stored image bytes (`image` column): re-encoded, or the source bytes when kept.
    pub bytes: Vec<u8>,
    /// Format of `bytes` (`image_format` column).
    pub format: ImageFormat,
    /// Stored width (`width`).
    pub width: u32,
    /// Stored height (`height`).
    pub height: u32,
    /// Full-resolution upright width of the source (`orig_width`).
    pub orig_width: u32,
    /// Full-resolution upright height of the source (`orig_height`).
    pub orig_height: u32,
    /// DCT perceptual hash of the decoded, upright source (`phash`).
    pub phash: u64,
    /// The source's container format.
    pub source_format: ImageFormat,
    /// True when `bytes` are the source bytes unchanged.
    pub kept_original: bool,
    /// The DCT reduction the source was decoded at (`1/1` = full size).
    pub decode_scale: ScaleFactor,
}

/// Rejects by the header's upright size, before any decoding.
fn check_size(width: u32, height: u32, spec: &ProcessSpec) -> Result<(), ImageError> {
    let (short, long) = (width.min(height), width.max(height));
    if let Some(min) = spec.min_side
        && short < min
    {
        return Err(ImageError::TooSmall {
            width,
            height,
            side: short,
            min,
        });
    }
    if let Some(max) = spec.max_aspect_ratio {
        let ratio = f64::from(long) / f64::from(short.max(1));
        if ratio > max {
            return Err(ImageError::AspectRatio {
                width,
                height,
                ratio,
                max,
            });
        }
    }
    Ok(())
}

/// Rejects an item whose planned output is over the pixel limit: with upscaling on and a lenient
/// aspect-ratio limit, a 10 × 4000 strip enlarged to a 256-px shortest side would be
/// 256 × 102,400 pixels.
fn check_output(width: u32, height: u32, spec: &ProcessSpec) -> Result<(), ImageError> {
    let (out_width, out_height) = spec.resize.output_size(width, height);
    let pixels = u64::from(out_width) * u64::from(out_height);
    if pixels > spec.max_pixels {
        return Err(ImageError::OutputTooLarge {
            width,
            height,
            out_width,
            out_height,
            pixels,
            limit: spec.max_pixels,
        });
    }
    Ok(())
}

/// Turns source bytes into what a shard row stores. The content hash of the source bytes is
/// not computed here: ingest computes [`super::content_hash`] first, to drop exact duplicates
/// before spending a decode on them.
pub fn process_for_shard(bytes: &[u8], spec: &ProcessSpec) -> Result<Processed, ImageError> {
    let info = probe(bytes)?;
    let (w, h) = info.oriented_size();
    check_size(w, h, spec)?;
    check_output(w, h, spec)?;
    let opts = DecodeOptions {
        max_pixels: spec.max_pixels,
        max_alloc_bytes: spec.max_alloc_bytes,
        target_min_side: spec.resize.min_side_needed(w, h),
        dct_scaling: spec.dct_scaling,
        apply_orientation: true,
    };
    let decoded = decode_probed(bytes, &info, &opts)?;
    let phash = phash(&decoded.image)?;
    let (orig_width, orig_height) = (decoded.orig_width, decoded.orig_height);
    let planned = spec.resize.output_size(orig_width, orig_height);
    let (source_format, decode_scale) = (decoded.format, decoded.scale);
    let kept_original = should_keep_original(&decoded, planned, &spec.keep_original);
    let (bytes, format, (width, height)) = if kept_original {
        (bytes.to_vec(), source_format, planned)
    } else {
        let resized = resize(decoded.image, orig_width, orig_height, &spec.resize)?;
        (
            encode(&resized, &spec.encode)?,
            spec.encode.format.image_format(),
            resized.dimensions(),
        )
    };
    Ok(Processed {
        bytes,
        format,
        width,
        height,
        orig_width,
        orig_height,
        phash,
        source_format,
        kept_original,
        decode_scale,
    })
}
