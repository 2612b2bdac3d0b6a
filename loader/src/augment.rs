//! Per-sample image work: decode, choose the crop, resize into the batch, flip.
//!
//! The crop choice is torchvision's `RandomResizedCrop.get_params` (ten tries at a random area
//! and log-uniform aspect ratio, then a centred fallback), drawn from a stream seeded by
//! (seed, epoch, position), so pixels never depend on which thread did the work. Eval takes the
//! centred square covering `eval_crop_fraction` of the shortest side, which equals "resize the
//! shortest side, then centre crop".
//!
//! Decoding and resampling happen in one private function, [`decode_crop_resize_into`], which
//! uses `image` to decode and the shared `imaging` resampler (`fast_image_resize`) to crop and
//! resize in one pass.

use std::io::Cursor;

use fast_image_resize::{FilterType, ResizeAlg};

use super::config::{Interpolation, LoaderConfig, Mode};
use super::rng::{SplitMix64, Tag, derive};
use flipstream_imaging::resample_rgb8;

/// A source rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CropRect {
    /// Left column.
    pub left: u32,
    /// Top row.
    pub top: u32,
    /// Width (≥ 1).
    pub width: u32,
    /// Height (≥ 1).
    pub height: u32,
}

/// What to do with each image, resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct Augment {
    mode: Mode,
    seed: u64,
    size: u32,
    scale: (f64, f64),
    log_ratio: (f64, f64),
    ratio: (f64, f64),
    hflip_prob: f64,
    eval_fraction: f64,
    filter: FilterType,
    max_pixels: u64,
}

impl Augment {
    /// The augmentation `config` asks for.
    pub(crate) fn new(config: &LoaderConfig) -> Self {
        Self {
            mode: config.mode,
            seed: config.seed,
            size: config.image_size,
            scale: config.crop_scale,
            log_ratio: (config.crop_ratio.0.ln(), config.crop_ratio.1.ln()),
            ratio: config.crop_ratio,
            hflip_prob: config.hflip_prob,
            eval_fraction: config.eval_crop_fraction,
            filter: match config.interpolation {
                Interpolation::Bilinear => FilterType::Bilinear,
                Interpolation::Bicubic => FilterType::CatmullRom,
            },
            max_pixels: config.max_image_pixels,
        }
    }

    /// Bytes of one output image.
    pub(crate) fn image_bytes(&self) -> usize {
        self.size as usize * self.size as usize * 3
    }

    /// Output side in pixels.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Decodes `encoded` and writes the augmented sample at `pos` of `epoch` into `dst`
    /// (`size × size × 3` bytes). The error says why the image could not be used.
    pub(crate) fn apply(
        &self,
        encoded: &[u8],
        epoch: u64,
        pos: u64,
        dst: &mut [u8],
    ) -> Result<(), String> {
        let mut rng = SplitMix64::new(derive(Tag::Augment, &[self.seed, epoch, pos]));
        let mut flip = false;
        let choose = |w: u32, h: u32| match self.mode {
            Mode::Train => {
                let rect =
                    random_resized_crop(w, h, self.scale, self.log_ratio, self.ratio, &mut rng);
                flip = rng.next_f64() < self.hflip_prob;
                rect
            }
            Mode::Eval => center_square(w, h, self.eval_fraction),
        };
        decode_crop_resize_into(
            encoded,
            self.max_pixels,
            choose,
            self.size,
            self.size,
            self.filter,
            dst,
        )?;
        if flip {
            flip_horizontal(dst, self.size as usize);
        }
        Ok(())
    }
}

/// torchvision's `RandomResizedCrop.get_params` on a `w × h` image.
pub(crate) fn random_resized_crop(
    w: u32,
    h: u32,
    scale: (f64, f64),
    log_ratio: (f64, f64),
    ratio: (f64, f64),
    rng: &mut SplitMix64,
) -> CropRect {
    let (wf, hf) = (f64::from(w), f64::from(h));
    let area = wf * hf;
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_ratio.0, log_ratio.1).exp();
        let cw = (target * aspect).sqrt().round();
        let ch = (target / aspect).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= wf && ch <= hf {
            let (cw, ch) = (cw as u32, ch as u32);
            let top = rng.below(u64::from(h - ch) + 1) as u32;
            let left = rng.below(u64::from(w - cw) + 1) as u32;
            return CropRect {
                left,
                top,
                width: cw,
                height: ch,
            };
        }
    }
    // fallback: the whole image, trimmed to the ratio range, centred
    let in_ratio = wf / hf;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((wf / ratio.0).round() as u32).clamp(1, h))
    } else if in_ratio > ratio.1 {
        (((hf * ratio.1).round() as u32).clamp(1, w), h)
    } else {
        (w, h)
    };
    CropRect {
        left: (w - cw) / 2,
        top: (h - ch) / 2,
        width: cw,
        height: ch,
    }
}

/// The centred square covering `fraction` of the shortest side.
pub(crate) fn center_square(w: u32, h: u32, fraction: f64) -> CropRect {
    let side = ((f64::from(w.min(h)) * fraction).round() as u32).clamp(1, w.min(h));
    CropRect {
        left: (w - side) / 2,
        top: (h - side) / 2,
        width: side,
        height: side,
    }
}

