//! [`probe`]: format, declared size and EXIF orientation from the container header alone, without
//! decoding (or allocating) any pixels — microseconds even for a 50,000 × 50,000 "bomb". Every
//! decode starts here, so the pixel and memory limits are enforced before a decoder runs.

use std::io::Cursor;

use image::ImageDecoder as _;

use super::error::ImageError;
use super::exif;
use super::format::{ImageFormat, describe_non_image};
use super::orientation::Orientation;

/// What the header of an image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeInfo {
    /// The container format.
    pub format: ImageFormat,
    /// Width of the stored pixels (before orientation).
    pub width: u32,
    /// Height of the stored pixels (before orientation).
    pub height: u32,
    /// EXIF orientation (JPEG APP1, PNG `eXIf`, WebP `EXIF`, TIFF tag 274); `Normal` when absent
    /// or unreadable.
    pub orientation: Orientation,
    /// JPEG only: the number of colour components (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK).
    pub components: u8,
    /// JPEG only: an Adobe APP14 marker is present (4-component Adobe JPEGs store inverted CMYK).
    pub adobe: bool,
    /// JPEG only: progressive (or other multi-scan) coding; such files are decoded through a
    /// whole-image coefficient buffer, which the memory estimate counts.
    pub progressive: bool,
}

impl ProbeInfo {
    /// The upright size: `(width, height)` after the EXIF orientation.
    pub fn oriented_size(&self) -> (u32, u32) {
        self.orientation.oriented_size(self.width, self.height)
    }

    /// `width * height`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Reads the container header of `bytes`.
///
/// Errors: [`ImageError::Empty`] for zero bytes, [`ImageError::NotAnImage`] for bytes without a
/// supported signature (HTML error pages, SVG, AVIF, …), [`ImageError::Decode`] for a header that
/// is truncated, malformed or declares a zero size.
pub fn probe(bytes: &[u8]) -> Result<ProbeInfo, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = ImageFormat::sniff(bytes).ok_or_else(|| ImageError::NotAnImage {
        detail: describe_non_image(bytes),
    })?;
    let info = match format {
        ImageFormat::Jpeg => probe_jpeg(bytes),
        ImageFormat::Png => probe_png(bytes),
        ImageFormat::Gif => probe_gif(bytes),
        ImageFormat::Webp => probe_webp(bytes),
        ImageFormat::Bmp => probe_bmp(bytes),
        ImageFormat::Tiff => probe_tiff(bytes),
    }
    .map_err(|detail| ImageError::decode(format, detail))?;
    if info.width == 0 || info.height == 0 {
        return Err(ImageError::decode(
            format,
            format!(
                "header declares an empty image ({}x{})",
                info.width, info.height
            ),
        ));
    }
    Ok(info)
}

type Probed = Result<ProbeInfo, String>;

fn info(format: ImageFormat, width: u32, height: u32) -> ProbeInfo {
    ProbeInfo {
        format,
        width,
        height,
        orientation: Orientation::Normal,
        components: 0,
        adobe: false,
        progressive: false,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const TRUNCATED: &str = "header is truncated";

/// Walks the JPEG markers up to the first SOF, picking up EXIF orientation and the Adobe marker.
fn probe_jpeg(b: &[u8]) -> Probed {
    let mut pos = 2;
    let mut orientation = None;
    let mut adobe = false;
    loop {
        if b.get(pos) != Some(&0xFF) {
            return Err(match b.get(pos) {
                None => TRUNCATED.to_string(),
                Some(x) => format!("expected a marker at byte {pos}, found 0x{x:02x}"),
            });
        }
        while b.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos).ok_or(TRUNCATED)?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return Err("end of image before any frame header".into()),
            0xDA => return Err("scan data before any frame header".into()),
            _ => {}
        }
        let len = usize::from(be16(b, pos).ok_or(TRUNCATED)?);
        if len < 2 {
            return Err(format!("marker 0x{marker:02x} has an invalid length {len}"));
        }
        let seg = b.get(pos + 2..pos + len).ok_or(TRUNCATED)?;
        match marker {
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let height = be16(seg, 1).ok_or(TRUNCATED)?;
                let width = be16(seg, 3).ok_or(TRUNCATED)?;
                let components = *seg.get(5).ok_or(TRUNCATED)?;
                if height == 0 {
                    return Err(
                        "height 0 in the frame header (DNL-defined height is not supported)".into(),
                    );
                }
                return Ok(ProbeInfo {
                    orientation: orientation.unwrap_or_default(),
                    components,
                    adobe,
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                    ..info(ImageFormat::Jpeg, u32::from(width), u32::from(height))
                });
            }
            0xE1 if orientation.is_none() && seg.starts_with(b"Exif\0\0") => {
                orientation = exif::orientation_from_exif(seg);
            }
            0xEE if seg.starts_with(b"Adobe") => adobe = true,
            _ => {}
        }
        pos += len;
    }
}

