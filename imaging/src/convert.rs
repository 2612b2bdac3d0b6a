//! Everything the `image` crate can hand back, brought to RGB8: gray expanded, 16-bit and float
//! scaled down, alpha composited onto white.

use image::{DynamicImage, RgbImage, RgbaImage};

/// The pixels as RGB8, and whether anything beyond a plain copy or gray expansion happened (alpha
/// that was not fully opaque, more than 8 bits, float samples).
pub(crate) fn to_rgb8(img: DynamicImage) -> (RgbImage, bool) {
    match img {
        DynamicImage::ImageRgb8(rgb) => (rgb, false),
        DynamicImage::ImageLuma8(gray) => (DynamicImage::ImageLuma8(gray).into_rgb8(), false),
        DynamicImage::ImageRgba8(rgba) => composite_on_white(&rgba),
        other if other.color().has_alpha() => {
            let color = other.color();
            let deep = color.bytes_per_pixel() > color.channel_count();
            let (rgb, translucent) = composite_on_white(&other.into_rgba8());
            (rgb, translucent || deep)
        }
        // 16-bit and float samples without alpha
        other => (other.into_rgb8(), true),
    }
}

/// Composites RGBA onto a white background: `out = c·a + 255·(1 − a)`, rounded. The flag is true
/// when some pixel was not fully opaque.
pub(crate) fn composite_on_white(rgba: &RgbaImage) -> (RgbImage, bool) {
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    let mut translucent = false;
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(px[3]);
        if a == 255 {
            out.extend_from_slice(&px[..3]);
        } else {
            translucent = true;
            for &c in &px[..3] {
                out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
    }
    (
        RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h)),
        translucent,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, GrayImage, ImageBuffer, LumaA, Rgb, Rgba};

    #[test]
    fn alpha_goes_onto_white() {
        let rgba =
            RgbaImage::from_vec(3, 1, vec![10, 20, 30, 255, 0, 0, 0, 0, 200, 100, 0, 128]).unwrap();
        let (rgb, converted) = to_rgb8(DynamicImage::ImageRgba8(rgba));
        assert!(converted);
        assert_eq!(
            rgb.as_raw(),
            &vec![10, 20, 30, 255, 255, 255, 227, 177, 127]
        );
        let opaque = RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 255]));
        let (rgb, converted) = to_rgb8(DynamicImage::ImageRgba8(opaque));
        assert!(!converted);
        assert_eq!(rgb.get_pixel(1, 1), &Rgb([1, 2, 3]));
    }

    #[test]
    fn gray_sixteen_bit_and_gray_alpha() {
        let (rgb, converted) = to_rgb8(DynamicImage::ImageLuma8(GrayImage::from_pixel(
            1,
            1,
            image::Luma([77]),
        )));
        assert_eq!(
            (rgb.get_pixel(0, 0), converted),
            (&Rgb([77, 77, 77]), false)
        );
        let g16: ImageBuffer<image::Luma<u16>, Vec<u16>> =
            ImageBuffer::from_pixel(1, 1, image::Luma([65535]));
        let (rgb, converted) = to_rgb8(DynamicImage::ImageLuma16(g16));
        assert_eq!(
            (rgb.get_pixel(0, 0), converted),
            (&Rgb([255, 255, 255]), true)
        );
        let la = GrayAlphaImage::from_pixel(1, 1, LumaA([0, 0]));
        let (rgb, converted) = to_rgb8(DynamicImage::ImageLumaA8(la));
        assert_eq!(
            (rgb.get_pixel(0, 0), converted),
            (&Rgb([255, 255, 255]), true)
        );
    }
}
