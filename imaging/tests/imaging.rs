//! `flipstream_imaging` on generated inputs: every colour conversion, the eight EXIF
//! orientations, decompression bombs, broken bytes, scaled decoding, resize modes, encoders,
//! perceptual hashes, the loader's crop, and `process_for_shard` end to end.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use flipstream_imaging::{
    self as imaging, CropRect, DctScaling, DecodeOptions, EncodeSpec, ImageError, ImageFormat,
    Orientation, OutputFormat, ProcessSpec, ResizeFilter, ResizeMode, ResizeSpec, ScaleFactor,
    fixtures,
};
use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage, imageops};

// ---------------------------------------------------------------------------------------------
// An allocator that records the largest single allocation made by the current thread, so the
// bomb tests can show that nothing image-sized was allocated.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f`, returning its result and the largest allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// helpers

fn decode(bytes: &[u8]) -> Result<imaging::Decoded, ImageError> {
    imaging::decode(bytes, &DecodeOptions::default())
}

fn reason(result: Result<impl std::fmt::Debug, ImageError>) -> &'static str {
    result.expect_err("expected an error").reason().code()
}

/// Four flat quadrants: red top-left, green top-right, blue bottom-left, yellow bottom-right.
const QUADRANTS: [[u8; 3]; 4] = [[220, 30, 30], [30, 200, 40], [30, 40, 210], [230, 220, 30]];

fn quadrants(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb(QUADRANTS[usize::from(y >= h / 2) * 2 + usize::from(x >= w / 2)])
    })
}

/// The colour near the centre of each quadrant.
fn quadrant_colors(img: &RgbImage) -> [[u8; 3]; 4] {
    let (w, h) = img.dimensions();
    let at = |x, y| img.get_pixel(x, y).0;
    [
        at(w / 4, h / 4),
        at(3 * w / 4, h / 4),
        at(w / 4, 3 * h / 4),
        at(3 * w / 4, 3 * h / 4),
    ]
}

fn assert_near(got: [u8; 3], want: [u8; 3], tol: u8, what: &str) {
    let ok = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= tol);
    assert!(ok, "{what}: got {got:?}, want {want:?} (±{tol})");
}

fn jpeg_of(img: &RgbImage, quality: u8) -> Vec<u8> {
    imaging::encode(
        img,
        &EncodeSpec {
            format: OutputFormat::Jpeg,
            quality,
        },
    )
    .unwrap()
}

fn png_of(color: image::ExtendedColorType, w: u32, h: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, w, h, color)
        .unwrap();
    out
}

fn jpeg_with_turbo(
    pixels: &[u8],
    w: usize,
    h: usize,
    format: turbojpeg::PixelFormat,
    colorspace: turbojpeg::Colorspace,
) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(95).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    c.set_colorspace(colorspace).unwrap();
    let img = turbojpeg::Image {
        pixels,
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    c.compress_to_vec(img).unwrap()
}

/// Removes the first APP14 (Adobe) segment from a JPEG.
fn strip_adobe(jpeg: &[u8]) -> Vec<u8> {
    let at = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xEE])
        .expect("an Adobe marker");
    let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    [&jpeg[..at], &jpeg[at + 2 + len..]].concat()
}

// ---------------------------------------------------------------------------------------------
// conversions

