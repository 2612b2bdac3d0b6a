//! Resizing with `fast_image_resize` (SIMD convolution): the ingest modes of img2dataset
//! ([`ResizeMode`]) and, for the streaming loader, [`crop_resize_into`] which writes a crop,
//! resampled and optionally mirrored, straight into a caller's batch buffer.
//!
//! The output geometry is always computed from the *original* size, so an image decoded at a
//! reduced DCT scale ends up exactly as if it had been decoded at full size and then resized.

use std::cell::RefCell;

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::error::ImageError;

/// Default [`ResizeSpec::size`] (pixels).
pub const DEFAULT_SIZE: u32 = 256;

/// How an image is fitted to [`ResizeSpec::size`] (the modes of img2dataset).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Keep the decoded size.
    No,
    /// Shortest side becomes `size`, aspect ratio kept (default).
    #[default]
    KeepRatio,
    /// Longest side becomes `size`, aspect ratio kept.
    KeepRatioLargest,
    /// Shortest side becomes `size`, then the centre `size` × `size` square is kept.
    CenterCrop,
    /// Fit inside `size` × `size`, aspect ratio kept, then pad to exactly `size` × `size` with
    /// [`ResizeSpec::border_color`], centred.
    Border,
}

/// The resampling filter (a convolution over every source pixel that contributes, so
/// downscaling never aliases; `Nearest` excepted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Nearest neighbour (fastest, aliases when downscaling).
    Nearest,
    /// Box / area average (like OpenCV's `INTER_AREA` for downscaling).
    Box,
    /// Bilinear (triangle) convolution, what torchvision uses with antialiasing.
    Bilinear,
    /// Hamming: bilinear cost, bicubic-like sharpness.
    Hamming,
    /// Catmull–Rom bicubic.
    CatmullRom,
    /// Mitchell–Netravali bicubic.
    Mitchell,
    /// Lanczos with 3 lobes: the sharpest (default; docs/imaging.md has the measurements).
    #[default]
    Lanczos3,
}

impl ResizeFilter {
    fn alg(self) -> ResizeAlg {
        match self {
            ResizeFilter::Nearest => ResizeAlg::Nearest,
            ResizeFilter::Box => ResizeAlg::Convolution(FilterType::Box),
            ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            ResizeFilter::Hamming => ResizeAlg::Convolution(FilterType::Hamming),
            ResizeFilter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
            ResizeFilter::Mitchell => ResizeAlg::Convolution(FilterType::Mitchell),
            ResizeFilter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// What ingest resizes every image to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeSpec {
    /// How to fit the image (default `keep_ratio`).
    pub mode: ResizeMode,
    /// Target size in pixels (default 256); its meaning depends on `mode`.
    pub size: u32,
    /// Never enlarge: images already within the target keep their size (default true). In
    /// `center_crop` mode a small image is still cropped to at most `size` × `size`; in `border`
    /// mode it is still padded.
    pub downscale_only: bool,
    /// Resampling filter (default Lanczos3).
    pub filter: ResizeFilter,
    /// RGB padding colour of `border` mode (default white, like img2dataset).
    pub border_color: [u8; 3],
}

impl Default for ResizeSpec {
    fn default() -> Self {
        Self {
            mode: ResizeMode::KeepRatio,
            size: DEFAULT_SIZE,
            downscale_only: true,
            filter: ResizeFilter::Lanczos3,
            border_color: [255, 255, 255],
        }
    }
}

/// A rectangle of source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropRect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels (> 0).
    pub width: u32,
    /// Height in pixels (> 0).
    pub height: u32,
}

/// The geometry of one resize, in original-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizePlan {
    /// The source region that is kept.
    pub region: CropRect,
    /// The size the region is resampled to.
    pub scaled: (u32, u32),
    /// The final image size (`scaled` plus padding in `border` mode).
    pub canvas: (u32, u32),
}

