//! Encoders for every file kind the generator writes, plus the byte surgery behind some dirt
//! (truncation, corruption, decompression-bomb headers).
//!
//! Colour and gray JPEG via libjpeg-turbo (`flipstream_imaging::compress_jpeg`, the
//! encoder ingest uses; EXIF APP1 spliced in after SOI), CMYK JPEG via `jpeg-encoder` (Adobe
//! APP14), PNG via `png` (RGB8, 16-bit gray,
//! palette + `tRNS`), lossy WebP via libwebp (`webp`), lossless WebP via `image`, GIF via `gif`
//! with a fixed 252-colour palette and ordered dithering (fast and deterministic). Errors are
//! plain messages; the caller adds the item index.

use std::borrow::Cow;
use std::io::Write;
use std::sync::OnceLock;

use flipstream_imaging::{ChromaSampling, JpegEncodeOptions, RawPixels, compress_jpeg};
use jpeg_encoder::{ColorType, Encoder};

use super::raster::Canvas;

/// An encoder's error message.
pub(crate) type EncodeResult = Result<Vec<u8>, String>;

fn dims16(c: &Canvas) -> Result<(u16, u16), String> {
    let w = u16::try_from(c.width).map_err(|_| format!("width {} too large for JPEG", c.width))?;
    let h =
        u16::try_from(c.height).map_err(|_| format!("height {} too large for JPEG", c.height))?;
    Ok((w, h))
}

/// Options of a colour JPEG.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JpegOptions {
    pub quality: u8,
    pub progressive: bool,
    /// EXIF Orientation tag value to embed (APP1), if any.
    pub orientation: Option<u16>,
}

/// A JPEG of the canvas (YCbCr; 4:2:0 below quality 90, 4:4:4 from 90).
pub(crate) fn jpeg(c: &Canvas, opts: JpegOptions) -> EncodeResult {
    dims16(c)?;
    let chroma = if opts.quality < 90 {
        ChromaSampling::Sub420
    } else {
        ChromaSampling::Sub444
    };
    let out = turbo(
        RawPixels::Rgb(&c.data),
        c,
        opts.quality,
        chroma,
        opts.progressive,
    )?;
    Ok(match opts.orientation {
        Some(o) => with_exif(out, &exif_orientation(o))?,
        None => out,
    })
}

fn turbo(
    pixels: RawPixels<'_>,
    c: &Canvas,
    quality: u8,
    chroma: ChromaSampling,
    progressive: bool,
) -> EncodeResult {
    let options = JpegEncodeOptions {
        quality,
        chroma,
        progressive,
    };
    compress_jpeg(pixels, c.width as usize, c.height as usize, &options).map_err(|e| e.to_string())
}

/// `jpeg` with an EXIF APP1 segment (`Exif\0\0` + the TIFF block) right after SOI, where
/// cameras write it.
fn with_exif(jpeg: Vec<u8>, tiff: &[u8]) -> EncodeResult {
    let len = u16::try_from(2 + 6 + tiff.len()).map_err(|_| "EXIF block too large".to_string())?;
    let rest = jpeg
        .strip_prefix(&[0xFF, 0xD8])
        .ok_or_else(|| "encoder output does not start with SOI".to_string())?;
    let mut out = Vec::with_capacity(jpeg.len() + 10 + tiff.len());
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(rest);
    Ok(out)
}

/// ITU-R BT.601 luma of each pixel, 0..=65280 (8.8 fixed point).
fn luma16(c: &Canvas) -> impl Iterator<Item = u32> + '_ {
    c.data
        .chunks_exact(3)
        .map(|p| 77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32)
}

/// A single-component (grayscale) JPEG.
pub(crate) fn jpeg_gray(c: &Canvas, quality: u8) -> EncodeResult {
    dims16(c)?;
    let gray: Vec<u8> = luma16(c).map(|l| (l >> 8) as u8).collect();
    turbo(
        RawPixels::Gray(&gray),
        c,
        quality,
        ChromaSampling::Sub444,
        false,
    )
}

