//! Image container formats: recognised from their magic bytes (never from a file name or a
//! `Content-Type`), with the names stored in the shards' `image_format` column.

use std::fmt;

/// A container format that flipstream decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// JPEG / JFIF / EXIF (`FF D8 FF`).
    Jpeg,
    /// PNG, including APNG (first frame).
    Png,
    /// GIF 87a / 89a (first frame).
    Gif,
    /// WebP, lossy or lossless, still or animated (first frame).
    Webp,
    /// Windows bitmap.
    Bmp,
    /// TIFF (first image).
    Tiff,
}

impl ImageFormat {
    /// Every format, in declaration order.
    pub const ALL: [ImageFormat; 6] = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Webp,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ];

    /// The lowercase name stored in shards (`jpeg`, `png`, `webp`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        }
    }

    /// Parses [`ImageFormat::as_str`] output (also `jpg` and `tif`, any case).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "jpg" => Some(ImageFormat::Jpeg),
            "tif" => Some(ImageFormat::Tiff),
            _ => Self::ALL.into_iter().find(|f| f.as_str() == name),
        }
    }

    /// The format whose signature `bytes` start with, if any.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else if bytes.starts_with(b"BM") && bytes.len() >= 26 {
            Some(ImageFormat::Bmp)
        } else if bytes.starts_with(b"II*\0")
            || bytes.starts_with(b"MM\0*")
            || bytes.starts_with(b"II+\0")
            || bytes.starts_with(b"MM\0+")
        {
            Some(ImageFormat::Tiff)
        } else {
            None
        }
    }

    /// The same format in the `image` crate.
    pub(crate) fn to_image_crate(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::Webp => image::ImageFormat::WebP,
            ImageFormat::Bmp => image::ImageFormat::Bmp,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short description of bytes that are not a supported image, for rejection details.
pub(crate) fn describe_non_image(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let lower = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    let known = if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.contains("<head")
    {
        Some("an HTML document")
    } else if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        Some("an SVG document (vector images are not supported)")
    } else if lower.starts_with("<?xml") {
        Some("an XML document")
    } else if lower.starts_with('{') || lower.starts_with('[') {
        Some("JSON or other text")
    } else if head.starts_with(b"%PDF") {
        Some("a PDF document")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        Some("an ISO-BMFF file (AVIF/HEIF/MP4; not supported)")
    } else if head.starts_with(&[0, 0, 1, 0]) {
        Some("an ICO icon (not supported)")
    } else if head.starts_with(&[0xFF, 0x0A]) || head.starts_with(b"\0\0\0\x0cJXL ") {
        Some("a JPEG XL image (not supported)")
    } else {
        None
    };
    match known {
        Some(what) => format!("the bytes are {what}"),
        None => {
            let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!(
                "unknown signature [{}] ({} bytes)",
                hex.join(" "),
                bytes.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in ImageFormat::ALL {
            assert_eq!(ImageFormat::parse(f.as_str()), Some(f));
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.as_str())
            );
        }
        assert_eq!(ImageFormat::parse("JPG"), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::parse("avif"), None);
    }

    #[test]
    fn sniffs_signatures() {
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a.."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(
            ImageFormat::sniff(b"II*\0\x08\0\0\0"),
            Some(ImageFormat::Tiff)
        );
        assert_eq!(ImageFormat::sniff(b"<html>"), None);
        assert_eq!(ImageFormat::sniff(&[]), None);
    }

    #[test]
    fn describes_common_impostors() {
        assert!(describe_non_image(b"<!DOCTYPE html><html>").contains("HTML"));
        assert!(describe_non_image(b"  <html lang=en>").contains("HTML"));
        assert!(describe_non_image(b"<svg xmlns=...>").contains("SVG"));
        assert!(describe_non_image(b"\0\0\0\x1cftypavif").contains("AVIF"));
        let unknown = describe_non_image(&[1, 2, 3]);
        assert_eq!(unknown, "unknown signature [01 02 03] (3 bytes)");
    }
}
