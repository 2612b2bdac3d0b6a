//! JPEG through libjpeg-turbo 3 (the `turbojpeg` crate): decode with DCT-domain scaling (see
//! [`super::DctScaling`]) and encode with 4:2:0 chroma subsampling. One TurboJPEG handle of each kind per
//! thread, reused across images. docs/imaging.md has the measurements behind this choice.

use std::cell::RefCell;

use image::RgbImage;
use turbojpeg::{Colorspace, Compressor, Decompressor, PixelFormat, Subsamp};

use super::error::ImageError;
use super::format::ImageFormat;
use super::probe::ProbeInfo;
use super::scale::ScaleFactor;

/// Progressive JPEGs with more scans than this are refused: a crafted file with thousands of
/// tiny scans costs a full pass over the coefficients per scan (libjpeg-turbo's advice).
const MAX_SCANS: u32 = 500;

/// Warnings after which the decoded pixels are still the whole, intact image. Any other libjpeg
/// warning (premature end of file or segment, bad Huffman code, …) means missing or garbled
/// pixels and rejects the image.
const HARMLESS_WARNINGS: [&str; 5] = [
    "extraneous bytes before marker",
    "unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Unknown Adobe color transform code",
    "bad ICC marker",
];

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's handle from `slot`, creating it on first use (or a fresh one if the
/// slot is somehow busy).
fn with_handle<H, T>(
    slot: &'static std::thread::LocalKey<RefCell<Option<H>>>,
    new: fn() -> turbojpeg::Result<H>,
    f: impl FnOnce(&mut H) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let fresh = || new().map_err(|e| ImageError::encode("turbojpeg init", e));
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut guard) => {
            if guard.is_none() {
                *guard = Some(fresh()?);
            }
            match guard.as_mut() {
                Some(handle) => f(handle),
                None => f(&mut fresh()?),
            }
        }
        Err(_) => f(&mut fresh()?),
    })
}

/// Bytes that decoding `info` at `scale` allocates: the output pixels, plus the whole-image
/// coefficient buffer (2 bytes per coefficient, every component) of a progressive file.
pub(crate) fn decode_bytes_estimate(info: &ProbeInfo, scale: ScaleFactor) -> u64 {
    let out_px = u64::from(scale.apply(info.width)) * u64::from(scale.apply(info.height));
    let out = out_px * if info.components == 4 { 4 } else { 3 };
    let coefficients = if info.progressive {
        info.pixels() * u64::from(info.components.max(1)) * 2
    } else {
        0
    };
    out + coefficients
}

/// A decoded JPEG: RGB pixels (not yet oriented), the scale used, and whether the colours were
/// converted from CMYK.
pub(crate) struct JpegPixels {
    pub image: RgbImage,
    pub scale: ScaleFactor,
    pub cmyk: bool,
}

fn decode_error(detail: impl std::fmt::Display) -> ImageError {
    ImageError::decode(ImageFormat::Jpeg, detail.to_string())
}

/// Decodes `bytes` to RGB8 at `scale` (lossless JPEGs, which cannot be scaled, at full size).
/// CMYK and YCCK files are converted to RGB; Adobe files (`info.adobe`) store inverted CMYK.
pub(crate) fn decode(
    bytes: &[u8],
    info: &ProbeInfo,
    scale: ScaleFactor,
) -> Result<JpegPixels, ImageError> {
    with_handle(&DECOMPRESSOR, Decompressor::new, |d| {
        let header = d.read_header(bytes).map_err(decode_error)?;
        let scale = if header.is_lossless {
            ScaleFactor::ONE
        } else {
            scale
        };
        let tj_scale = turbojpeg::ScalingFactor::new(scale.num() as usize, scale.denom() as usize);
        d.set_scaling_factor(tj_scale).map_err(decode_error)?;
        d.set_scan_limit(MAX_SCANS).map_err(decode_error)?;
        let out = header.scaled(tj_scale);
        let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
        let format = if cmyk {
            PixelFormat::CMYK
        } else {
            PixelFormat::RGB
        };
        let width = u32::try_from(out.width).map_err(decode_error)?;
        let height = u32::try_from(out.height).map_err(decode_error)?;
        let mut pixels = vec![0u8; out.width * out.height * format.size()];
        let image = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: out.width,
            pitch: out.width * format.size(),
            height: out.height,
            format,
        };
        match d.decompress(bytes, image) {
            Ok(()) => {}
            Err(turbojpeg::Error::TurboJpegError(msg))
                if HARMLESS_WARNINGS.iter().any(|w| msg.contains(w)) => {}
            Err(e) => return Err(decode_error(e)),
        }
        let pixels = if cmyk {
            cmyk_to_rgb(&pixels, info.adobe)
        } else {
            pixels
        };
        let image = RgbImage::from_raw(width, height, pixels)
            .ok_or_else(|| decode_error("decoder returned a buffer of the wrong size"))?;
        Ok(JpegPixels { image, scale, cmyk })
    })
}