/// A four-component CMYK JPEG with an Adobe APP14 marker (channels stored inverted, as
/// Photoshop writes them and libjpeg/Pillow/zune-jpeg expect).
pub(crate) fn jpeg_cmyk(c: &Canvas, quality: u8) -> EncodeResult {
    let (w, h) = dims16(c)?;
    let mut cmyk = Vec::with_capacity(c.data.len() / 3 * 4);
    for p in c.data.chunks_exact(3) {
        let max = p[0].max(p[1]).max(p[2]) as u32;
        let k = 255 - max;
        let ink = |v: u8| ((max - v as u32) * 255).checked_div(max).unwrap_or(0) as u8;
        cmyk.extend_from_slice(&[ink(p[0]), ink(p[1]), ink(p[2]), k as u8]);
    }
    let mut out = Vec::new();
    Encoder::new(&mut out, quality)
        .encode(&cmyk, w, h, ColorType::Cmyk)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A big-endian TIFF block holding one IFD0 entry: Orientation (0x0112) = `orientation`.
pub(crate) fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // tag
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

fn png_with(
    width: u32,
    height: u32,
    data: &[u8],
    setup: impl FnOnce(&mut png::Encoder<'_, &mut Vec<u8>>),
) -> EncodeResult {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_compression(png::Compression::Fast);
        setup(&mut enc);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(data).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// An 8-bit RGB PNG.
pub(crate) fn png_rgb(c: &Canvas) -> EncodeResult {
    png_with(c.width, c.height, &c.data, |e| {
        e.set_color(png::ColorType::Rgb);
        e.set_depth(png::BitDepth::Eight);
    })
}

/// A 16-bit grayscale PNG (big-endian samples).
pub(crate) fn png_gray16(c: &Canvas) -> EncodeResult {
    let data: Vec<u8> = luma16(c)
        .flat_map(|l| (((l * 257) >> 8).min(65535) as u16).to_be_bytes())
        .collect();
    png_with(c.width, c.height, &data, |e| {
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Sixteen);
    })
}

/// Palette levels per channel (6 × 7 × 6 = 252 colours).
const LEVELS: [u32; 3] = [6, 7, 6];
/// Index of the fully transparent entry of the palette + alpha PNG.
const TRANSPARENT: u8 = 252;
const BAYER4: [[i32; 4]; 4] = [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]];

fn fixed_palette() -> Vec<u8> {
    let mut pal = Vec::with_capacity(252 * 3);
    for r in 0..LEVELS[0] {
        for g in 0..LEVELS[1] {
            for b in 0..LEVELS[2] {
                for (v, n) in [(r, LEVELS[0]), (g, LEVELS[1]), (b, LEVELS[2])] {
                    pal.push((v * 255 / (n - 1)) as u8);
                }
            }
        }
    }
    pal
}

/// `DITHER[(y % 4) · 4 + x % 4][channel][value]`: the channel's part of the palette index of a
/// value at that dither position (red counts 7 × 6, green 6, blue 1).
type DitherTable = [[[u8; 256]; 3]; 16];

fn dither_table() -> &'static DitherTable {
    static TABLE: OnceLock<Box<DitherTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let weight = [LEVELS[1] * LEVELS[2], LEVELS[2], 1];
        let mut table = Box::new([[[0u8; 256]; 3]; 16]);
        for (pos, channels) in table.iter_mut().enumerate() {
            let dither = BAYER4[pos / 4][pos % 4] * 2 - 15; // −15..=15, in 32nds of a step
            for (ch, values) in channels.iter_mut().enumerate() {
                let n = LEVELS[ch] as i32;
                let step = 255 * 32 / (n - 1);
                for (v, out) in values.iter_mut().enumerate() {
                    let scaled = v as i32 * 32 + dither * step / 32;
                    let level = ((scaled + step / 2) / step).clamp(0, n - 1) as u32;
                    *out = (level * weight[ch]) as u8;
                }
            }
        }
        table
    })
}

/// Palette indices with 4×4 ordered dithering.
fn quantize(c: &Canvas) -> Vec<u8> {
    let table = dither_table();
    let row_len = c.width as usize * 3;
    let mut out = Vec::with_capacity(c.width as usize * c.height as usize);
    if row_len == 0 {
        return out;
    }
    for (y, row) in c.data.chunks_exact(row_len).enumerate() {
        let positions = &table[(y & 3) * 4..(y & 3) * 4 + 4];
        out.extend(row.chunks_exact(3).enumerate().map(|(x, p)| {
            let t = &positions[x & 3];
            t[0][p[0] as usize] + t[1][p[1] as usize] + t[2][p[2] as usize]
        }));
    }
    out
}