/// IHDR for the size, then the chunks before the first IDAT for an `eXIf` orientation.
fn probe_png(b: &[u8]) -> Probed {
    if b.get(12..16) != Some(b"IHDR") {
        return Err(if b.len() < 16 {
            TRUNCATED.into()
        } else {
            "first chunk is not IHDR".into()
        });
    }
    let width = be32(b, 16).ok_or(TRUNCATED)?;
    let height = be32(b, 20).ok_or(TRUNCATED)?;
    let mut orientation = Orientation::Normal;
    let mut pos = 8usize;
    while let (Some(len), Some(kind)) = (be32(b, pos), b.get(pos + 4..pos + 8)) {
        let start = pos + 8;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
            break;
        };
        match kind {
            b"IDAT" | b"IEND" => break,
            b"eXIf" => {
                if let Some(o) = b.get(start..end).and_then(exif::orientation_from_exif) {
                    orientation = o;
                }
                break;
            }
            _ => {}
        }
        pos = end + 4;
    }
    Ok(ProbeInfo {
        orientation,
        ..info(ImageFormat::Png, width, height)
    })
}

/// The logical screen size (the canvas the first frame is drawn on).
fn probe_gif(b: &[u8]) -> Probed {
    let width = le16(b, 6).ok_or(TRUNCATED)?;
    let height = le16(b, 8).ok_or(TRUNCATED)?;
    Ok(info(ImageFormat::Gif, u32::from(width), u32::from(height)))
}

/// `VP8 ` (lossy), `VP8L` (lossless) or `VP8X` (extended: canvas size, and an `EXIF` chunk).
fn probe_webp(b: &[u8]) -> Probed {
    let kind = b.get(12..16).ok_or(TRUNCATED)?;
    let d = 20;
    match kind {
        b"VP8 " => {
            if b.get(d + 3..d + 6) != Some(&[0x9d, 0x01, 0x2a]) {
                return Err(if b.len() < d + 6 {
                    TRUNCATED.into()
                } else {
                    "bad VP8 start code".into()
                });
            }
            let w = le16(b, d + 6).ok_or(TRUNCATED)? & 0x3fff;
            let h = le16(b, d + 8).ok_or(TRUNCATED)? & 0x3fff;
            Ok(info(ImageFormat::Webp, u32::from(w), u32::from(h)))
        }
        b"VP8L" => {
            if b.get(d) != Some(&0x2f) {
                return Err(if b.len() <= d {
                    TRUNCATED.into()
                } else {
                    "bad VP8L signature".into()
                });
            }
            let bits = le32(b, d + 1).ok_or(TRUNCATED)?;
            Ok(info(
                ImageFormat::Webp,
                (bits & 0x3fff) + 1,
                ((bits >> 14) & 0x3fff) + 1,
            ))
        }
        b"VP8X" => {
            let flags = *b.get(d).ok_or(TRUNCATED)?;
            let w = le24(b, d + 4).ok_or(TRUNCATED)? + 1;
            let h = le24(b, d + 7).ok_or(TRUNCATED)? + 1;
            let mut orientation = Orientation::Normal;
            if flags & 0x08 != 0 {
                let mut pos = 12usize;
                while let (Some(kind), Some(len)) = (b.get(pos..pos + 4), le32(b, pos + 4)) {
                    let start = pos + 8;
                    let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l))
                    else {
                        break;
                    };
                    if kind == b"EXIF" {
                        if let Some(o) = b.get(start..end).and_then(exif::orientation_from_exif) {
                            orientation = o;
                        }
                        break;
                    }
                    pos = end + (end & 1);
                }
            }
            Ok(ProbeInfo {
                orientation,
                ..info(ImageFormat::Webp, w, h)
            })
        }
        other => Err(format!(
            "unknown WebP chunk {:?}",
            String::from_utf8_lossy(other)
        )),
    }
}

