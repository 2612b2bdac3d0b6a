//! Synthetic inputs for tests and benchmarks (deterministic from a seed): photo-like renders
//! (gradients, shapes, noise), web-like JPEG sets, and EXIF payloads. Not used by the pipeline.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::encode::{EncodeSpec, OutputFormat, encode};
use super::error::ImageError;
use super::exif::{TAG_ORIENTATION, TYPE_SHORT};

/// A photo-like RGB image: a two-colour gradient in a random direction, a soft ripple, 6–14
/// filled circles and rectangles, and per-pixel noise, all from `seed`.
pub fn render(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c0: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
    let c1: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let ripple_f: f32 = rng.random_range(0.01..0.06);
    let ripple_a: f32 = rng.random_range(5.0..25.0);
    let shapes: Vec<(bool, f32, f32, f32, f32, [f32; 3])> = (0..rng.random_range(6..15))
        .map(|_| {
            let circle = rng.random_bool(0.5);
            let cx = rng.random_range(0.0..width as f32);
            let cy = rng.random_range(0.0..height as f32);
            let a = rng.random_range(0.05..0.35) * width.min(height) as f32;
            let b = rng.random_range(0.05..0.35) * width.min(height) as f32;
            let color = std::array::from_fn(|_| rng.random_range(0.0..255.0));
            (circle, cx, cy, a, b, color)
        })
        .collect();
    let diag = (width as f32).hypot(height as f32).max(1.0);
    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let t = ((xf * dx + yf * dy) / diag + 0.5).clamp(0.0, 1.0);
        let ripple = ripple_a * ((xf + yf * 0.7) * ripple_f).sin();
        let mut c: [f32; 3] = std::array::from_fn(|i| c0[i] * (1.0 - t) + c1[i] * t + ripple);
        for &(circle, cx, cy, a, b, color) in &shapes {
            let inside = if circle {
                (xf - cx).hypot(yf - cy) < a
            } else {
                (xf - cx).abs() < a && (yf - cy).abs() < b / 2.0
            };
            if inside {
                c = color;
            }
        }
        let noise: f32 = rng.random_range(-12.0..12.0);
        *px = Rgb(c.map(|v| (v + noise).clamp(0.0, 255.0) as u8));
    }
    img
}

/// `render(width, height, seed)` encoded as JPEG at `quality`.
pub fn jpeg(width: u32, height: u32, seed: u64, quality: u8) -> Result<Vec<u8>, ImageError> {
    encode(
        &render(width, height, seed),
        &EncodeSpec {
            format: OutputFormat::Jpeg,
            quality,
        },
    )
}

/// A web-like set of `n` JPEGs: sizes spread around 500 × 400 (sides about 200–900, mixed
/// landscape and portrait), one in ten large (1,200–2,400 px), quality 75–95.
pub fn web_like_jpegs(n: usize, seed: u64) -> Result<Vec<Vec<u8>>, ImageError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let long = if i % 10 == 9 {
                rng.random_range(1200..2400)
            } else {
                rng.random_range(300..900)
            };
            let aspect: f32 = rng.random_range(1.0..1.8);
            let short = ((long as f32 / aspect) as u32).max(200);
            let (w, h) = if rng.random_bool(0.75) {
                (long, short)
            } else {
                (short, long)
            };
            let quality = rng.random_range(75..=95);
            jpeg(w, h, rng.random(), quality)
        })
        .collect()
}

/// Builds a little-endian TIFF structure with one IFD holding `entries` (tag, type, value), the
/// body of an EXIF payload.
pub fn tiff_structure(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for &(tag, kind, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        if kind == TYPE_SHORT {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

/// An EXIF payload (`Exif\0\0` + TIFF) holding only the orientation tag set to `value`.
pub fn exif_with_orientation(value: u16) -> Vec<u8> {
    let mut out = b"Exif\0\0".to_vec();
    out.extend_from_slice(&tiff_structure(&[(
        TAG_ORIENTATION,
        TYPE_SHORT,
        u32::from(value),
    )]));
    out
}

/// `jpeg` with an APP1 segment carrying `exif` inserted right after SOI.
pub fn with_app1(jpeg: &[u8], exif: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + exif.len() + 4);
    out.extend_from_slice(&jpeg[..2.min(jpeg.len())]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(exif);
    out.extend_from_slice(jpeg.get(2..).unwrap_or(&[]));
    out
}
