//! Encoding RGB8 for storage — JPEG (libjpeg-turbo, 4:2:0), lossy WebP (libwebp), PNG — and the
//! rule for storing the source bytes untouched instead ([`should_keep_original`]).

use image::{ImageEncoder as _, RgbImage};

use super::decode::Decoded;
use super::error::ImageError;
use super::format::ImageFormat;
use super::jpeg;

/// Default [`EncodeSpec::quality`].
pub const DEFAULT_QUALITY: u8 = 90;

/// A format flipstream writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Baseline JPEG, 4:2:0 (default).
    #[default]
    Jpeg,
    /// Lossy WebP.
    Webp,
    /// PNG (lossless; `quality` is ignored).
    Png,
}

impl OutputFormat {
    /// The matching container format (what the `image_format` column says).
    pub fn image_format(self) -> ImageFormat {
        match self {
            OutputFormat::Jpeg => ImageFormat::Jpeg,
            OutputFormat::Webp => ImageFormat::Webp,
            OutputFormat::Png => ImageFormat::Png,
        }
    }
}

/// How stored images are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeSpec {
    /// Output format (default JPEG).
    pub format: OutputFormat,
    /// Quality 1–100 for JPEG and WebP (default 90); values outside are clamped.
    pub quality: u8,
}

impl Default for EncodeSpec {
    fn default() -> Self {
        Self {
            format: OutputFormat::Jpeg,
            quality: DEFAULT_QUALITY,
        }
    }
}

/// Encodes `image` as `spec` says.
pub fn encode(image: &RgbImage, spec: &EncodeSpec) -> Result<Vec<u8>, ImageError> {
    if image.width() == 0 || image.height() == 0 {
        return Err(ImageError::InvalidArgument(
            "cannot encode an empty image".into(),
        ));
    }
    let quality = spec.quality.clamp(1, 100);
    match spec.format {
        OutputFormat::Jpeg => jpeg::encode(image, quality),
        OutputFormat::Webp => encode_webp(image, quality),
        OutputFormat::Png => encode_png(image),
    }
}

/// WebP's limit on either side.
const WEBP_MAX_SIDE: u32 = 16_383;

fn encode_webp(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let (w, h) = image.dimensions();
    if w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE {
        return Err(ImageError::encode(
            "webp encode",
            format!("{w}x{h} is over WebP's {WEBP_MAX_SIDE}-pixel side limit"),
        ));
    }
    let encoder = webp::Encoder::from_rgb(image.as_raw(), w, h);
    let out = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| ImageError::encode("webp encode", format!("{e:?}")))?;
    if out.is_empty() {
        return Err(ImageError::encode(
            "webp encode",
            "libwebp produced no output",
        ));
    }
    Ok(out.to_vec())
}

fn encode_png(image: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ImageError::encode("png encode", e))?;
    Ok(out)
}

/// True when the source bytes can be stored as they are: their format is in `allowed`, the pixels
/// were decoded at full scale and not resized (`stored_size == (orig_width, orig_height)`), and
/// neither an orientation nor a colour conversion was applied (so any reader of the original bytes
/// sees exactly the stored pixels).
pub fn should_keep_original(
    decoded: &Decoded,
    stored_size: (u32, u32),
    allowed: &[ImageFormat],
) -> bool {
    allowed.contains(&decoded.format)
        && decoded.scale.is_one()
        && stored_size == (decoded.orig_width, decoded.orig_height)
        && decoded.image.dimensions() == stored_size
        && !decoded.oriented
        && decoded.orientation == super::Orientation::Normal
        && !decoded.color_converted
}