/// BITMAPCOREHEADER (16-bit sizes) or BITMAPINFOHEADER and later (signed 32-bit, negative
/// height = top-down rows).
fn probe_bmp(b: &[u8]) -> Probed {
    let dib = le32(b, 14).ok_or(TRUNCATED)?;
    let (w, h) = if dib == 12 {
        (
            i64::from(le16(b, 18).ok_or(TRUNCATED)?),
            i64::from(le16(b, 20).ok_or(TRUNCATED)?),
        )
    } else {
        let w = le32(b, 18).ok_or(TRUNCATED)? as i32;
        let h = le32(b, 22).ok_or(TRUNCATED)? as i32;
        (i64::from(w), i64::from(h).abs())
    };
    let width = u32::try_from(w).map_err(|_| format!("negative width {w}"))?;
    let height = u32::try_from(h).map_err(|_| format!("bad height {h}"))?;
    Ok(info(ImageFormat::Bmp, width, height))
}

/// Size from the `tiff` crate (it knows strips, tiles and BigTIFF; reads only IFD0), orientation
/// from tag 274.
fn probe_tiff(b: &[u8]) -> Probed {
    let decoder =
        image::codecs::tiff::TiffDecoder::new(Cursor::new(b)).map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    let orientation = exif::read_ifd0(b)
        .and_then(|i| i.orientation)
        .unwrap_or_default();
    Ok(ProbeInfo {
        orientation,
        ..info(ImageFormat::Tiff, width, height)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_impostors() {
        assert_eq!(probe(&[]), Err(ImageError::Empty));
        let html = probe(b"<!doctype html><title>404</title>").unwrap_err();
        assert_eq!(html.reason().code(), "not_an_image");
        assert!(html.to_string().contains("HTML"), "{html}");
    }

    #[test]
    fn jpeg_header_walk() {
        // SOI, APP0 (len 4), SOF0 400x300x3
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0];
        j.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8, 0x01, 0x2C, 0x01, 0x90, 3]);
        j.extend_from_slice(&[0; 9]);
        let p = probe(&j).unwrap();
        assert_eq!(
            (p.format, p.width, p.height, p.components),
            (ImageFormat::Jpeg, 400, 300, 3)
        );
        // every prefix is a decode error, never a panic
        for cut in 3..j.len() - 9 {
            let e = probe(&j[..cut]).unwrap_err();
            assert_eq!(e.reason().code(), "decode_error", "{cut}: {e}");
        }
        // SOS before SOF
        let sos = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2];
        assert!(
            probe(&sos)
                .unwrap_err()
                .to_string()
                .contains("scan data before")
        );
    }

    #[test]
    fn png_gif_webp_bmp_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&50_000u32.to_be_bytes());
        png.extend_from_slice(&40_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let p = probe(&png).unwrap();
        assert_eq!(
            (p.format, p.width, p.height),
            (ImageFormat::Png, 50_000, 40_000)
        );
        assert_eq!(p.pixels(), 2_000_000_000);

        let gif = b"GIF89a\x40\x01\xf0\x00\0\0\0";
        assert_eq!(
            (probe(gif).unwrap().width, probe(gif).unwrap().height),
            (320, 240)
        );

        let mut vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        vp8l.extend_from_slice(&((99u32) | (49 << 14)).to_le_bytes());
        let p = probe(&vp8l).unwrap();
        assert_eq!((p.format, p.width, p.height), (ImageFormat::Webp, 100, 50));

        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 12]);
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&640i32.to_le_bytes());
        bmp.extend_from_slice(&(-480i32).to_le_bytes());
        let p = probe(&bmp).unwrap();
        assert_eq!((p.format, p.width, p.height), (ImageFormat::Bmp, 640, 480));
    }

    #[test]
    fn zero_size_is_a_decode_error() {
        let gif = b"GIF89a\0\0\xf0\x00\0\0\0";
        let e = probe(gif).unwrap_err();
        assert_eq!(e.reason().code(), "decode_error");
        assert!(e.to_string().contains("0x240"), "{e}");
    }
}