#[test]
fn gray_jpeg_and_png_become_rgb() {
    let gray =
        image::GrayImage::from_fn(40, 30, |x, _| image::Luma([if x < 20 { 60 } else { 200 }]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .write_image(gray.as_raw(), 40, 30, image::ExtendedColorType::L8)
        .unwrap();
    for (bytes, format) in [
        (jpeg, ImageFormat::Jpeg),
        (
            png_of(image::ExtendedColorType::L8, 40, 30, gray.as_raw()),
            ImageFormat::Png,
        ),
    ] {
        let d = decode(&bytes).unwrap();
        assert_eq!(
            (d.format, d.image.dimensions(), d.color_converted),
            (format, (40, 30), false)
        );
        assert_near(d.image.get_pixel(5, 15).0, [60; 3], 3, "left");
        assert_near(d.image.get_pixel(35, 15).0, [200; 3], 3, "right");
    }
}

#[test]
fn sixteen_bit_png_is_scaled_to_eight() {
    let gray16: Vec<u8> = (0..8u16 * 4)
        .flat_map(|i| (i * 2000).to_be_bytes())
        .collect();
    let d = decode(&png_of(
        image::ExtendedColorType::L16,
        8,
        4,
        &gray16_native(&gray16),
    ))
    .unwrap();
    assert!(d.color_converted);
    assert_eq!(d.image.get_pixel(0, 0).0, [0; 3]);
    // 31 * 2000 = 62000 → 62000 / 257 ≈ 241
    assert_near(d.image.get_pixel(7, 3).0, [241; 3], 1, "last sample");

    let rgb16: Vec<u16> = [65535u16, 0, 32896].repeat(6);
    let bytes: Vec<u8> = rgb16.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let d = decode(&png_of(image::ExtendedColorType::Rgb16, 3, 2, &bytes)).unwrap();
    assert_eq!(d.image.get_pixel(2, 1).0, [255, 0, 128]);
}

/// `image`'s PNG encoder takes 16-bit samples in native byte order.
fn gray16_native(big_endian: &[u8]) -> Vec<u8> {
    big_endian
        .chunks_exact(2)
        .flat_map(|c| u16::from_be_bytes([c[0], c[1]]).to_ne_bytes())
        .collect()
}

#[test]
fn cmyk_jpegs_adobe_inverted_and_plain() {
    // inks (C, M, Y, K) for: white, black, cyan, 50% gray
    let inks: [[u8; 4]; 4] = [[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]];
    let want: [[u8; 3]; 4] = [[255, 255, 255], [0, 0, 0], [0, 255, 255], [127, 127, 127]];
    let (w, h) = (64usize, 16usize);
    let pixels = |invert: bool| -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| inks[(i % w) / 16].map(|v| if invert { 255 - v } else { v }))
            .collect()
    };
    // Photoshop style: YCCK with an Adobe marker, inverted ink values
    let adobe = jpeg_with_turbo(
        &pixels(true),
        w,
        h,
        turbojpeg::PixelFormat::CMYK,
        turbojpeg::Colorspace::YCCK,
    );
    // plain CMYK without an Adobe marker: ink values as they are
    let plain = strip_adobe(&jpeg_with_turbo(
        &pixels(false),
        w,
        h,
        turbojpeg::PixelFormat::CMYK,
        turbojpeg::Colorspace::CMYK,
    ));
    for (name, bytes) in [("adobe", adobe), ("plain", plain)] {
        let info = imaging::probe(&bytes).unwrap();
        assert_eq!(
            (info.components, info.adobe),
            (4, name == "adobe"),
            "{name}"
        );
        let d = decode(&bytes).unwrap();
        assert!(d.color_converted, "{name}");
        for (i, want) in want.iter().enumerate() {
            assert_near(d.image.get_pixel(i as u32 * 16 + 8, 8).0, *want, 6, name);
        }
    }
}

#[test]
fn palette_with_transparency_goes_onto_white() {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 4, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255, 0, 0, 0]);
        enc.set_trns(vec![255, 128, 0]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1, 2, 0]).unwrap();
    }
    let d = decode(&bytes).unwrap();
    assert!(d.color_converted);
    assert_eq!(d.image.get_pixel(0, 0).0, [255, 0, 0]); // opaque red
    assert_near(
        d.image.get_pixel(1, 0).0,
        [127, 127, 255],
        1,
        "half-transparent blue",
    );
    assert_eq!(d.image.get_pixel(2, 0).0, [255, 255, 255]); // fully transparent black
}

#[test]
fn rgba_and_gray_alpha_composite_onto_white() {
    let rgba = RgbaImage::from_fn(4, 4, |x, _| {
        if x < 2 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([10, 100, 200, 255])
        }
    });
    let d = decode(&png_of(
        image::ExtendedColorType::Rgba8,
        4,
        4,
        rgba.as_raw(),
    ))
    .unwrap();
    assert_eq!(
        (d.image.get_pixel(0, 0).0, d.image.get_pixel(3, 3).0),
        ([255; 3], [10, 100, 200])
    );
    assert!(d.color_converted);

    let la = [0u8, 0, 0, 255, 100, 128, 100, 128];
    let d = decode(&png_of(image::ExtendedColorType::La8, 4, 1, &la)).unwrap();
    assert_eq!(d.image.get_pixel(0, 0).0, [255; 3]);
    assert_eq!(d.image.get_pixel(1, 0).0, [0; 3]);
    assert_near(
        d.image.get_pixel(2, 0).0,
        [177; 3],
        1,
        "half-transparent gray",
    );

    // an alpha channel that is fully opaque is not a conversion
    let opaque = RgbaImage::from_pixel(3, 3, Rgba([1, 2, 3, 255]));
    let d = decode(&png_of(
        image::ExtendedColorType::Rgba8,
        3,
        3,
        opaque.as_raw(),
    ))
    .unwrap();
    assert!(!d.color_converted);
}

#[test]
fn animated_gif_and_apng_give_the_first_frame() {
    let red = RgbaImage::from_pixel(8, 6, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(8, 6, Rgba([0, 0, 255, 255]));
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.encode_frames([
            image::Frame::new(red.clone()),
            image::Frame::new(blue.clone()),
        ])
        .unwrap();
    }
    let d = decode(&gif).unwrap();
    assert_eq!((d.format, d.image.dimensions()), (ImageFormat::Gif, (8, 6)));
    assert_near(d.image.get_pixel(4, 3).0, [255, 0, 0], 8, "gif first frame");

    let mut apng = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut apng, 8, 6);
        enc.set_color(png::ColorType::Rgba);
        enc.set_animated(2, 0).unwrap();
        let mut w = enc.write_header().unwrap();
        w.write_image_data(red.as_raw()).unwrap();
        w.write_image_data(blue.as_raw()).unwrap();
    }
    let d = decode(&apng).unwrap();
    assert_eq!(d.image.get_pixel(4, 3).0, [255, 0, 0], "apng first frame");
}

