//! [`ImageError`]: everything that can go wrong with one image, each variant mapped to the
//! [`RejectReason`] that ingest stores for it ([`ImageError::reason`]).

use flipstream_schemas::RejectReason;

use super::format::ImageFormat;

/// Why an image could not be probed, decoded, filtered, resized or encoded.
///
/// `Display` gives the detail string for rejection records; [`ImageError::reason`] the code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The bytes are not an image in a supported format (`detail` says what they look like).
    #[error("not a supported image: {detail}")]
    NotAnImage {
        /// What the bytes look like (`HTML document`, `AVIF/HEIF image (unsupported)`, …).
        detail: String,
    },
    /// The bytes start like an image of `format` but do not decode (truncated, corrupt).
    #[error("{format} decode error: {detail}")]
    Decode {
        /// The container format the bytes claim to be.
        format: ImageFormat,
        /// The decoder's message.
        detail: String,
    },
    /// The declared size is over the pixel limit (checked before any pixel buffer is allocated).
    #[error("{format} image of {width}x{height} has {pixels} pixels, over the limit of {limit}")]
    TooManyPixels {
        /// The container format.
        format: ImageFormat,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// Decoding would allocate more than the configured number of bytes.
    #[error(
        "{format} image of {width}x{height} is over the decode memory limit of {limit} bytes: {detail}"
    )]
    TooMuchMemory {
        /// The container format.
        format: ImageFormat,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The configured maximum.
        limit: u64,
        /// The estimate, or the decoder's own message.
        detail: String,
    },
    /// The resize would make more pixels than the limit (an extreme aspect ratio enlarged to the
    /// target size); checked before any pixel buffer is allocated.
    #[error(
        "resizing {width}x{height} would give {out_width}x{out_height} = {pixels} pixels, over the limit of {limit}"
    )]
    OutputTooLarge {
        /// Upright source width.
        width: u32,
        /// Upright source height.
        height: u32,
        /// Planned output width.
        out_width: u32,
        /// Planned output height.
        out_height: u32,
        /// `out_width * out_height`.
        pixels: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// The shortest side (after EXIF orientation) is below the configured minimum.
    #[error("shortest side {side} px is below the minimum of {min} px ({width}x{height})")]
    TooSmall {
        /// Width after orientation.
        width: u32,
        /// Height after orientation.
        height: u32,
        /// `min(width, height)`.
        side: u32,
        /// The configured minimum.
        min: u32,
    },
    /// Long side / short side is above the configured maximum.
    #[error("aspect ratio {ratio:.2} is above the maximum of {max:.2} ({width}x{height})")]
    AspectRatio {
        /// Width after orientation.
        width: u32,
        /// Height after orientation.
        height: u32,
        /// `max(w, h) / min(w, h)`.
        ratio: f64,
        /// The configured maximum.
        max: f64,
    },
    /// Producing the output image failed (resize or encode).
    #[error("{stage}: {detail}")]
    Encode {
        /// `resize`, `jpeg encode`, `webp encode`, `png encode`.
        stage: &'static str,
        /// The library's message.
        detail: String,
    },
    /// A caller passed arguments that cannot work (a crop outside the image, a buffer of the
    /// wrong length, a zero output size). A bug in the caller, not bad input data.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ImageError {
    /// The rejection code ingest stores for this error.
    ///
    /// [`ImageError::InvalidArgument`] is a caller bug rather than bad data; it maps to
    /// [`RejectReason::EncodeError`] so that an item is never lost, and the detail says what
    /// happened.
    pub fn reason(&self) -> RejectReason {
        match self {
            ImageError::Empty => RejectReason::EmptyFile,
            ImageError::NotAnImage { .. } => RejectReason::NotAnImage,
            ImageError::Decode { .. } => RejectReason::DecodeError,
            ImageError::TooManyPixels { .. }
            | ImageError::TooMuchMemory { .. }
            | ImageError::OutputTooLarge { .. } => RejectReason::TooManyPixels,
            ImageError::TooSmall { .. } => RejectReason::TooSmall,
            ImageError::AspectRatio { .. } => RejectReason::AspectRatio,
            ImageError::Encode { .. } | ImageError::InvalidArgument(_) => RejectReason::EncodeError,
        }
    }

    /// The detail string for a rejection record (same as `to_string()`).
    pub fn detail(&self) -> String {
        self.to_string()
    }

    pub(crate) fn decode(format: ImageFormat, detail: impl Into<String>) -> Self {
        ImageError::Decode {
            format,
            detail: detail.into(),
        }
    }

    pub(crate) fn encode(stage: &'static str, detail: impl std::fmt::Display) -> Self {
        ImageError::Encode {
            stage,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_schema_codes() {
        let cases = [
            (ImageError::Empty, "empty_file"),
            (
                ImageError::NotAnImage {
                    detail: "HTML document".into(),
                },
                "not_an_image",
            ),
            (
                ImageError::decode(ImageFormat::Png, "bad crc"),
                "decode_error",
            ),
            (
                ImageError::TooManyPixels {
                    format: ImageFormat::Png,
                    width: 50_000,
                    height: 50_000,
                    pixels: 2_500_000_000,
                    limit: 100_000_000,
                },
                "too_many_pixels",
            ),
            (
                ImageError::TooMuchMemory {
                    format: ImageFormat::Jpeg,
                    width: 9000,
                    height: 9000,
                    limit: 1 << 30,
                    detail: "needs about 2147483648 bytes".into(),
                },
                "too_many_pixels",
            ),
            (
                ImageError::TooSmall {
                    width: 10,
                    height: 20,
                    side: 10,
                    min: 64,
                },
                "too_small",
            ),
            (
                ImageError::AspectRatio {
                    width: 1000,
                    height: 10,
                    ratio: 100.0,
                    max: 3.0,
                },
                "aspect_ratio",
            ),
            (ImageError::encode("webp encode", "boom"), "encode_error"),
        ];
        for (err, code) in cases {
            assert_eq!(err.reason().code(), code, "{err}");
            assert!(!err.detail().is_empty());
        }
        let bomb = ImageError::TooManyPixels {
            format: ImageFormat::Png,
            width: 50_000,
            height: 50_000,
            pixels: 2_500_000_000,
            limit: 100_000_000,
        };
        assert_eq!(
            bomb.detail(),
            "png image of 50000x50000 has 2500000000 pixels, over the limit of 100000000"
        );
    }
}
