//! The measures the report describes per accepted row, with their fixed histogram bins.

use super::histogram::BinSpec;

/// A measure of an accepted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Stored width.
    Width,
    /// Stored height.
    Height,
    /// Source width.
    OrigWidth,
    /// Source height.
    OrigHeight,
    /// Stored width / height.
    AspectRatio,
    /// Source width / height.
    OrigAspectRatio,
    /// Stored megapixels.
    Megapixels,
    /// Source megapixels.
    OrigMegapixels,
    /// Encoded image size.
    ImageBytes,
    /// Caption characters.
    CaptionChars,
    /// Caption words.
    CaptionWords,
}

/// Image sides: 8 px to 64 Ki px, eight bins per doubling (each about 9 % wide).
const SIDE_BINS: BinSpec = BinSpec::Log2 {
    lo: 8.0,
    per_octave: 8,
    bins: 8 * 13,
};
/// Aspect ratios 1:16.7 to 16.7:1, eight bins per doubling, 1.0 in the middle of a bin.
const ASPECT_BINS: BinSpec = BinSpec::Log2 {
    lo: 0.059_850_205_043_660_856,
    per_octave: 8,
    bins: 65,
};
/// Megapixels: 2^-14 (an 8×8 image) to 1024, four bins per doubling.
const MEGAPIXEL_BINS: BinSpec = BinSpec::Log2 {
    lo: 1.0 / 16_384.0,
    per_octave: 4,
    bins: 4 * 24,
};
/// Encoded sizes: 64 B to 64 MiB, eight bins per doubling.
const BYTE_BINS: BinSpec = BinSpec::Log2 {
    lo: 64.0,
    per_octave: 8,
    bins: 8 * 20,
};
/// Caption characters: 0 to 1000 in steps of 10.
const CHAR_BINS: BinSpec = BinSpec::Linear {
    lo: 0.0,
    width: 10.0,
    bins: 100,
};
/// Caption words: 0 to 128, one bin per count.
const WORD_BINS: BinSpec = BinSpec::Linear {
    lo: 0.0,
    width: 1.0,
    bins: 128,
};

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 11] = [
        Metric::Width,
        Metric::Height,
        Metric::OrigWidth,
        Metric::OrigHeight,
        Metric::AspectRatio,
        Metric::OrigAspectRatio,
        Metric::Megapixels,
        Metric::OrigMegapixels,
        Metric::ImageBytes,
        Metric::CaptionChars,
        Metric::CaptionWords,
    ];

    /// Position in [`Metric::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Field name in `report.json` (`distributions.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Width => "width",
            Metric::Height => "height",
            Metric::OrigWidth => "orig_width",
            Metric::OrigHeight => "orig_height",
            Metric::AspectRatio => "aspect_ratio",
            Metric::OrigAspectRatio => "orig_aspect_ratio",
            Metric::Megapixels => "megapixels",
            Metric::OrigMegapixels => "orig_megapixels",
            Metric::ImageBytes => "image_bytes",
            Metric::CaptionChars => "caption_chars",
            Metric::CaptionWords => "caption_words",
        }
    }

    /// Title for people.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Width => "Stored width (px)",
            Metric::Height => "Stored height (px)",
            Metric::OrigWidth => "Source width (px)",
            Metric::OrigHeight => "Source height (px)",
            Metric::AspectRatio => "Stored aspect ratio (w/h)",
            Metric::OrigAspectRatio => "Source aspect ratio (w/h)",
            Metric::Megapixels => "Stored megapixels",
            Metric::OrigMegapixels => "Source megapixels",
            Metric::ImageBytes => "Stored bytes per image",
            Metric::CaptionChars => "Caption length (characters)",
            Metric::CaptionWords => "Caption length (words)",
        }
    }

    /// The fixed bins.
    pub fn bins(self) -> BinSpec {
        match self {
            Metric::Width | Metric::Height | Metric::OrigWidth | Metric::OrigHeight => SIDE_BINS,
            Metric::AspectRatio | Metric::OrigAspectRatio => ASPECT_BINS,
            Metric::Megapixels | Metric::OrigMegapixels => MEGAPIXEL_BINS,
            Metric::ImageBytes => BYTE_BINS,
            Metric::CaptionChars => CHAR_BINS,
            Metric::CaptionWords => WORD_BINS,
        }
    }

    /// How values print: `bytes`, `ratio`, `decimal` or `integer`.
    pub fn unit(self) -> ValueUnit {
        match self {
            Metric::ImageBytes => ValueUnit::Bytes,
            Metric::AspectRatio | Metric::OrigAspectRatio => ValueUnit::Ratio,
            Metric::Megapixels | Metric::OrigMegapixels => ValueUnit::Decimal,
            _ => ValueUnit::Integer,
        }
    }
}

/// How a metric's values are printed in the Markdown and HTML reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    /// Whole numbers (pixels, characters, words).
    Integer,
    /// Sizes in bytes (kB, MB).
    Bytes,
    /// Ratios with two decimals.
    Ratio,
    /// Other real numbers, three significant digits.
    Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
    }

    #[test]
    fn square_images_sit_in_the_middle_of_an_aspect_bin() {
        let b = ASPECT_BINS;
        let i = match b.slot(1.0) {
            super::super::histogram::Slot::Bin(i) => i,
            other => panic!("{other:?}"),
        };
        let (lo, hi) = (b.edge(i), b.edge(i + 1));
        assert!((lo * hi - 1.0).abs() < 1e-6, "{lo} {hi}");
        assert!(b.edge(0) < 1.0 / 16.0 && b.edge(65) > 16.0);
    }
}