/// A palette PNG whose corners (radius `corner` px) use a fully transparent entry (`tRNS`).
pub(crate) fn png_palette_alpha(c: &Canvas, corner: u32) -> EncodeResult {
    let mut idx = quantize(c);
    let (w, h) = (c.width as i64, c.height as i64);
    let r = corner as i64;
    for y in 0..h {
        for x in 0..w {
            let cx = if x < r {
                r
            } else if x >= w - r {
                w - 1 - r
            } else {
                x
            };
            let cy = if y < r {
                r
            } else if y >= h - r {
                h - 1 - r
            } else {
                y
            };
            let (dx, dy) = (x - cx, y - cy);
            if dx * dx + dy * dy > r * r
                && let Some(p) = idx.get_mut((y * w + x) as usize)
            {
                *p = TRANSPARENT;
            }
        }
    }
    let mut palette = fixed_palette();
    palette.extend_from_slice(&[255, 255, 255]);
    let mut trns = vec![255u8; TRANSPARENT as usize];
    trns.push(0);
    png_with(c.width, c.height, &idx, |e| {
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Eight);
        e.set_palette(palette);
        e.set_trns(trns);
    })
}

/// A lossy WebP (libwebp, method 0: the fastest; other settings made no measurable difference).
pub(crate) fn webp_lossy(c: &Canvas, quality: f32) -> EncodeResult {
    let mut config =
        webp::WebPConfig::new().map_err(|()| "libwebp config init failed".to_string())?;
    config.quality = quality;
    config.method = 0;
    let mem = webp::Encoder::from_rgb(&c.data, c.width, c.height)
        .encode_advanced(&config)
        .map_err(|e| format!("{e:?}"))?;
    Ok(mem.to_vec())
}

