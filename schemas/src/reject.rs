//! Why an input item was not accepted: the stable reason codes stored in rejection files.
//!
//! Codes are part of the format (`reason` column, `rejected_by_reason` in commit records): never
//! rename one; add new ones at the end.

use std::fmt;

/// A rejection reason. [`RejectReason::code`] is what is stored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    // ---- reading the source item
    /// The source row or member is malformed (missing image field, null bytes column, bad JSON).
    MalformedRow,
    /// The item has no image (e.g. a tar member group with only a caption).
    MissingImage,
    /// The image file is zero bytes long.
    EmptyFile,
    // ---- downloading (URL sources)
    /// The URL does not parse or uses an unsupported scheme.
    InvalidUrl,
    /// The URL resolves to a loopback, private, link-local or otherwise non-public address.
    BlockedAddress,
    /// Connection failed, timed out or was reset, after the configured retries.
    DownloadError,
    /// The server answered with a non-success HTTP status.
    HttpStatus,
    /// Too many redirects (or a redirect loop).
    TooManyRedirects,
    /// The body exceeded the configured maximum size.
    BodyTooLarge,
    /// The server opted out of AI use (`X-Robots-Tag: noai` and similar).
    OptedOut,
    // ---- decoding
    /// The bytes are not an image in a supported format (HTML served as .jpg, random bytes).
    NotAnImage,
    /// The bytes look like an image but do not decode (truncated, corrupt).
    DecodeError,
    /// Declared dimensions exceed the pixel / allocation limits (decompression bomb).
    TooManyPixels,
    // ---- image filters
    /// Shortest side below the minimum.
    TooSmall,
    /// Aspect ratio (long side / short side) above the maximum.
    AspectRatio,
    // ---- caption filters
    /// No caption, or nothing left after cleanup.
    CaptionMissing,
    /// The caption bytes are not valid UTF-8.
    CaptionInvalidUtf8,
    /// Fewer words or characters than the minimum.
    CaptionTooShort,
    /// More characters than the maximum, and the configuration says reject rather than truncate.
    CaptionTooLong,
    // ---- dedup
    /// Same original bytes as an earlier accepted item (content hash).
    DuplicateExact,
    /// Perceptual hash within the configured Hamming distance of an earlier accepted item.
    DuplicateNear,
    // ---- output
    /// Re-encoding the resized image failed.
    EncodeError,
    // ---- shard tools
    /// Left out of a dataset made by `flipstream shard filter` (a column predicate failed).
    ColumnFilter,
    /// Left out by `shard filter --min-clip-score / --clip-score-top` (or another lower bound on
    /// the sidecar's `clip_score`): the image-caption similarity of a `flipstream score` sidecar
    /// is too low.
    LowClipScore,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 24] = [
        RejectReason::MalformedRow,
        RejectReason::MissingImage,
        RejectReason::EmptyFile,
        RejectReason::InvalidUrl,
        RejectReason::BlockedAddress,
        RejectReason::DownloadError,
        RejectReason::HttpStatus,
        RejectReason::TooManyRedirects,
        RejectReason::BodyTooLarge,
        RejectReason::OptedOut,
        RejectReason::NotAnImage,
        RejectReason::DecodeError,
        RejectReason::TooManyPixels,
        RejectReason::TooSmall,
        RejectReason::AspectRatio,
        RejectReason::CaptionMissing,
        RejectReason::CaptionInvalidUtf8,
        RejectReason::CaptionTooShort,
        RejectReason::CaptionTooLong,
        RejectReason::DuplicateExact,
        RejectReason::DuplicateNear,
        RejectReason::EncodeError,
        RejectReason::ColumnFilter,
        RejectReason::LowClipScore,
    ];

    /// The stored code (snake_case).
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedRow => "malformed_row",
            RejectReason::MissingImage => "missing_image",
            RejectReason::EmptyFile => "empty_file",
            RejectReason::InvalidUrl => "invalid_url",
            RejectReason::BlockedAddress => "blocked_address",
            RejectReason::DownloadError => "download_error",
            RejectReason::HttpStatus => "http_status",
            RejectReason::TooManyRedirects => "too_many_redirects",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::OptedOut => "opted_out",
            RejectReason::NotAnImage => "not_an_image",
            RejectReason::DecodeError => "decode_error",
            RejectReason::TooManyPixels => "too_many_pixels",
            RejectReason::TooSmall => "too_small",
            RejectReason::AspectRatio => "aspect_ratio",
            RejectReason::CaptionMissing => "caption_missing",
            RejectReason::CaptionInvalidUtf8 => "caption_invalid_utf8",
            RejectReason::CaptionTooShort => "caption_too_short",
            RejectReason::CaptionTooLong => "caption_too_long",
            RejectReason::DuplicateExact => "duplicate_exact",
            RejectReason::DuplicateNear => "duplicate_near",
            RejectReason::EncodeError => "encode_error",
            RejectReason::ColumnFilter => "column_filter",
            RejectReason::LowClipScore => "low_clip_score",
        }
    }

    /// Parses a stored code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// One line for reports.
    pub fn description(self) -> &'static str {
        match self {
            RejectReason::MalformedRow => "source row or member is malformed",
            RejectReason::MissingImage => "item has no image",
            RejectReason::EmptyFile => "image file is empty",
            RejectReason::InvalidUrl => "URL is invalid or uses an unsupported scheme",
            RejectReason::BlockedAddress => "URL points to a loopback/private/link-local address",
            RejectReason::DownloadError => "download failed (connect, timeout, reset)",
            RejectReason::HttpStatus => "server answered with an error status",
            RejectReason::TooManyRedirects => "too many redirects",
            RejectReason::BodyTooLarge => "body larger than the size cap",
            RejectReason::OptedOut => "server opted out of AI use (X-Robots-Tag)",
            RejectReason::NotAnImage => "bytes are not a supported image",
            RejectReason::DecodeError => "image is corrupt or truncated",
            RejectReason::TooManyPixels => "declared dimensions exceed the pixel limit",
            RejectReason::TooSmall => "shortest side below the minimum",
            RejectReason::AspectRatio => "aspect ratio above the maximum",
            RejectReason::CaptionMissing => "caption missing or empty after cleanup",
            RejectReason::CaptionInvalidUtf8 => "caption is not valid UTF-8",
            RejectReason::CaptionTooShort => "caption shorter than the minimum",
            RejectReason::CaptionTooLong => "caption longer than the maximum",
            RejectReason::DuplicateExact => "exact duplicate of an earlier image",
            RejectReason::DuplicateNear => "near-duplicate of an earlier image",
            RejectReason::EncodeError => "re-encoding the image failed",
            RejectReason::ColumnFilter => {
                "left out by a column predicate of `shard filter` (the detail says which)"
            }
            RejectReason::LowClipScore => {
                "image-caption similarity (CLIP score) below the `shard filter` threshold"
            }
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
            assert!(seen.insert(r.code()));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.code()));
        }
        assert_eq!(RejectReason::from_code("nope"), None);
    }
}
