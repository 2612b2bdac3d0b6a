//! EXIF orientation (tag 274, values 1–8): how the stored pixels must be turned to show the
//! picture upright, and the one-pass remap that does it.

use image::RgbImage;

/// The eight EXIF orientations, named for what must be done to the stored pixels to display
/// them upright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Orientation {
    /// 1: already upright.
    #[default]
    Normal,
    /// 2: mirror left–right.
    FlipHorizontal,
    /// 3: rotate 180°.
    Rotate180,
    /// 4: mirror top–bottom.
    FlipVertical,
    /// 5: mirror about the top-left → bottom-right diagonal.
    Transpose,
    /// 6: rotate 90° clockwise.
    Rotate90,
    /// 7: mirror about the top-right → bottom-left diagonal.
    Transverse,
    /// 8: rotate 270° clockwise (90° counter-clockwise).
    Rotate270,
}

impl Orientation {
    /// All eight, in EXIF order (1..=8).
    pub const ALL: [Orientation; 8] = [
        Orientation::Normal,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Transpose,
        Orientation::Rotate90,
        Orientation::Transverse,
        Orientation::Rotate270,
    ];

    /// From the EXIF value; `None` for anything outside 1..=8.
    pub fn from_exif(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value).checked_sub(1)?).copied()
    }

    /// The EXIF value (1..=8).
    pub fn exif(self) -> u8 {
        match self {
            Orientation::Normal => 1,
            Orientation::FlipHorizontal => 2,
            Orientation::Rotate180 => 3,
            Orientation::FlipVertical => 4,
            Orientation::Transpose => 5,
            Orientation::Rotate90 => 6,
            Orientation::Transverse => 7,
            Orientation::Rotate270 => 8,
        }
    }

    /// True when width and height trade places (values 5–8).
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Transpose
                | Orientation::Rotate90
                | Orientation::Transverse
                | Orientation::Rotate270
        )
    }

    /// The upright size of a stored `width` × `height` image.
    pub fn oriented_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Turns stored pixels upright (one pass, one allocation; `Normal` returns `image` as is).
    pub fn apply(self, image: RgbImage) -> RgbImage {
        if self == Orientation::Normal {
            return image;
        }
        let (w, h) = image.dimensions();
        let (ow, oh) = self.oriented_size(w, h);
        let src = image.as_raw();
        let (w, h) = (w as usize, h as usize);
        let mut out = vec![0u8; src.len()];
        for (oy, row) in out.chunks_exact_mut(ow as usize * 3).enumerate() {
            for (ox, px) in row.chunks_exact_mut(3).enumerate() {
                let (sx, sy) = match self {
                    Orientation::Normal => (ox, oy),
                    Orientation::FlipHorizontal => (w - 1 - ox, oy),
                    Orientation::Rotate180 => (w - 1 - ox, h - 1 - oy),
                    Orientation::FlipVertical => (ox, h - 1 - oy),
                    Orientation::Transpose => (oy, ox),
                    Orientation::Rotate90 => (oy, h - 1 - ox),
                    Orientation::Transverse => (w - 1 - oy, h - 1 - ox),
                    Orientation::Rotate270 => (w - 1 - oy, ox),
                };
                let at = (sy * w + sx) * 3;
                px.copy_from_slice(&src[at..at + 3]);
            }
        }
        // `out` has exactly `ow * oh * 3` bytes, so `from_raw` cannot fail; no panic path here.
        RgbImage::from_raw(ow, oh, out).unwrap_or_else(|| RgbImage::new(ow, oh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops;

    /// The stored pixels that an upright `img` becomes under each orientation, built with
    /// `image::imageops` (the inverse of what `apply` does), as a reference.
    fn stored_for(o: Orientation, img: &RgbImage) -> RgbImage {
        match o {
            Orientation::Normal => img.clone(),
            Orientation::FlipHorizontal => imageops::flip_horizontal(img),
            Orientation::Rotate180 => imageops::rotate180(img),
            Orientation::FlipVertical => imageops::flip_vertical(img),
            Orientation::Transpose => imageops::rotate270(&imageops::flip_horizontal(img)),
            Orientation::Rotate90 => imageops::rotate270(img),
            Orientation::Transverse => imageops::rotate90(&imageops::flip_horizontal(img)),
            Orientation::Rotate270 => imageops::rotate90(img),
        }
    }

    #[test]
    fn apply_inverts_each_stored_orientation() {
        let upright = RgbImage::from_fn(5, 3, |x, y| {
            image::Rgb([x as u8 * 40, y as u8 * 80, (x * y) as u8])
        });
        for o in Orientation::ALL {
            let stored = stored_for(o, &upright);
            assert_eq!(
                o.oriented_size(stored.width(), stored.height()),
                (5, 3),
                "{o:?}"
            );
            assert_eq!(o.apply(stored), upright, "{o:?}");
        }
    }

    #[test]
    fn exif_values_round_trip() {
        for (i, o) in Orientation::ALL.into_iter().enumerate() {
            assert_eq!(o.exif() as usize, i + 1);
            assert_eq!(Orientation::from_exif(o.exif()), Some(o));
        }
        assert_eq!(Orientation::from_exif(0), None);
        assert_eq!(Orientation::from_exif(9), None);
    }
}