/// A lossless WebP (`image`'s encoder).
pub(crate) fn webp_lossless(c: &Canvas) -> EncodeResult {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .encode(&c.data, c.width, c.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A GIF of one or more frames (all the same size; looping when animated).
pub(crate) fn gif(frames: &[Canvas], delay_cs: u16) -> EncodeResult {
    let first = frames.first().ok_or("a GIF needs at least one frame")?;
    let (w, h) = dims16(first)?;
    let mut out = Vec::new();
    {
        let mut enc =
            gif::Encoder::new(&mut out, w, h, &fixed_palette()).map_err(|e| e.to_string())?;
        if frames.len() > 1 {
            enc.set_repeat(gif::Repeat::Infinite)
                .map_err(|e| e.to_string())?;
        }
        for f in frames {
            let frame = gif::Frame {
                width: w,
                height: h,
                delay: delay_cs,
                buffer: Cow::Owned(quantize(f)),
                ..gif::Frame::default()
            };
            enc.write_frame(&frame).map_err(|e| e.to_string())?;
        }
        enc.into_inner().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Offset of the first JPEG segment with marker `0xFF marker`, walking the segment list.
pub(crate) fn find_jpeg_segment(bytes: &[u8], marker: u8) -> Option<usize> {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes.get(pos) != Some(&0xFF) {
            return None;
        }
        let m = *bytes.get(pos + 1)?;
        if m == marker {
            return Some(pos);
        }
        if m == 0xD9 || m == 0xDA {
            return None;
        }
        let len = u16::from_be_bytes([*bytes.get(pos + 2)?, *bytes.get(pos + 3)?]) as usize;
        pos += 2 + len;
    }
    None
}

/// Cuts a baseline JPEG inside its entropy-coded scan, at `fraction` (0–1) of the scan data.
pub(crate) fn truncate_jpeg(mut bytes: Vec<u8>, fraction: f32) -> EncodeResult {
    let sos = find_jpeg_segment(&bytes, 0xDA).ok_or("no SOS segment")?;
    let header_len = bytes
        .get(sos + 2..sos + 4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or("short SOS segment")?;
    let scan_start = sos + 2 + header_len;
    let scan_end = bytes.len().saturating_sub(2); // before EOI
    if scan_end <= scan_start + 2 {
        return Err("scan too short to truncate".to_string());
    }
    let cut =
        scan_start + 1 + ((scan_end - scan_start - 2) as f32 * fraction.clamp(0.0, 1.0)) as usize;
    bytes.truncate(cut.min(scan_end - 1));
    Ok(bytes)
}

/// Overwrites up to `garbage.len()` bytes (at most half the chunk) in the middle of a PNG's
/// first IDAT chunk, changing each, so its CRC is stale and its zlib stream broken.
pub(crate) fn corrupt_png(mut bytes: Vec<u8>, garbage: &[u8]) -> EncodeResult {
    let mut pos = 8;
    while pos + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let kind = &bytes[pos + 4..pos + 8];
        if kind == b"IDAT" && len >= 8 {
            let n = garbage.len().min(len / 2);
            let start = pos + 8 + (len - n) / 2;
            for (b, g) in bytes.iter_mut().skip(start).take(n).zip(garbage) {
                *b ^= g | 1;
            }
            return Ok(bytes);
        }
        pos += 12 + len;
    }
    Err("no IDAT chunk large enough to corrupt".to_string())
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A small, well-formed-looking RGB PNG whose IHDR declares `width × height`; its IDAT holds
/// the first few (black) rows only.
pub(crate) fn bomb_png(width: u32, height: u32) -> EncodeResult {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; 1 + width as usize * 3];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..4 {
        z.write_all(&row).map_err(|e| e.to_string())?;
    }
    let idat = z.finish().map_err(|e| e.to_string())?;
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Rewrites the frame header (SOF0/1/2) of a small JPEG to declare `width × height`.
pub(crate) fn bomb_jpeg(mut small: Vec<u8>, width: u16, height: u16) -> EncodeResult {
    let sof = [0xC0, 0xC1, 0xC2]
        .into_iter()
        .find_map(|m| find_jpeg_segment(&small, m))
        .ok_or("no SOF segment")?;
    // FF Cx, length (2), precision (1), height (2), width (2)
    let dims = small.get_mut(sof + 5..sof + 9).ok_or("short SOF segment")?;
    dims[..2].copy_from_slice(&height.to_be_bytes());
    dims[2..].copy_from_slice(&width.to_be_bytes());
    Ok(small)
}

#[cfg(test)]
mod tests {
    use super::super::raster::render;
    use super::super::rng::{Purpose, item_rng};
    use super::super::scene::Scene;
    use super::*;
    use image::GenericImageView;

    fn canvas(w: u32, h: u32) -> Canvas {
        render(&Scene::sample(
            w,
            h,
            &crate::SizeMix::default(),
            &mut item_rng(11, 0, Purpose::Scene),
        ))
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn dithering_table_matches_the_ordered_dither_formula() {
        let c = canvas(37, 23);
        let fixed = fixed_palette();
        for (i, (p, &idx)) in c.data.chunks_exact(3).zip(&quantize(&c)).enumerate() {
            let (x, y) = (i % 37, i / 37);
            let dither = BAYER4[y & 3][x & 3] * 2 - 15;
            let level = |v: u8, n: u32| -> u32 {
                let step = 255 * 32 / (n as i32 - 1);
                let scaled = v as i32 * 32 + dither * step / 32;
                ((scaled + step / 2) / step).clamp(0, n as i32 - 1) as u32
            };
            let want = level(p[0], LEVELS[0]) * LEVELS[1] * LEVELS[2]
                + level(p[1], LEVELS[1]) * LEVELS[2]
                + level(p[2], LEVELS[2]);
            assert_eq!(idx as u32, want, "pixel ({x}, {y}) {p:?}");
            let entry = &fixed[idx as usize * 3..idx as usize * 3 + 3];
            let err: i32 = (0..3).map(|k| (entry[k] as i32 - p[k] as i32).abs()).sum();
            assert!(err < 3 * 52, "pixel ({x}, {y}) {p:?} → {entry:?}");
        }
    }

    #[test]
    fn every_encoding_decodes_to_the_scene() {
        let c = canvas(96, 64);
        let cases: Vec<(&str, Vec<u8>, f64)> = vec![
            (
                "jpeg",
                jpeg(
                    &c,
                    JpegOptions {
                        quality: 90,
                        progressive: false,
                        orientation: None,
                    },
                )
                .unwrap(),
                12.0,
            ),
            (
                "progressive",
                jpeg(
                    &c,
                    JpegOptions {
                        quality: 90,
                        progressive: true,
                        orientation: None,
                    },
                )
                .unwrap(),
                12.0,
            ),
            ("png", png_rgb(&c).unwrap(), 0.0),
            ("webp", webp_lossy(&c, 90.0).unwrap(), 14.0),
            ("webp_lossless", webp_lossless(&c).unwrap(), 0.0),
            ("cmyk", jpeg_cmyk(&c, 95).unwrap(), 12.0),
            ("gif", gif(std::slice::from_ref(&c), 0).unwrap(), 30.0),
            ("palette", png_palette_alpha(&c, 0).unwrap(), 30.0),
        ];
        for (name, bytes, tolerance) in cases {
            let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(img.dimensions(), (96, 64), "{name}");
            let rgb = img.to_rgb8();
            let d = mean_abs_diff(rgb.as_raw(), &c.data);
            assert!(d <= tolerance + 0.01, "{name}: mean abs diff {d}");
        }
    }

    #[test]
    fn special_pixel_formats() {
        let c = canvas(64, 48);
        let g16 = image::load_from_memory(&png_gray16(&c).unwrap()).unwrap();
        assert_eq!(g16.color(), image::ColorType::L16);
        let g8 = image::load_from_memory(&jpeg_gray(&c, 90).unwrap()).unwrap();
        assert_eq!(g8.color(), image::ColorType::L8);
        let pal = png_palette_alpha(&c, 10).unwrap();
        let decoded = image::load_from_memory(&pal).unwrap().to_rgba8();
        assert_eq!(decoded.get_pixel(0, 0)[3], 0, "corner is transparent");
        assert_eq!(decoded.get_pixel(32, 24)[3], 255, "centre is opaque");
        let reader = png::Decoder::new(std::io::Cursor::new(pal))
            .read_info()
            .unwrap();
        assert_eq!(reader.info().color_type, png::ColorType::Indexed);
        assert!(reader.info().trns.is_some());
    }

    #[test]
    fn exif_orientation_is_readable() {
        let c = canvas(40, 30);
        let bytes = jpeg(
            &c,
            JpegOptions {
                quality: 80,
                progressive: false,
                orientation: Some(6),
            },
        )
        .unwrap();
        let mut dec = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        use image::ImageDecoder;
        assert_eq!(
            dec.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
    }

    #[test]
    fn truncated_and_corrupt_do_not_decode() {
        let c = canvas(120, 90);
        let full = jpeg(
            &c,
            JpegOptions {
                quality: 85,
                progressive: false,
                orientation: None,
            },
        )
        .unwrap();
        let cut = truncate_jpeg(full.clone(), 0.5).unwrap();
        assert!(cut.len() < full.len() && cut.len() > full.len() / 4);
        assert_ne!(&cut[cut.len() - 2..], &[0xFF, 0xD9]);
        let bad = corrupt_png(png_rgb(&c).unwrap(), &[0xAB; 64]).unwrap();
        assert!(image::load_from_memory(&bad).is_err());
    }

    #[test]
    fn bombs_declare_huge_dimensions() {
        let png_bomb = bomb_png(50_000, 40_000).unwrap();
        assert!(png_bomb.len() < 64 * 1024);
        let dims = image::ImageReader::new(std::io::Cursor::new(&png_bomb))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        assert_eq!(dims, (50_000, 40_000));
        let small = jpeg(
            &canvas(32, 32),
            JpegOptions {
                quality: 80,
                progressive: false,
                orientation: None,
            },
        )
        .unwrap();
        let jpeg_bomb = bomb_jpeg(small, 60_000, 50_000).unwrap();
        let dims = image::ImageReader::new(std::io::Cursor::new(&jpeg_bomb))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        assert_eq!(dims, (60_000, 50_000));
    }
}