#[test]
fn webp_bmp_and_tiff_decode() {
    let img = quadrants(64, 48);
    let webp = imaging::encode(
        &img,
        &EncodeSpec {
            format: OutputFormat::Webp,
            quality: 95,
        },
    )
    .unwrap();
    let mut bmp = Cursor::new(Vec::new());
    img.write_to(&mut bmp, image::ImageFormat::Bmp).unwrap();
    let mut tiff = Cursor::new(Vec::new());
    img.write_to(&mut tiff, image::ImageFormat::Tiff).unwrap();
    for (bytes, format, tol) in [
        (webp, ImageFormat::Webp, 12),
        (bmp.into_inner(), ImageFormat::Bmp, 0),
        (tiff.into_inner(), ImageFormat::Tiff, 0),
    ] {
        let info = imaging::probe(&bytes).unwrap();
        assert_eq!((info.format, info.width, info.height), (format, 64, 48));
        let d = decode(&bytes).unwrap();
        for (got, want) in quadrant_colors(&d.image).into_iter().zip(QUADRANTS) {
            assert_near(got, want, tol, format.as_str());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// orientation

/// The stored pixels that show `upright` when displayed with EXIF orientation `o`.
fn stored_for(o: Orientation, upright: &RgbImage) -> RgbImage {
    match o {
        Orientation::Normal => upright.clone(),
        Orientation::FlipHorizontal => imageops::flip_horizontal(upright),
        Orientation::Rotate180 => imageops::rotate180(upright),
        Orientation::FlipVertical => imageops::flip_vertical(upright),
        Orientation::Transpose => imageops::rotate270(&imageops::flip_horizontal(upright)),
        Orientation::Rotate90 => imageops::rotate270(upright),
        Orientation::Transverse => imageops::rotate90(&imageops::flip_horizontal(upright)),
        Orientation::Rotate270 => imageops::rotate90(upright),
    }
}

#[test]
fn all_eight_exif_orientations_come_out_upright() {
    let upright = quadrants(96, 64);
    for o in Orientation::ALL {
        let stored = stored_for(o, &upright);
        let bytes = fixtures::with_app1(
            &jpeg_of(&stored, 95),
            &fixtures::exif_with_orientation(u16::from(o.exif())),
        );
        let info = imaging::probe(&bytes).unwrap();
        assert_eq!(info.orientation, o);
        assert_eq!(info.oriented_size(), (96, 64), "{o:?}");

        let d = decode(&bytes).unwrap();
        assert_eq!((d.orientation, d.oriented), (o, o != Orientation::Normal));
        assert_eq!(
            (d.image.dimensions(), d.orig_width, d.orig_height),
            ((96, 64), 96, 64),
            "{o:?}"
        );
        for (got, want) in quadrant_colors(&d.image).into_iter().zip(QUADRANTS) {
            assert_near(got, want, 10, &format!("{o:?}"));
        }

        // not applied: the stored frame, and its size
        let raw = imaging::decode(
            &bytes,
            &DecodeOptions {
                apply_orientation: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(raw.image.dimensions(), stored.dimensions(), "{o:?}");
        assert_eq!((raw.orig_width, raw.orig_height), stored.dimensions());
    }
}

#[test]
fn orientation_with_scaled_decode_reports_the_full_upright_size() {
    let upright = quadrants(1200, 800);
    let stored = stored_for(Orientation::Rotate90, &upright);
    let bytes = fixtures::with_app1(&jpeg_of(&stored, 90), &fixtures::exif_with_orientation(6));
    for (scaling, scale, size) in [
        (DctScaling::PowersOfTwo, ScaleFactor::new(1, 2), (600, 400)),
        (DctScaling::Eighths, ScaleFactor::new(3, 8), (450, 300)),
    ] {
        let opts = DecodeOptions {
            target_min_side: Some(256),
            dct_scaling: scaling,
            ..Default::default()
        };
        let d = imaging::decode(&bytes, &opts).unwrap();
        assert_eq!(d.scale, scale);
        assert_eq!((d.orig_width, d.orig_height), (1200, 800));
        assert_eq!(d.image.dimensions(), size);
    }
    let d = imaging::decode(
        &bytes,
        &DecodeOptions {
            target_min_side: Some(256),
            ..Default::default()
        },
    )
    .unwrap();
    for (got, want) in quadrant_colors(&d.image).into_iter().zip(QUADRANTS) {
        assert_near(got, want, 10, "rotated and scaled");
    }
}

#[test]
fn png_exif_orientation_is_applied() {
    let upright = quadrants(30, 20);
    let stored = stored_for(Orientation::Rotate270, &upright);
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, stored.width(), stored.height());
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        let payload = fixtures::exif_with_orientation(8);
        w.write_chunk(png::chunk::ChunkType(*b"eXIf"), &payload[6..])
            .unwrap();
        w.write_image_data(stored.as_raw()).unwrap();
    }
    let d = decode(&bytes).unwrap();
    assert_eq!(
        (d.orientation, d.image.dimensions()),
        (Orientation::Rotate270, (30, 20))
    );
    assert_eq!(d.image, upright);
}

// ---------------------------------------------------------------------------------------------
// limits and broken input

fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&w.to_be_bytes());
    png.extend_from_slice(&h.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png.extend_from_slice(&[0, 0, 0, 10]);
    png.extend_from_slice(b"IDAT\x78\x9c\0\0\0\0\0\0\0\0\0\0\0\0");
    png
}

fn jpeg_header(w: u16, h: u16, progressive: bool) -> Vec<u8> {
    let sof = if progressive { 0xC2 } else { 0xC0 };
    let mut j = vec![0xFF, 0xD8, 0xFF, sof, 0, 17, 8];
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    j.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
    j.extend_from_slice(&[0x55; 64]);
    j
}

#[test]
fn decompression_bombs_are_refused_without_allocating() {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]);
    let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    webp.extend_from_slice(&[0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00]); // 16384 x 16384
    let bombs = [
        ("png 50000x50000", png_header(50_000, 50_000)),
        ("jpeg 65535x65535", jpeg_header(65_535, 65_535, false)),
        ("gif 65535x65535", gif),
        ("webp 16384x16384", webp),
    ];
    for (name, bytes) in bombs {
        let (result, largest) = largest_allocation(|| decode(&bytes));
        let err = result.expect_err(name);
        assert!(
            matches!(err, ImageError::TooManyPixels { .. }),
            "{name}: {err}"
        );
        assert_eq!(err.reason().code(), "too_many_pixels");
        assert!(largest < 64 * 1024, "{name}: allocated {largest} bytes");
        let (result, largest) =
            largest_allocation(|| imaging::process_for_shard(&bytes, &ProcessSpec::default()));
        assert_eq!(reason(result), "too_many_pixels", "{name}");
        assert!(
            largest < 64 * 1024,
            "{name}: process allocated {largest} bytes"
        );
    }
}

