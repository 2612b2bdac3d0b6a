//! The kinds of web dirt the generator can plant, and what ingest is expected to do with each.
//!
//! Each item carries at most one [`DirtKind`]. Some kinds are images that ingest must accept after
//! converting them (EXIF rotation, CMYK, 16-bit, palette + alpha, animation, grayscale, a near
//! duplicate, HTML around a caption); the others must become a rejection with a specific
//! [`RejectReason`]. [`DirtKind::expected`] states which, so ingest tests can map ground truth to
//! outcomes without a table of their own. Two kinds are *semantic*: a caption of another scene
//! and page boilerplate, which every rule accepts (they are not in the `default` mix; ask for
//! them by name).

use std::fmt;
use std::str::FromStr;

use flipstream_schemas::RejectReason;
use serde::{Deserialize, Serialize};

use super::config::Layout;

/// One kind of planted defect. Names (see [`DirtKind::as_str`]) are stable: tests and the sidecar
/// use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirtKind {
    /// A baseline JPEG cut in the middle of its entropy-coded scan (no EOI marker).
    Truncated,
    /// A PNG whose IDAT data is overwritten mid-file, so its chunk CRC and zlib stream are broken.
    Corrupt,
    /// An empty image file.
    ZeroByte,
    /// An HTML page (a typical 404 / login page) saved under an image extension.
    NotImage,
    /// A real image whose shortest side is 8–40 px.
    Tiny,
    /// A real image with aspect ratio 8:1 to 20:1 (shortest side 64–100 px), e.g. 1600×80.
    ExtremeAspect,
    /// The exact bytes of an earlier clean item of the same shard (`dup_of`).
    DuplicateExact,
    /// An earlier clean item of the same shard, slightly resized and re-encoded (`dup_of`).
    NearDuplicate,
    /// An empty or whitespace-only caption.
    CaptionEmpty,
    /// A one-word caption (`"IMG_2034.JPG"`, `"untitled"`, `"red"`).
    CaptionOneWord,
    /// A caption of 10–100 kB (keyword spam around a valid caption).
    CaptionOverlong,
    /// A valid caption wrapped in HTML tags and entities.
    CaptionHtml,
    /// Caption bytes that are not UTF-8 (only where the layout stores raw bytes).
    CaptionInvalidUtf8,
    /// A JPEG stored rotated by 90° with EXIF Orientation 6 or 8 restoring the upright scene.
    ExifRotated,
    /// A CMYK JPEG (Adobe APP14, inverted channels as Photoshop writes them).
    Cmyk,
    /// A 16-bit grayscale PNG.
    Gray16,
    /// An 8-bit grayscale (single component) JPEG.
    Grayscale,
    /// A palette PNG with a `tRNS` chunk (transparent border).
    PaletteAlpha,
    /// An animated GIF whose first frame is the scene.
    Animated,
    /// A small PNG or JPEG whose header declares tens of thousands of pixels per side.
    DecompressionBomb,
    /// URL layout only: the URL points to a file that is not written (a 404 when served).
    MissingFile,
    /// A fluent caption of *another* scene (another colour × shape): the alt text of a
    /// neighbouring image. Rule filters cannot see it; an image-text model can.
    CaptionMismatched,
    /// Page boilerplate instead of a description ("Click to enlarge", shop and gallery text):
    /// passes the caption filters, names nothing in the image.
    CaptionBoilerplate,
}

/// What ingest should do with an item carrying a given dirt kind (with default filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum IngestOutcome {
    /// Accepted, possibly after conversion (to RGB8, upright, first frame, cleaned caption).
    Accepted,
    /// Rejected with this reason.
    Rejected(RejectReason),
}

impl DirtKind {
    /// Every kind, in a fixed order (the order of the sidecar counts and of the assignment).
    pub const ALL: [DirtKind; 23] = [
        DirtKind::Truncated,
        DirtKind::Corrupt,
        DirtKind::ZeroByte,
        DirtKind::NotImage,
        DirtKind::Tiny,
        DirtKind::ExtremeAspect,
        DirtKind::DuplicateExact,
        DirtKind::NearDuplicate,
        DirtKind::CaptionEmpty,
        DirtKind::CaptionOneWord,
        DirtKind::CaptionOverlong,
        DirtKind::CaptionHtml,
        DirtKind::CaptionInvalidUtf8,
        DirtKind::ExifRotated,
        DirtKind::Cmyk,
        DirtKind::Gray16,
        DirtKind::Grayscale,
        DirtKind::PaletteAlpha,
        DirtKind::Animated,
        DirtKind::DecompressionBomb,
        DirtKind::MissingFile,
        DirtKind::CaptionMismatched,
        DirtKind::CaptionBoilerplate,
    ];