/// Mirrors a square RGB image of side `size` left to right, in place.
fn flip_horizontal(img: &mut [u8], size: usize) {
    for row in img.chunks_exact_mut(size * 3) {
        let (mut a, mut b) = (0usize, size.saturating_sub(1));
        while a < b {
            for c in 0..3 {
                row.swap(a * 3 + c, b * 3 + c);
            }
            a += 1;
            b -= 1;
        }
    }
}

/// Decodes `encoded` (JPEG, PNG, WebP, ...; EXIF orientation is not applied: shards hold
/// upright images), asks `choose` for the crop rectangle given the decoded size, and resamples
/// that rectangle to `out_w × out_h` RGB into `dst`.
fn decode_crop_resize_into(
    encoded: &[u8],
    max_pixels: u64,
    choose: impl FnOnce(u32, u32) -> CropRect,
    out_w: u32,
    out_h: u32,
    filter: FilterType,
    dst: &mut [u8],
) -> Result<(), String> {
    let mut reader = image::ImageReader::new(Cursor::new(encoded))
        .with_guessed_format()
        .map_err(|e| format!("reading image header: {e}"))?;
    // the decoder refuses to allocate more than this, so a decompression bomb fails early
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(4).max(1 << 20));
    reader.limits(limits);
    let rgb = reader
        .decode()
        .map_err(|e| format!("decoding image: {e}"))?
        .into_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err("image has no pixels".into());
    }
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(format!("{w}x{h} image has more than {max_pixels} pixels"));
    }
    let rect = choose(w, h);
    let region = (
        f64::from(rect.left),
        f64::from(rect.top),
        f64::from(rect.width),
        f64::from(rect.height),
    );
    resample_rgb8(
        &rgb,
        region,
        dst,
        (out_w, out_h),
        ResizeAlg::Convolution(filter),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        let pixels: Vec<u8> = (0..w * h).flat_map(|_| rgb).collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 95)
            .encode(&pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn crops_stay_inside_and_follow_the_ranges() {
        let mut rng = SplitMix64::new(1);
        let scale = (0.5, 1.0);
        let ratio: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
        let lr = (ratio.0.ln(), ratio.1.ln());
        for (w, h) in [(256u32, 256u32), (256, 341), (400, 256), (3, 2000), (1, 1)] {
            for _ in 0..200 {
                let r = random_resized_crop(w, h, scale, lr, ratio, &mut rng);
                assert!(r.width >= 1 && r.height >= 1);
                assert!(
                    r.left + r.width <= w && r.top + r.height <= h,
                    "{r:?} in {w}x{h}"
                );
            }
        }
        let c = center_square(300, 200, 0.875);
        assert_eq!(
            c,
            CropRect {
                left: 62,
                top: 12,
                width: 175,
                height: 175
            }
        );
    }

    #[test]
    fn same_position_same_pixels_and_flip_mirrors() {
        let config = LoaderConfig {
            image_size: 16,
            hflip_prob: 0.0,
            ..Default::default()
        };
        // left half red, right half blue
        let (w, h) = (64u32, 48u32);
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                if i % w < w / 2 {
                    [250u8, 0, 0]
                } else {
                    [0u8, 0, 250]
                }
            })
            .collect();
        let mut enc = Vec::new();
        jpeg_encoder::Encoder::new(&mut enc, 98)
            .encode(&pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let aug = Augment::new(&LoaderConfig {
            crop_scale: (1.0, 1.0),
            crop_ratio: (4.0 / 3.0, 4.0 / 3.0),
            ..config.clone()
        });
        let mut a = vec![0u8; aug.image_bytes()];
        let mut b = vec![0u8; aug.image_bytes()];
        aug.apply(&enc, 0, 5, &mut a).unwrap();
        aug.apply(&enc, 0, 5, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a[0] > 200 && a[2] < 50, "left is red: {:?}", &a[..3]);
        let flipped = Augment::new(&LoaderConfig {
            crop_scale: (1.0, 1.0),
            crop_ratio: (4.0 / 3.0, 4.0 / 3.0),
            hflip_prob: 1.0,
            ..config
        });
        flipped.apply(&enc, 0, 5, &mut b).unwrap();
        assert!(
            b[0] < 50 && b[2] > 200,
            "left is blue after the flip: {:?}",
            &b[..3]
        );
    }

    #[test]
    fn garbage_and_bombs_are_errors_not_panics() {
        let aug = Augment::new(&LoaderConfig {
            image_size: 8,
            max_image_pixels: 1000,
            ..Default::default()
        });
        let mut dst = vec![0u8; aug.image_bytes()];
        assert!(aug.apply(b"not an image", 0, 0, &mut dst).is_err());
        let big = jpeg(64, 64, [1, 2, 3]);
        assert!(
            aug.apply(&big, 0, 0, &mut dst)
                .unwrap_err()
                .contains("more than 1000 pixels")
        );
        let small = jpeg(30, 30, [200, 100, 50]);
        aug.apply(&small, 0, 0, &mut dst).unwrap();
        assert!(
            dst.chunks(3)
                .all(|p| p[0].abs_diff(200) < 8 && p[1].abs_diff(100) < 8 && p[2].abs_diff(50) < 8)
        );
    }
}
