//! Hashes for deduplication: [`content_hash`] (BLAKE3 of the original bytes, exact duplicates)
//! and [`phash`] (the classic DCT perceptual hash, near duplicates), compared with [`hamming`].

use std::sync::OnceLock;

use image::RgbImage;

use super::error::ImageError;
use super::resize::{ResizeFilter, resample_whole};

/// BLAKE3 of `bytes` (the `content_hash` column).
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Side of the grayscale thumbnail the DCT runs on.
const N: usize = 32;
/// Frequencies kept per axis (1..=8: the lowest, without the DC row and column).
const K: usize = 8;

/// `cos((2x + 1) u π / 2N)` for u in 0..=K, x in 0..N.
fn cosines() -> &'static [[f32; N]; K + 1] {
    static TABLE: OnceLock<[[f32; N]; K + 1]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[0f32; N]; K + 1];
        for (u, row) in t.iter_mut().enumerate() {
            for (x, c) in row.iter_mut().enumerate() {
                *c = (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * N) as f64).cos()
                    as f32;
            }
        }
        t
    })
}

/// The 64-bit DCT perceptual hash of `image` (pHash.org's construction): area-average to 32 × 32,
/// luma (Rec. 601), 2-D DCT-II, the 8 × 8 lowest frequencies without the DC row and column, each
/// bit set when its coefficient is above their median. Row-major, most significant bit first.
///
/// Re-encoding at another quality or resizing moves a few bits (typically ≤ 6); unrelated images
/// differ in about half of them (~32).
pub fn phash(image: &RgbImage) -> Result<u64, ImageError> {
    if image.width() == 0 || image.height() == 0 {
        return Err(ImageError::InvalidArgument(
            "cannot hash an empty image".into(),
        ));
    }
    let small = resample_whole(image, N as u32, N as u32, ResizeFilter::Box)?;
    let mut luma = [[0f32; N]; N];
    for (i, px) in small.as_raw().chunks_exact(3).enumerate() {
        let (r, g, b) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
        luma[i / N][i % N] = 0.299 * r + 0.587 * g + 0.114 * b;
    }
    let cos = cosines();
    // along x: rows[y][u] = Σx luma[y][x]·cos_u(x)
    let mut rows = [[0f32; K]; N];
    for (y, line) in luma.iter().enumerate() {
        for u in 0..K {
            rows[y][u] = line.iter().zip(&cos[u + 1]).map(|(p, c)| p * c).sum();
        }
    }
    // along y: coefficient (v, u) = Σy rows[y][u]·cos_v(y)
    let mut coeffs = [0f32; K * K];
    for v in 0..K {
        for u in 0..K {
            coeffs[v * K + u] = rows.iter().zip(&cos[v + 1]).map(|(r, c)| r[u] * c).sum();
        }
    }
    let mut sorted = coeffs;
    sorted.sort_by(f32::total_cmp);
    let median = (sorted[K * K / 2 - 1] + sorted[K * K / 2]) / 2.0;
    Ok(coeffs
        .iter()
        .fold(0u64, |acc, &c| (acc << 1) | u64::from(c > median)))
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_blake3() {
        assert_eq!(
            blake3::Hash::from(content_hash(b"abc")).to_hex().as_str(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn phash_is_balanced_and_brightness_invariant() {
        let img = crate::fixtures::render(320, 240, 7);
        let h = phash(&img).unwrap();
        assert!((24..=40).contains(&h.count_ones()), "{:064b}", h);
        let brighter = RgbImage::from_fn(320, 240, |x, y| {
            let p = img.get_pixel(x, y).0;
            image::Rgb(p.map(|c| c.saturating_add(10)))
        });
        assert!(hamming(h, phash(&brighter).unwrap()) <= 4);
        assert_eq!(hamming(0, u64::MAX), 64);
        assert!(phash(&RgbImage::new(0, 5)).is_err());
    }
}