    /// The stable name (`truncated`, `zero_byte`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DirtKind::Truncated => "truncated",
            DirtKind::Corrupt => "corrupt",
            DirtKind::ZeroByte => "zero_byte",
            DirtKind::NotImage => "not_image",
            DirtKind::Tiny => "tiny",
            DirtKind::ExtremeAspect => "extreme_aspect",
            DirtKind::DuplicateExact => "duplicate_exact",
            DirtKind::NearDuplicate => "near_duplicate",
            DirtKind::CaptionEmpty => "caption_empty",
            DirtKind::CaptionOneWord => "caption_one_word",
            DirtKind::CaptionOverlong => "caption_overlong",
            DirtKind::CaptionHtml => "caption_html",
            DirtKind::CaptionInvalidUtf8 => "caption_invalid_utf8",
            DirtKind::ExifRotated => "exif_rotated",
            DirtKind::Cmyk => "cmyk",
            DirtKind::Gray16 => "gray16",
            DirtKind::Grayscale => "grayscale",
            DirtKind::PaletteAlpha => "palette_alpha",
            DirtKind::Animated => "animated",
            DirtKind::DecompressionBomb => "decompression_bomb",
            DirtKind::MissingFile => "missing_file",
            DirtKind::CaptionMismatched => "caption_mismatched",
            DirtKind::CaptionBoilerplate => "caption_boilerplate",
        }
    }

    /// What ingest should do with such an item under its default settings.
    ///
    /// Two kinds depend on settings: `near_duplicate` becomes `duplicate_near` when near-duplicate
    /// filtering is on, and `caption_overlong` is accepted truncated when ingest is configured to
    /// truncate long captions instead of rejecting them.
    pub fn expected(self) -> IngestOutcome {
        use IngestOutcome::{Accepted, Rejected};
        match self {
            DirtKind::Truncated | DirtKind::Corrupt => Rejected(RejectReason::DecodeError),
            DirtKind::ZeroByte => Rejected(RejectReason::EmptyFile),
            DirtKind::NotImage => Rejected(RejectReason::NotAnImage),
            DirtKind::Tiny => Rejected(RejectReason::TooSmall),
            DirtKind::ExtremeAspect => Rejected(RejectReason::AspectRatio),
            DirtKind::DuplicateExact => Rejected(RejectReason::DuplicateExact),
            DirtKind::CaptionEmpty => Rejected(RejectReason::CaptionMissing),
            DirtKind::CaptionOneWord => Rejected(RejectReason::CaptionTooShort),
            DirtKind::CaptionOverlong => Rejected(RejectReason::CaptionTooLong),
            DirtKind::CaptionInvalidUtf8 => Rejected(RejectReason::CaptionInvalidUtf8),
            DirtKind::DecompressionBomb => Rejected(RejectReason::TooManyPixels),
            DirtKind::MissingFile => Rejected(RejectReason::HttpStatus),
            DirtKind::NearDuplicate
            | DirtKind::CaptionHtml
            | DirtKind::ExifRotated
            | DirtKind::Cmyk
            | DirtKind::Gray16
            | DirtKind::Grayscale
            | DirtKind::PaletteAlpha
            | DirtKind::Animated
            // semantic dirt: rules accept it, only a model (CLIP-score filtering) can tell
            | DirtKind::CaptionMismatched
            | DirtKind::CaptionBoilerplate => Accepted,
        }
    }

    /// Whether the kind can be planted in `layout`: invalid UTF-8 captions need a layout that
    /// stores raw caption bytes (WebDataset, folder); a missing file needs the URL layout.
    pub fn applies_to(self, layout: Layout) -> bool {
        match self {
            DirtKind::CaptionInvalidUtf8 => matches!(layout, Layout::Webdataset | Layout::Folder),
            DirtKind::MissingFile => layout == Layout::Urls,
            _ => true,
        }
    }

    /// Whether the item copies an earlier item of its shard (`dup_of` is set).
    pub fn is_duplicate(self) -> bool {
        matches!(self, DirtKind::DuplicateExact | DirtKind::NearDuplicate)
    }
}

impl fmt::Display for DirtKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown dirt kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dirt kind {0:?} (known: {known})", known = known_names())]
pub struct UnknownDirtKind(pub String);

fn known_names() -> String {
    DirtKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for DirtKind {
    type Err = UnknownDirtKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DirtKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownDirtKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in DirtKind::ALL {
            assert_eq!(k.as_str().parse::<DirtKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        let err = "rotten".parse::<DirtKind>().unwrap_err();
        assert!(err.to_string().contains("rotten") && err.to_string().contains("zero_byte"));
    }

    #[test]
    fn accepted_kinds_are_exactly_the_convertible_and_the_semantic_ones() {
        let accepted: Vec<&str> = DirtKind::ALL
            .into_iter()
            .filter(|k| k.expected() == IngestOutcome::Accepted)
            .map(DirtKind::as_str)
            .collect();
        assert_eq!(
            accepted,
            [
                "near_duplicate",
                "caption_html",
                "exif_rotated",
                "cmyk",
                "gray16",
                "grayscale",
                "palette_alpha",
                "animated",
                "caption_mismatched",
                "caption_boilerplate"
            ]
        );
    }

    #[test]
    fn layout_restrictions() {
        assert!(DirtKind::CaptionInvalidUtf8.applies_to(Layout::Webdataset));
        assert!(!DirtKind::CaptionInvalidUtf8.applies_to(Layout::Parquet));
        assert!(DirtKind::MissingFile.applies_to(Layout::Urls));
        assert!(!DirtKind::MissingFile.applies_to(Layout::Folder));
        assert!(DirtKind::Truncated.applies_to(Layout::Parquet));
    }
}