impl ResizePlan {
    /// True when the output is the whole source at its own size (nothing to do).
    pub fn is_identity(&self, width: u32, height: u32) -> bool {
        self.region
            == CropRect {
                x: 0,
                y: 0,
                width,
                height,
            }
            && self.scaled == (width, height)
            && self.canvas == (width, height)
    }
}

/// `len * num / den`, rounded to nearest, at least 1.
fn scale_side(len: u32, num: u32, den: u32) -> u32 {
    let v = (u64::from(len) * u64::from(num) * 2 + u64::from(den)) / (2 * u64::from(den.max(1)));
    u32::try_from(v).unwrap_or(u32::MAX).max(1)
}

/// `(w, h)` with its shortest (`by_longest == false`) or longest side set to `target`.
fn fit_side(w: u32, h: u32, target: u32, by_longest: bool) -> (u32, u32) {
    let side = if by_longest { w.max(h) } else { w.min(h) };
    (scale_side(w, target, side), scale_side(h, target, side))
}

impl ResizeSpec {
    /// The geometry for an (upright, full-resolution) source of `width` × `height`.
    pub fn plan(&self, width: u32, height: u32) -> ResizePlan {
        let (w, h) = (width.max(1), height.max(1));
        let whole = CropRect {
            x: 0,
            y: 0,
            width: w,
            height: h,
        };
        let size = self.size.max(1);
        let keep = |scaled: (u32, u32)| ResizePlan {
            region: whole,
            scaled,
            canvas: scaled,
        };
        match self.mode {
            ResizeMode::No => keep((w, h)),
            ResizeMode::KeepRatio | ResizeMode::KeepRatioLargest => {
                let longest = self.mode == ResizeMode::KeepRatioLargest;
                let side = if longest { w.max(h) } else { w.min(h) };
                if self.downscale_only && side <= size {
                    keep((w, h))
                } else {
                    keep(fit_side(w, h, size, longest))
                }
            }
            ResizeMode::CenterCrop => {
                let side = w.min(h);
                if self.downscale_only && side <= size {
                    let (cw, ch) = (w.min(size), h.min(size));
                    let region = CropRect {
                        x: (w - cw) / 2,
                        y: (h - ch) / 2,
                        width: cw,
                        height: ch,
                    };
                    ResizePlan {
                        region,
                        scaled: (cw, ch),
                        canvas: (cw, ch),
                    }
                } else {
                    let region = CropRect {
                        x: (w - side) / 2,
                        y: (h - side) / 2,
                        width: side,
                        height: side,
                    };
                    ResizePlan {
                        region,
                        scaled: (size, size),
                        canvas: (size, size),
                    }
                }
            }
            ResizeMode::Border => {
                let scaled = if self.downscale_only && w.max(h) <= size {
                    (w, h)
                } else {
                    fit_side(w, h, size, true)
                };
                ResizePlan {
                    region: whole,
                    scaled,
                    canvas: (size, size),
                }
            }
        }
    }

    /// The stored size of a source of `width` × `height`.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        self.plan(width, height).canvas
    }

    /// The shortest side a reduced-scale decode must keep so that the resize only ever shrinks:
    /// `None` when the plan keeps the source size (no reduction possible).
    pub fn min_side_needed(&self, width: u32, height: u32) -> Option<u32> {
        let plan = self.plan(width, height);
        let (rw, rh) = (plan.region.width, plan.region.height);
        let (sw, sh) = plan.scaled;
        if (sw, sh) == (rw, rh) {
            return None;
        }
        // uniform reduction s must give rw*s >= sw and rh*s >= sh; expressed on the shortest side
        let min_side = width.min(height).max(1);
        let need_w = (u64::from(sw) * u64::from(min_side)).div_ceil(u64::from(rw.max(1)));
        let need_h = (u64::from(sh) * u64::from(min_side)).div_ceil(u64::from(rh.max(1)));
        u32::try_from(need_w.max(need_h)).ok()
    }
}

