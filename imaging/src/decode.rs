//! [`decode`]: bytes → upright RGB8 within pixel and memory limits, JPEGs at the largest DCT
//! reduction that still serves `target_min_side`.
//!
//! Order of work: [`probe`] (header only) → pixel limit → memory estimate → decode → colour
//! conversion (CMYK, gray, 16-bit, palette, alpha onto white) → EXIF orientation. A
//! decompression bomb is refused at the second step, before any pixel buffer exists.

use std::io::Cursor;

use image::RgbImage;

use super::error::ImageError;
use super::format::ImageFormat;
use super::orientation::Orientation;
use super::probe::{ProbeInfo, probe};
use super::scale::{DctScaling, ScaleFactor};
use super::{convert, jpeg};

/// Default [`DecodeOptions::max_pixels`]: 100 megapixels (10,000 × 10,000).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
/// Default [`DecodeOptions::max_alloc_bytes`]: 1 GiB.
pub const DEFAULT_MAX_ALLOC_BYTES: u64 = 1 << 30;

/// Limits and shortcuts for [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeOptions {
    /// Refuse images whose declared `width * height` is above this ([`ImageError::TooManyPixels`]).
    pub max_pixels: u64,
    /// Refuse images whose decode would allocate more than this many bytes
    /// ([`ImageError::TooMuchMemory`], also reported as `too_many_pixels`).
    pub max_alloc_bytes: u64,
    /// When set, JPEGs are decoded at the largest DCT reduction allowed by `dct_scaling` whose
    /// shortest side is still at least this many pixels (after a later resize, the result is as
    /// if decoded at full size). Other formats are always decoded at full size.
    pub target_min_side: Option<u32>,
    /// Which DCT reductions `target_min_side` may use (default: 1/2, 1/4, 1/8).
    pub dct_scaling: DctScaling,
    /// Turn the pixels upright according to the EXIF orientation (default true).
    pub apply_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_alloc_bytes: DEFAULT_MAX_ALLOC_BYTES,
            target_min_side: None,
            dct_scaling: DctScaling::PowersOfTwo,
            apply_orientation: true,
        }
    }
}

/// A decoded image and what is known about its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The pixels: RGB8, upright when [`DecodeOptions::apply_orientation`] was set, possibly
    /// reduced by [`Decoded::scale`].
    pub image: RgbImage,
    /// The source container format.
    pub format: ImageFormat,
    /// Full-resolution width in the frame of [`Decoded::image`] (after orientation when it was
    /// applied), also when the pixels were decoded at a reduced scale.
    pub orig_width: u32,
    /// Full-resolution height, likewise.
    pub orig_height: u32,
    /// The DCT reduction used (`1/1` unless a JPEG was decoded scaled).
    pub scale: ScaleFactor,
    /// The EXIF orientation found in the file.
    pub orientation: Orientation,
    /// True when a non-`Normal` orientation was applied to the pixels.
    pub oriented: bool,
    /// True when the colours were converted in a way a plain reader of the original file would
    /// not reproduce: CMYK/YCCK, translucent alpha composited onto white, 16-bit or float samples.
    /// (Gray expanded to RGB and opaque palettes are not conversions.)
    pub color_converted: bool,
}

/// Decodes `bytes` to RGB8 (first frame of animations) within `opts`' limits.
pub fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<Decoded, ImageError> {
    let info = probe(bytes)?;
    decode_probed(bytes, &info, opts)
}

/// [`decode`] for bytes already probed (callers that filter on the header first).
/// `info` must be `probe(bytes)`'s result.
pub fn decode_probed(
    bytes: &[u8],
    info: &ProbeInfo,
    opts: &DecodeOptions,
) -> Result<Decoded, ImageError> {
    let pixels = info.pixels();
    if pixels > opts.max_pixels {
        return Err(ImageError::TooManyPixels {
            format: info.format,
            width: info.width,
            height: info.height,
            pixels,
            limit: opts.max_pixels,
        });
    }
    let over_memory = |detail: String| ImageError::TooMuchMemory {
        format: info.format,
        width: info.width,
        height: info.height,
        limit: opts.max_alloc_bytes,
        detail,
    };
    let (image, scale, color_converted) = if info.format == ImageFormat::Jpeg {
        let (w, h) = info.oriented_size();
        let scale = opts
            .target_min_side
            .map_or(ScaleFactor::ONE, |t| opts.dct_scaling.choose(w, h, t));
        let need = jpeg::decode_bytes_estimate(info, scale);
        if need > opts.max_alloc_bytes {
            return Err(over_memory(format!("needs about {need} bytes")));
        }
        let px = jpeg::decode(bytes, info, scale)?;
        (px.image, px.scale, px.cmyk)
    } else {
        // RGBA8 as the decoder's output plus RGB8 after conversion; 16-bit sources need more,
        // which the `image` crate's own allocation limit (set to the same maximum) catches.
        let need = pixels * 7;
        if need > opts.max_alloc_bytes {
            return Err(over_memory(format!("needs about {need} bytes")));
        }
        let (image, converted) =
            decode_with_image_crate(bytes, info, opts.max_alloc_bytes, over_memory)?;
        (image, ScaleFactor::ONE, converted)
    };
    let oriented = opts.apply_orientation && info.orientation != Orientation::Normal;
    let image = if oriented {
        info.orientation.apply(image)
    } else {
        image
    };
    let (orig_width, orig_height) = if scale.is_one() {
        image.dimensions()
    } else if oriented {
        info.oriented_size()
    } else {
        (info.width, info.height)
    };
    Ok(Decoded {
        image,
        format: info.format,
        orig_width,
        orig_height,
        scale,
        orientation: info.orientation,
        oriented,
        color_converted,
    })
}

/// PNG, GIF, WebP, BMP and TIFF through the `image` crate, with its allocation limit set.
fn decode_with_image_crate(
    bytes: &[u8],
    info: &ProbeInfo,
    max_alloc: u64,
    over_memory: impl Fn(String) -> ImageError,
) -> Result<(RgbImage, bool), ImageError> {
    let mut reader =
        image::ImageReader::with_format(Cursor::new(bytes), info.format.to_image_crate());
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => over_memory(l.to_string()),
        other => ImageError::decode(info.format, other.to_string()),
    })?;
    Ok(convert::to_rgb8(img))
}
