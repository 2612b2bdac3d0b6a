//! A minimal reader of TIFF-structured metadata: the EXIF orientation tag (JPEG APP1, PNG eXIf,
//! WebP EXIF chunks) and, for TIFF files themselves, the image size. Bounds-checked throughout:
//! malformed metadata reads as "absent", never as an error or a panic.

use super::orientation::Orientation;

pub(crate) const TAG_WIDTH: u16 = 256;
pub(crate) const TAG_HEIGHT: u16 = 257;
pub(crate) const TAG_ORIENTATION: u16 = 274;
pub(crate) const TYPE_SHORT: u16 = 3;
pub(crate) const TYPE_LONG: u16 = 4;

/// The tags of IFD0 that flipstream cares about.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ifd0 {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub orientation: Option<Orientation>,
}

/// Reads IFD0 of a classic (not Big) TIFF structure starting at `data[0]` (`II*\0` / `MM\0*`).
pub(crate) fn read_ifd0(data: &[u8]) -> Option<Ifd0> {
    let little = match data.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let r = Reader { data, little };
    let ifd = usize::try_from(r.u32(4)?).ok()?;
    let count = usize::from(r.u16(ifd)?);
    let mut out = Ifd0::default();
    for i in 0..count {
        let entry = ifd.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
        let (Some(tag), Some(kind), Some(n)) = (r.u16(entry), r.u16(entry + 2), r.u32(entry + 4))
        else {
            break;
        };
        if n != 1 {
            continue;
        }
        let value = match kind {
            TYPE_SHORT => r.u16(entry + 8).map(u32::from),
            TYPE_LONG => r.u32(entry + 8),
            _ => None,
        };
        match tag {
            TAG_WIDTH => out.width = value,
            TAG_HEIGHT => out.height = value,
            TAG_ORIENTATION => {
                out.orientation = value
                    .and_then(|v| u8::try_from(v).ok())
                    .and_then(Orientation::from_exif)
            }
            _ => {}
        }
    }
    Some(out)
}

/// The orientation in an EXIF payload (with or without the `Exif\0\0` prefix that JPEG APP1
/// segments carry and some PNG/WebP writers copy).
pub(crate) fn orientation_from_exif(payload: &[u8]) -> Option<Orientation> {
    let tiff = payload.strip_prefix(b"Exif\0\0").unwrap_or(payload);
    read_ifd0(tiff)?.orientation
}

struct Reader<'a> {
    data: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{exif_with_orientation, tiff_structure};

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        for v in 1..=8u16 {
            let le = exif_with_orientation(v);
            assert_eq!(
                orientation_from_exif(&le).map(Orientation::exif),
                Some(v as u8)
            );
            // the same structure big-endian, hand-built
            let mut be = b"MM\0*\0\0\0\x08\0\x01".to_vec();
            be.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
            be.extend_from_slice(&[0, v as u8, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                orientation_from_exif(&be).map(Orientation::exif),
                Some(v as u8)
            );
        }
    }

    #[test]
    fn bad_metadata_reads_as_absent() {
        assert_eq!(orientation_from_exif(&exif_with_orientation(0)), None);
        assert_eq!(orientation_from_exif(&exif_with_orientation(9)), None);
        assert_eq!(orientation_from_exif(b"Exif\0\0"), None);
        assert_eq!(orientation_from_exif(b"garbage"), None);
        // IFD offset pointing past the end, and an entry count larger than the data
        assert_eq!(read_ifd0(b"II*\0\xff\xff\xff\xff"), None);
        let mut truncated = tiff_structure(&[(TAG_ORIENTATION, TYPE_SHORT, 6)]);
        truncated[8] = 200;
        truncated.truncate(19);
        assert_eq!(read_ifd0(&truncated).and_then(|i| i.orientation), None);
        for cut in 0..exif_with_orientation(6).len() {
            let _ = orientation_from_exif(&exif_with_orientation(6)[..cut]);
        }
    }

    #[test]
    fn reads_tiff_size_tags() {
        let t = tiff_structure(&[
            (TAG_WIDTH, TYPE_LONG, 70_000),
            (TAG_HEIGHT, TYPE_SHORT, 480),
        ]);
        let ifd = read_ifd0(&t).unwrap();
        assert_eq!(
            (ifd.width, ifd.height, ifd.orientation),
            (Some(70_000), Some(480), None)
        );
    }
}