thread_local! {
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resamples `region` (left, top, width, height in `src` pixels, fractional allowed) of `src` into
/// all of `dst` with `alg`, on this thread's reusable [`Resizer`].
///
/// Every resize in flipstream comes through here, typed to RGB8: `Resizer::resize` on untyped
/// images would instantiate fast_image_resize's SIMD kernels for all 13 pixel types in this crate
/// (most of its compile time).
pub fn resample_rgb8(
    src: &RgbImage,
    region: (f64, f64, f64, f64),
    dst: &mut [u8],
    dst_size: (u32, u32),
    alg: ResizeAlg,
) -> Result<(), String> {
    let src = TypedImageRef::<U8x3>::from_buffer(src.width(), src.height(), src.as_raw())
        .map_err(|e| format!("source buffer: {e}"))?;
    let mut dst = TypedImage::<U8x3>::from_buffer(dst_size.0, dst_size.1, dst)
        .map_err(|e| format!("output buffer: {e}"))?;
    let (left, top, width, height) = region;
    let options = ResizeOptions::new()
        .resize_alg(alg)
        .crop(left, top, width, height);
    RESIZER
        .with(|cell| match cell.try_borrow_mut() {
            Ok(mut resizer) => resizer.resize_typed(&src, &mut dst, &options),
            Err(_) => Resizer::new().resize_typed(&src, &mut dst, &options),
        })
        .map_err(|e| format!("resizing: {e}"))
}

/// Resamples `region` of `src` into the `dst_size` RGB8 buffer `dst` with `filter`.
fn resample(
    src: &RgbImage,
    region: (f64, f64, f64, f64),
    dst: &mut [u8],
    dst_size: (u32, u32),
    filter: ResizeFilter,
) -> Result<(), ImageError> {
    resample_rgb8(src, region, dst, dst_size, filter.alg())
        .map_err(|e| ImageError::encode("resize", e))
}

/// Resamples the whole of `src` into a new `width` × `height` image.
pub(crate) fn resample_whole(
    src: &RgbImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> Result<RgbImage, ImageError> {
    let mut dst = vec![0; width as usize * height as usize * 3];
    resample(
        src,
        (0.0, 0.0, f64::from(src.width()), f64::from(src.height())),
        &mut dst,
        (width, height),
        filter,
    )?;
    RgbImage::from_raw(width, height, dst)
        .ok_or_else(|| ImageError::encode("resize", "output buffer has the wrong size"))
}

/// Resizes an upright image whose full-resolution size was `orig_width` × `orig_height` (it may
/// be smaller, when decoded at a reduced scale) to `spec`. Returns the image unchanged when the
/// plan is the identity.
pub fn resize(
    image: RgbImage,
    orig_width: u32,
    orig_height: u32,
    spec: &ResizeSpec,
) -> Result<RgbImage, ImageError> {
    let plan = spec.plan(orig_width, orig_height);
    let (iw, ih) = image.dimensions();
    if (iw, ih) == (orig_width, orig_height) && plan.is_identity(iw, ih) {
        return Ok(image);
    }
    // the region in the decoded image's pixels
    let fx = f64::from(iw) / f64::from(orig_width.max(1));
    let fy = f64::from(ih) / f64::from(orig_height.max(1));
    let r = plan.region;
    // clamped so that float rounding never pushes the box past the decoded image's edge
    let (left, top) = (f64::from(r.x) * fx, f64::from(r.y) * fy);
    let region = (
        left,
        top,
        (f64::from(r.width) * fx).min(f64::from(iw) - left),
        (f64::from(r.height) * fy).min(f64::from(ih) - top),
    );
    let (sw, sh) = plan.scaled;
    let scaled = if (iw, ih) == (orig_width, orig_height) && (r.width, r.height) == (sw, sh) {
        // a pure crop: copy rows
        copy_region(&image, r)
    } else {
        let mut dst = vec![0; sw as usize * sh as usize * 3];
        resample(&image, region, &mut dst, (sw, sh), spec.filter)?;
        RgbImage::from_raw(sw, sh, dst)
            .ok_or_else(|| ImageError::encode("resize", "output buffer has the wrong size"))?
    };
    if plan.canvas == plan.scaled {
        Ok(scaled)
    } else {
        Ok(pad(&scaled, plan.canvas, spec.border_color))
    }
}

/// The pixels of `r` (inside `image`) as a new image.
fn copy_region(image: &RgbImage, r: CropRect) -> RgbImage {
    let stride = image.width() as usize * 3;
    let row_bytes = r.width as usize * 3;
    let mut out = Vec::with_capacity(row_bytes * r.height as usize);
    for row in image
        .as_raw()
        .chunks_exact(stride)
        .skip(r.y as usize)
        .take(r.height as usize)
    {
        let start = r.x as usize * 3;
        out.extend_from_slice(row.get(start..start + row_bytes).unwrap_or(&[]));
    }
    RgbImage::from_raw(r.width, r.height, out).unwrap_or_else(|| RgbImage::new(r.width, r.height))
}

/// `image` centred on a `canvas` filled with `color`.
fn pad(image: &RgbImage, canvas: (u32, u32), color: [u8; 3]) -> RgbImage {
    let (cw, ch) = canvas;
    let mut out = RgbImage::from_pixel(cw, ch, image::Rgb(color));
    let (w, h) = image.dimensions();
    let (ox, oy) = ((cw.saturating_sub(w)) / 2, (ch.saturating_sub(h)) / 2);
    image::imageops::replace(&mut out, image, i64::from(ox), i64::from(oy));
    out
}

/// [`crop_resize_into_with`] with the bilinear filter (torchvision's `RandomResizedCrop` default).
pub fn crop_resize_into(
    src: &RgbImage,
    crop: CropRect,
    out_width: u32,
    out_height: u32,
    hflip: bool,
    dst: &mut [u8],
) -> Result<(), ImageError> {
    crop_resize_into_with(
        src,
        crop,
        out_width,
        out_height,
        hflip,
        ResizeFilter::Bilinear,
        dst,
    )
}

/// Resamples `crop` of `src` to `out_width` × `out_height` and writes it as HWC RGB8 into `dst`,
/// which must be exactly `out_width * out_height * 3` bytes (one slot of a batch buffer);
/// `hflip` mirrors it left–right. Enlarges as well as shrinks.
pub fn crop_resize_into_with(
    src: &RgbImage,
    crop: CropRect,
    out_width: u32,
    out_height: u32,
    hflip: bool,
    filter: ResizeFilter,
    dst: &mut [u8],
) -> Result<(), ImageError> {
    let (w, h) = src.dimensions();
    let inside = crop.width > 0
        && crop.height > 0
        && crop.x.checked_add(crop.width).is_some_and(|r| r <= w)
        && crop.y.checked_add(crop.height).is_some_and(|b| b <= h);
    if !inside {
        return Err(ImageError::InvalidArgument(format!(
            "crop {crop:?} is not inside the {w}x{h} image"
        )));
    }
    let want = out_width as usize * out_height as usize * 3;
    if out_width == 0 || out_height == 0 || dst.len() != want {
        return Err(ImageError::InvalidArgument(format!(
            "output {out_width}x{out_height} needs a buffer of {want} bytes, got {}",
            dst.len()
        )));
    }
    let region = (
        f64::from(crop.x),
        f64::from(crop.y),
        f64::from(crop.width),
        f64::from(crop.height),
    );
    resample(src, region, dst, (out_width, out_height), filter)?;
    if hflip {
        mirror_rows(dst, out_width as usize);
    }
    Ok(())
}

/// Mirrors every row of an HWC RGB8 buffer left–right, in place.
fn mirror_rows(buf: &mut [u8], width: usize) {
    for row in buf.chunks_exact_mut(width * 3) {
        let (mut i, mut j) = (0, width.saturating_sub(1));
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_modes() {
        let spec = |mode| ResizeSpec {
            mode,
            ..ResizeSpec::default()
        };
        assert_eq!(
            spec(ResizeMode::KeepRatio).output_size(472, 375),
            (322, 256)
        );
        assert_eq!(
            spec(ResizeMode::KeepRatio).output_size(375, 472),
            (256, 322)
        );
        assert_eq!(
            spec(ResizeMode::KeepRatio).output_size(300, 200),
            (300, 200)
        );
        assert_eq!(
            spec(ResizeMode::KeepRatioLargest).output_size(1000, 500),
            (256, 128)
        );
        assert_eq!(
            spec(ResizeMode::KeepRatioLargest).output_size(200, 100),
            (200, 100)
        );
        assert_eq!(
            spec(ResizeMode::CenterCrop).output_size(1000, 500),
            (256, 256)
        );
        assert_eq!(
            spec(ResizeMode::CenterCrop).output_size(400, 200),
            (256, 200)
        );
        assert_eq!(spec(ResizeMode::Border).output_size(1000, 500), (256, 256));
        assert_eq!(spec(ResizeMode::Border).output_size(10, 20), (256, 256));
        assert_eq!(spec(ResizeMode::No).output_size(5000, 10), (5000, 10));
        let up = ResizeSpec {
            downscale_only: false,
            ..ResizeSpec::default()
        };
        assert_eq!(up.output_size(300, 200), (384, 256));
        // extreme aspect ratios never produce a zero side
        assert_eq!(
            spec(ResizeMode::KeepRatioLargest).output_size(100_000, 1),
            (256, 1)
        );
    }

    #[test]
    fn min_side_needed_keeps_the_resize_a_reduction() {
        let s = ResizeSpec::default();
        assert_eq!(s.min_side_needed(472, 375), Some(256));
        assert_eq!(s.min_side_needed(200, 100), None);
        let l = ResizeSpec {
            mode: ResizeMode::KeepRatioLargest,
            ..s
        };
        // 1000x333 -> 256x85; a uniform reduction must keep the short side >= 85.25 -> 86
        assert_eq!(l.output_size(1000, 333), (256, 85));
        assert_eq!(l.min_side_needed(1000, 333), Some(86));
        let c = ResizeSpec {
            mode: ResizeMode::CenterCrop,
            ..s
        };
        assert_eq!(c.min_side_needed(800, 600), Some(256));
    }

    #[test]
    fn resize_from_any_reduced_scale_gives_the_planned_size() {
        use crate::ScaleFactor;
        let modes = [
            ResizeMode::No,
            ResizeMode::KeepRatio,
            ResizeMode::KeepRatioLargest,
            ResizeMode::CenterCrop,
            ResizeMode::Border,
        ];
        for (w, h) in [(472, 375), (1001, 667), (333, 1999), (257, 256), (3000, 7)] {
            for m in 1..=8 {
                let s = ScaleFactor::new(m, 8);
                let img = RgbImage::new(s.apply(w), s.apply(h));
                for mode in modes {
                    let spec = ResizeSpec {
                        mode,
                        ..ResizeSpec::default()
                    };
                    let out = resize(img.clone(), w, h, &spec).unwrap();
                    assert_eq!(
                        out.dimensions(),
                        spec.output_size(w, h),
                        "{w}x{h} at {s}, {mode:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn mirror_rows_reverses_pixels() {
        let mut buf = vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6];
        mirror_rows(&mut buf, 3);
        assert_eq!(
            buf,
            vec![3, 3, 3, 2, 2, 2, 1, 1, 1, 6, 6, 6, 5, 5, 5, 4, 4, 4]
        );
    }
}