/// CMYK (4 bytes a pixel) to RGB: `R = (1 − C)(1 − K)` and so on. Adobe-marked files store the
/// complement of each ink amount, so there `R = C·K`.
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(|v| {
            if inverted {
                u32::from(v)
            } else {
                255 - u32::from(v)
            }
        });
        for ink in [c, m, y] {
            rgb.push(((ink * k + 127) / 255) as u8);
        }
    }
    rgb
}

/// Encodes RGB8 to baseline JPEG at `quality` (1..=100) with 4:2:0 chroma subsampling.
pub(crate) fn encode(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    compress(
        RawPixels::Rgb(image.as_raw()),
        width,
        height,
        &JpegEncodeOptions {
            quality,
            chroma: ChromaSampling::Sub420,
            progressive: false,
        },
    )
}

/// Raw 8-bit pixels for [`compress`], row-major without padding.
#[derive(Debug, Clone, Copy)]
pub enum RawPixels<'a> {
    /// Three bytes per pixel, R G B.
    Rgb(&'a [u8]),
    /// One byte per pixel (a single-component JPEG).
    Gray(&'a [u8]),
}

/// Chroma subsampling of a colour JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChromaSampling {
    /// Full-resolution chroma.
    Sub444,
    /// Chroma halved both ways (what most web JPEGs use).
    Sub420,
}

/// How [`compress`] encodes.
#[derive(Debug, Clone, Copy)]
pub struct JpegEncodeOptions {
    /// 1..=100 (clamped).
    pub quality: u8,
    /// Ignored for gray pixels.
    pub chroma: ChromaSampling,
    /// Progressive rather than baseline.
    pub progressive: bool,
}

/// Encodes raw pixels with libjpeg-turbo (its SIMD code; one reused handle per thread). The
/// output is a JFIF file, identical for identical input and options.
pub fn compress(
    pixels: RawPixels<'_>,
    width: usize,
    height: usize,
    options: &JpegEncodeOptions,
) -> Result<Vec<u8>, ImageError> {
    let err = |e: turbojpeg::Error| ImageError::encode("jpeg encode", e);
    let (data, format, channels, subsamp) = match pixels {
        RawPixels::Rgb(data) => {
            let subsamp = match options.chroma {
                ChromaSampling::Sub444 => Subsamp::None,
                ChromaSampling::Sub420 => Subsamp::Sub2x2,
            };
            (data, PixelFormat::RGB, 3, subsamp)
        }
        RawPixels::Gray(data) => (data, PixelFormat::GRAY, 1, Subsamp::Gray),
    };
    if data.len() != width * height * channels {
        return Err(ImageError::InvalidArgument(format!(
            "{} pixel bytes for a {width}×{height} image with {channels} channel(s)",
            data.len()
        )));
    }
    with_handle(&COMPRESSOR, Compressor::new, |c| {
        c.set_quality(i32::from(options.quality.clamp(1, 100)))
            .map_err(err)?;
        c.set_subsamp(subsamp).map_err(err)?;
        c.set_progressive(options.progressive).map_err(err)?;
        let input = turbojpeg::Image {
            pixels: data,
            width,
            pitch: width * channels,
            height,
            format,
        };
        c.compress_to_vec(input).map_err(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion() {
        // plain CMYK: no ink is white, full K is black, full C is cyan
        assert_eq!(
            cmyk_to_rgb(&[0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0], false),
            vec![255, 255, 255, 0, 0, 0, 0, 255, 255]
        );
        // Adobe (inverted): 255 = no ink
        assert_eq!(
            cmyk_to_rgb(&[255, 255, 255, 255, 0, 255, 255, 255], true),
            vec![255, 255, 255, 0, 255, 255]
        );
    }
}