#[test]
fn an_output_over_the_pixel_limit_is_refused_before_resizing() {
    // a 10 x 4000 strip, enlarged to a 256-px shortest side: 256 x 102,400 pixels
    let strip = png_of(
        image::ExtendedColorType::Rgb8,
        10,
        4000,
        &vec![128u8; 10 * 4000 * 3],
    );
    let spec = ProcessSpec {
        max_pixels: 4_000_000,
        max_aspect_ratio: None,
        min_side: None,
        resize: imaging::ResizeSpec {
            downscale_only: false,
            ..Default::default()
        },
        ..ProcessSpec::default()
    };
    let (result, largest) = largest_allocation(|| imaging::process_for_shard(&strip, &spec));
    let err = result.expect_err("the output is over the limit");
    assert!(
        matches!(
            err,
            ImageError::OutputTooLarge {
                out_width: 256,
                out_height: 102_400,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason().code(), "too_many_pixels");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
}

#[test]
fn memory_limit_is_checked_before_decoding() {
    // under the pixel limit, but a progressive 8000x8000 needs a whole-image coefficient buffer
    let opts = DecodeOptions {
        max_alloc_bytes: 256 << 20,
        ..Default::default()
    };
    let (result, largest) =
        largest_allocation(|| imaging::decode(&jpeg_header(8000, 8000, true), &opts));
    let err = result.unwrap_err();
    assert!(matches!(err, ImageError::TooMuchMemory { .. }), "{err}");
    assert_eq!(err.reason().code(), "too_many_pixels");
    assert!(largest < 64 * 1024, "allocated {largest}");
    let (result, largest) =
        largest_allocation(|| imaging::decode(&png_header(8_000, 8_000), &opts));
    let err = result.unwrap_err();
    assert!(matches!(err, ImageError::TooMuchMemory { .. }), "{err}");
    assert!(largest < 64 * 1024, "allocated {largest}");
}

#[test]
fn empty_html_and_garbage_are_named() {
    assert_eq!(reason(decode(&[])), "empty_file");
    let html = decode(b"<!DOCTYPE html>\n<html><body>Not found</body></html>").unwrap_err();
    assert_eq!(html.reason().code(), "not_an_image");
    assert!(html.detail().contains("HTML"), "{html}");
    assert_eq!(reason(decode(&[0x13; 100])), "not_an_image");
    assert_eq!(
        reason(decode(b"\0\0\0\x1cftypavif\0\0\0\0")),
        "not_an_image"
    );
}

#[test]
fn truncated_and_corrupt_images_are_decode_errors() {
    let img = fixtures::render(160, 120, 3);
    let jpeg = jpeg_of(&img, 90);
    let png = png_of(image::ExtendedColorType::Rgb8, 160, 120, img.as_raw());
    let webp = imaging::encode(
        &img,
        &EncodeSpec {
            format: OutputFormat::Webp,
            quality: 80,
        },
    )
    .unwrap();
    let mut gif = Cursor::new(Vec::new());
    img.write_to(&mut gif, image::ImageFormat::Gif).unwrap();
    let gif = gif.into_inner();
    for (name, bytes) in [
        ("jpeg", &jpeg),
        ("png", &png),
        ("webp", &webp),
        ("gif", &gif),
    ] {
        for cut in [bytes.len() / 2, bytes.len() - 20, 30] {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert_eq!(
                err.reason().code(),
                "decode_error",
                "{name} cut at {cut}: {err}"
            );
            assert!(err.detail().starts_with(name), "{err}");
        }
    }
    // a valid header followed by garbage entropy-coded data
    assert_eq!(reason(decode(&jpeg_header(64, 64, false))), "decode_error");
    // a PNG whose image data is corrupted (CRC and zlib stream no longer match)
    let mut bad = png.clone();
    let idat = bad.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut bad[idat + 10..idat + 40] {
        *b ^= 0x5A;
    }
    assert_eq!(reason(decode(&bad)), "decode_error");
}

#[test]
fn harmless_jpeg_warnings_still_decode() {
    // two stray bytes before EOI: libjpeg warns "extraneous bytes before marker 0xd9"
    let jpeg = jpeg_of(&quadrants(64, 64), 90);
    let mut stray = jpeg[..jpeg.len() - 2].to_vec();
    stray.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
    let d = decode(&stray).unwrap();
    assert_eq!(d.image.dimensions(), (64, 64));
}

// ---------------------------------------------------------------------------------------------
// scaled decode

#[test]
fn scaled_decode_picks_the_largest_reduction_that_keeps_the_target() {
    let eighth = |m| ScaleFactor::new(m, 8);
    // (size, target, with powers of two, with eighths)
    for ((w, h), target, pow2, eighths) in [
        ((2000, 1500), 256, eighth(2), eighth(2)),
        ((472, 375), 256, ScaleFactor::ONE, eighth(6)),
        ((800, 600), 256, eighth(4), eighth(4)),
        ((1200, 900), 256, eighth(4), eighth(3)),
        ((4096, 2100), 256, eighth(1), eighth(1)),
        ((300, 200), 256, ScaleFactor::ONE, ScaleFactor::ONE),
        ((640, 480), 224, eighth(4), eighth(4)),
    ] {
        let bytes = fixtures::jpeg(w, h, 1, 85).unwrap();
        for (scaling, want) in [
            (DctScaling::PowersOfTwo, pow2),
            (DctScaling::Eighths, eighths),
            (DctScaling::Off, ScaleFactor::ONE),
        ] {
            let opts = DecodeOptions {
                target_min_side: Some(target),
                dct_scaling: scaling,
                ..Default::default()
            };
            let d = imaging::decode(&bytes, &opts).unwrap();
            assert_eq!(d.scale, want, "{w}x{h} {scaling:?}");
            assert_eq!((d.orig_width, d.orig_height), (w, h));
            assert_eq!(d.image.dimensions(), (want.apply(w), want.apply(h)));
            assert!(
                d.image.width().min(d.image.height()) >= target.min(w.min(h)),
                "{w}x{h}"
            );
        }
    }
    // other formats are decoded at full size
    let png = png_of(
        image::ExtendedColorType::Rgb8,
        600,
        600,
        &vec![7u8; 600 * 600 * 3],
    );
    let d = imaging::decode(
        &png,
        &DecodeOptions {
            target_min_side: Some(64),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        (d.scale, d.image.dimensions()),
        (ScaleFactor::ONE, (600, 600))
    );
}

#[test]
fn scaled_then_resized_matches_full_decode_then_resized() {
    let bytes = fixtures::jpeg(900, 700, 11, 92).unwrap();
    let spec = ResizeSpec::default();
    let full = decode(&bytes).unwrap();
    let a = imaging::resize(full.image, 900, 700, &spec).unwrap();
    let scaled = imaging::decode(
        &bytes,
        &DecodeOptions {
            target_min_side: Some(256),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!scaled.scale.is_one());
    let b = imaging::resize(scaled.image, 900, 700, &spec).unwrap();
    assert_eq!(a.dimensions(), (329, 256));
    assert_eq!(a.dimensions(), b.dimensions());
    let diff: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    assert!(diff < 6.0, "mean abs difference {diff}");
    assert!(imaging::hamming(imaging::phash(&a).unwrap(), imaging::phash(&b).unwrap()) <= 4);
}

// ---------------------------------------------------------------------------------------------
// resize

#[test]
fn every_resize_mode_gives_its_size() {
    let img = fixtures::render(600, 400, 5);
    let small = fixtures::render(200, 120, 6);
    let cases = [
        (ResizeMode::No, true, (600, 400), (200, 120)),
        (ResizeMode::KeepRatio, true, (384, 256), (200, 120)),
        (ResizeMode::KeepRatio, false, (384, 256), (427, 256)),
        (ResizeMode::KeepRatioLargest, true, (256, 171), (200, 120)),
        (ResizeMode::KeepRatioLargest, false, (256, 171), (256, 154)),
        (ResizeMode::CenterCrop, true, (256, 256), (200, 120)),
        (ResizeMode::CenterCrop, false, (256, 256), (256, 256)),
        (ResizeMode::Border, true, (256, 256), (256, 256)),
        (ResizeMode::Border, false, (256, 256), (256, 256)),
    ];
    for (mode, downscale_only, big_size, small_size) in cases {
        let spec = ResizeSpec {
            mode,
            downscale_only,
            ..Default::default()
        };
        let out = imaging::resize(img.clone(), 600, 400, &spec).unwrap();
        assert_eq!(out.dimensions(), big_size, "{mode:?} {downscale_only}");
        assert_eq!(spec.output_size(600, 400), big_size);
        let out = imaging::resize(small.clone(), 200, 120, &spec).unwrap();
        assert_eq!(
            out.dimensions(),
            small_size,
            "{mode:?} {downscale_only} small"
        );
        if downscale_only
            && matches!(
                mode,
                ResizeMode::No | ResizeMode::KeepRatio | ResizeMode::KeepRatioLargest
            )
        {
            assert_eq!(out, small, "{mode:?} must not touch a small image");
        }
    }
}

#[test]
fn border_pads_with_the_colour_and_center_crop_keeps_the_middle() {
    let img = quadrants(400, 200);
    let spec = ResizeSpec {
        mode: ResizeMode::Border,
        border_color: [1, 2, 3],
        ..Default::default()
    };
    let out = imaging::resize(img.clone(), 400, 200, &spec).unwrap();
    assert_eq!(out.dimensions(), (256, 256));
    assert_eq!(out.get_pixel(128, 2).0, [1, 2, 3]); // padding above
    assert_eq!(out.get_pixel(128, 253).0, [1, 2, 3]); // and below
    assert_near(out.get_pixel(30, 100).0, QUADRANTS[0], 2, "content");

    let crop = ResizeSpec {
        mode: ResizeMode::CenterCrop,
        downscale_only: false,
        size: 100,
        ..Default::default()
    };
    let out = imaging::resize(img, 400, 200, &crop).unwrap();
    assert_eq!(out.dimensions(), (100, 100));
    // the centre square of a 400x200 image is columns 100..300: still all four quadrants
    for (got, want) in quadrant_colors(&out).into_iter().zip(QUADRANTS) {
        assert_near(got, want, 2, "center crop");
    }
}

#[test]
fn crop_resize_into_writes_exactly_the_crop() {
    let src = fixtures::render(120, 90, 9);
    let crop = CropRect {
        x: 17,
        y: 11,
        width: 50,
        height: 40,
    };
    let mut dst = vec![0u8; 50 * 40 * 3];
    imaging::crop_resize_into_with(&src, crop, 50, 40, false, ResizeFilter::Nearest, &mut dst)
        .unwrap();
    let want = imageops::crop_imm(&src, 17, 11, 50, 40).to_image();
    assert_eq!(dst, *want.as_raw());

    imaging::crop_resize_into_with(&src, crop, 50, 40, true, ResizeFilter::Nearest, &mut dst)
        .unwrap();
    assert_eq!(dst, *imageops::flip_horizontal(&want).as_raw());

    // resampled (shrink and enlarge) into a slot of a batch buffer, the neighbours untouched
    let mut batch = vec![9u8; 3 * 32 * 32 * 3];
    let slot = &mut batch[32 * 32 * 3..2 * 32 * 32 * 3];
    imaging::crop_resize_into(
        &src,
        CropRect {
            x: 0,
            y: 0,
            width: 120,
            height: 90,
        },
        32,
        32,
        false,
        slot,
    )
    .unwrap();
    assert!(batch[..32 * 32 * 3].iter().all(|&b| b == 9));
    assert!(batch[2 * 32 * 32 * 3..].iter().all(|&b| b == 9));
    let flat = RgbImage::from_pixel(10, 10, Rgb([40, 50, 60]));
    let mut big = vec![0u8; 64 * 48 * 3];
    imaging::crop_resize_into(
        &flat,
        CropRect {
            x: 2,
            y: 2,
            width: 5,
            height: 5,
        },
        64,
        48,
        true,
        &mut big,
    )
    .unwrap();
    assert!(big.chunks_exact(3).all(|p| p == [40, 50, 60]));
}

#[test]
fn crop_resize_into_rejects_bad_arguments() {
    let src = RgbImage::new(10, 10);
    let mut dst = vec![0u8; 4 * 4 * 3];
    for crop in [
        CropRect {
            x: 8,
            y: 0,
            width: 5,
            height: 5,
        },
        CropRect {
            x: 0,
            y: 0,
            width: 0,
            height: 5,
        },
        CropRect {
            x: u32::MAX,
            y: 0,
            width: 2,
            height: 2,
        },
    ] {
        let err = imaging::crop_resize_into(&src, crop, 4, 4, false, &mut dst).unwrap_err();
        assert!(matches!(err, ImageError::InvalidArgument(_)), "{err}");
    }
    let err = imaging::crop_resize_into(
        &src,
        CropRect {
            x: 0,
            y: 0,
            width: 5,
            height: 5,
        },
        5,
        4,
        false,
        &mut dst,
    );
    assert!(matches!(err, Err(ImageError::InvalidArgument(_))));
}

// ---------------------------------------------------------------------------------------------
// encode

#[test]
fn encode_decode_round_trips() {
    let img = fixtures::render(257, 131, 4);
    for format in [OutputFormat::Jpeg, OutputFormat::Webp, OutputFormat::Png] {
        let bytes = imaging::encode(
            &img,
            &EncodeSpec {
                format,
                quality: 85,
            },
        )
        .unwrap();
        let d = decode(&bytes).unwrap();
        assert_eq!(
            (d.format, d.image.dimensions()),
            (format.image_format(), (257, 131))
        );
        if format == OutputFormat::Png {
            assert_eq!(d.image, img);
        }
    }
    // quality matters for the lossy formats
    for format in [OutputFormat::Jpeg, OutputFormat::Webp] {
        let lo = imaging::encode(
            &img,
            &EncodeSpec {
                format,
                quality: 30,
            },
        )
        .unwrap();
        let hi = imaging::encode(
            &img,
            &EncodeSpec {
                format,
                quality: 95,
            },
        )
        .unwrap();
        assert!(
            lo.len() < hi.len(),
            "{format:?}: q30 {} >= q95 {}",
            lo.len(),
            hi.len()
        );
    }
    // 4:2:0 chroma subsampling
    let jpeg = jpeg_of(&img, 90);
    let header = turbojpeg::read_header(&jpeg).unwrap();
    assert_eq!(header.subsamp, turbojpeg::Subsamp::Sub2x2);
    assert!(imaging::encode(&RgbImage::new(0, 3), &EncodeSpec::default()).is_err());
}

// ---------------------------------------------------------------------------------------------
// hashes

#[test]
fn phash_near_duplicates_are_close_and_different_images_far() {
    let originals: Vec<RgbImage> = (0..8)
        .map(|seed| fixtures::render(480, 360, 100 + seed))
        .collect();
    let hashes: Vec<u64> = originals
        .iter()
        .map(|i| imaging::phash(i).unwrap())
        .collect();
    for (img, &h) in originals.iter().zip(&hashes) {
        let requality = decode(&jpeg_of(img, 50)).unwrap().image;
        let smaller = imageops::resize(img, 400, 300, imageops::FilterType::Triangle);
        let tiny_jpeg = decode(&jpeg_of(
            &imageops::resize(img, 240, 180, imageops::FilterType::Lanczos3),
            70,
        ))
        .unwrap()
        .image;
        for (what, near) in [
            ("q50", requality),
            ("resized", smaller),
            ("half + q70", tiny_jpeg),
        ] {
            let d = imaging::hamming(h, imaging::phash(&near).unwrap());
            assert!(d <= 6, "{what}: distance {d}");
        }
    }
    let mut far = Vec::new();
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            far.push(imaging::hamming(hashes[i], hashes[j]));
        }
    }
    let mean = far.iter().sum::<u32>() as f64 / far.len() as f64;
    assert!(far.iter().all(|&d| d > 12), "{far:?}");
    assert!(mean > 20.0, "mean distance {mean}: {far:?}");
}

#[test]
fn content_hash_distinguishes_bytes() {
    let a = fixtures::jpeg(64, 64, 1, 90).unwrap();
    let b = fixtures::jpeg(64, 64, 1, 91).unwrap();
    assert_eq!(imaging::content_hash(&a), imaging::content_hash(&a.clone()));
    assert_ne!(imaging::content_hash(&a), imaging::content_hash(&b));
}

// ---------------------------------------------------------------------------------------------
// process_for_shard

#[test]
fn process_for_shard_end_to_end() {
    // without the default size filters, so that small images reach the keep-original path
    let spec = ProcessSpec {
        min_side: None,
        max_aspect_ratio: None,
        ..ProcessSpec::default()
    };
    let big = fixtures::jpeg(800, 600, 21, 90).unwrap();
    let p = imaging::process_for_shard(&big, &spec).unwrap();
    assert_eq!(
        (p.format, p.width, p.height, p.orig_width, p.orig_height),
        (ImageFormat::Jpeg, 341, 256, 800, 600)
    );
    assert_eq!(
        (p.source_format, p.kept_original, p.decode_scale),
        (ImageFormat::Jpeg, false, ScaleFactor::new(1, 2))
    );
    let stored = decode(&p.bytes).unwrap();
    assert_eq!(stored.image.dimensions(), (341, 256));
    assert!(
        imaging::hamming(
            p.phash,
            imaging::phash(&decode(&big).unwrap().image).unwrap()
        ) <= 4
    );

    // small enough already: the JPEG is stored as it came
    let small = fixtures::jpeg(200, 150, 22, 90).unwrap();
    let p = imaging::process_for_shard(&small, &spec).unwrap();
    assert!(p.kept_original);
    assert_eq!(
        (p.bytes.as_slice(), p.width, p.height),
        (small.as_slice(), 200, 150)
    );

    // ... unless it is rotated, or its format is not allowed to be kept
    let rotated = fixtures::with_app1(&small, &fixtures::exif_with_orientation(6));
    let p = imaging::process_for_shard(&rotated, &spec).unwrap();
    assert!(!p.kept_original);
    assert_eq!(
        (p.width, p.height, p.orig_width, p.orig_height),
        (150, 200, 150, 200)
    );
    let png = png_of(
        image::ExtendedColorType::Rgb8,
        100,
        80,
        &vec![120u8; 100 * 80 * 3],
    );
    let p = imaging::process_for_shard(&png, &spec).unwrap();
    assert_eq!(
        (p.kept_original, p.format, p.source_format),
        (false, ImageFormat::Jpeg, ImageFormat::Png)
    );
    let keep_png = ProcessSpec {
        keep_original: vec![ImageFormat::Png],
        ..spec.clone()
    };
    assert!(
        imaging::process_for_shard(&png, &keep_png)
            .unwrap()
            .kept_original
    );

    // WebP output, centre crop
    let webp_spec = ProcessSpec {
        resize: ResizeSpec {
            mode: ResizeMode::CenterCrop,
            size: 128,
            ..Default::default()
        },
        encode: EncodeSpec {
            format: OutputFormat::Webp,
            quality: 80,
        },
        ..ProcessSpec::default()
    };
    let p = imaging::process_for_shard(&big, &webp_spec).unwrap();
    assert_eq!(
        (p.format, p.width, p.height, p.decode_scale),
        (ImageFormat::Webp, 128, 128, ScaleFactor::new(1, 4))
    );
    assert_eq!(ImageFormat::sniff(&p.bytes), Some(ImageFormat::Webp));

    // the same spec gives the same bytes
    assert_eq!(
        imaging::process_for_shard(&big, &spec).unwrap(),
        imaging::process_for_shard(&big, &spec).unwrap()
    );
}

#[test]
fn process_for_shard_filters_and_rejects() {
    let spec = ProcessSpec {
        min_side: Some(100),
        max_aspect_ratio: Some(3.0),
        ..ProcessSpec::default()
    };
    assert_eq!(
        reason(imaging::process_for_shard(
            &fixtures::jpeg(300, 90, 1, 80).unwrap(),
            &spec
        )),
        "too_small"
    );
    assert_eq!(
        reason(imaging::process_for_shard(
            &fixtures::jpeg(700, 200, 1, 80).unwrap(),
            &spec
        )),
        "aspect_ratio"
    );
    assert!(imaging::process_for_shard(&fixtures::jpeg(300, 100, 1, 80).unwrap(), &spec).is_ok());
    assert_eq!(reason(imaging::process_for_shard(&[], &spec)), "empty_file");
    assert_eq!(
        reason(imaging::process_for_shard(b"<html>", &spec)),
        "not_an_image"
    );
    let jpeg = fixtures::jpeg(300, 300, 1, 80).unwrap();
    assert_eq!(
        reason(imaging::process_for_shard(&jpeg[..jpeg.len() / 2], &spec)),
        "decode_error"
    );
}

#[test]
fn specs_deserialize_from_partial_json() {
    let spec: ProcessSpec = serde_json::from_str(
        r#"{"resize": {"mode": "center_crop", "size": 224}, "encode": {"format": "webp"}, "keep_original": []}"#,
    )
    .unwrap();
    assert_eq!(
        (
            spec.resize.mode,
            spec.resize.size,
            spec.resize.downscale_only
        ),
        (ResizeMode::CenterCrop, 224, true)
    );
    assert_eq!(
        (spec.encode.format, spec.encode.quality),
        (OutputFormat::Webp, 90)
    );
    assert!(spec.keep_original.is_empty());
    assert!(serde_json::from_str::<ProcessSpec>(r#"{"resize": {"mode": "squash"}}"#).is_err());
    assert!(serde_json::from_str::<ProcessSpec>(r#"{"qualty": 3}"#).is_err());
}
