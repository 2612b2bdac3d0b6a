//! Rendering one item: scene → pixels → encoded file (clean or with its dirt) and caption.
//!
//! Everything about item `i` comes from its own RNG streams (see [`super::rng`]), so items can be
//! rendered in any order on any number of threads. A duplicate re-renders its source item, which
//! is cheap and keeps `duplicate_exact` byte-identical to the source without shared state.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use super::caption;
use super::dirt::DirtKind;
use super::encode::{self, JpegOptions};
use super::error::SynthError;
use super::plan::SynthPlan;
use super::raster::{Canvas, render, resize_bilinear, rotate90};
use super::rng::{ItemRng, Purpose, item_rng, pick, weighted};
use super::scene::{Labels, Scene, extreme_size, tiny_size, web_size};

/// What the bytes of an item's image file really are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// JPEG (baseline or progressive; RGB, gray or CMYK).
    Jpeg,
    /// PNG (RGB8, 16-bit gray or palette).
    Png,
    /// WebP (lossy or lossless).
    Webp,
    /// GIF (static or animated).
    Gif,
    /// Not an image: an HTML page (`not_image`).
    Html,
    /// An empty file (`zero_byte`).
    Empty,
}

impl FileFormat {
    /// The name used in the sidecar and in counts.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Jpeg => "jpeg",
            FileFormat::Png => "png",
            FileFormat::Webp => "webp",
            FileFormat::Gif => "gif",
            FileFormat::Html => "html",
            FileFormat::Empty => "empty",
        }
    }
}

/// One generated image-text pair, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthPair {
    /// Item index (`0..count`).
    pub index: u64,
    /// Nine-digit zero-padded index, e.g. `000000042`.
    pub key: String,
    /// The image file's bytes.
    pub image: Vec<u8>,
    /// What the bytes are.
    pub format: FileFormat,
    /// File extension the layout uses (`jpg`, `png`, `webp`, `gif`; an HTML page or an empty
    /// file still gets an image extension).
    pub extension: &'static str,
    /// Width of the upright scene (after EXIF orientation); for a decompression bomb, the
    /// declared width.
    pub width: u32,
    /// Height, as for `width`.
    pub height: u32,
    /// Caption bytes as written (not UTF-8 for `caption_invalid_utf8`).
    pub caption: Vec<u8>,
    /// Ground truth about the scene.
    pub labels: Labels,
    /// The dirt applied to this item.
    pub dirt: Option<DirtKind>,
    /// A dirt kind assigned to this item that its layout cannot carry (the item is clean).
    pub dirt_skipped: Option<DirtKind>,
    /// For duplicates, the index of the copied item.
    pub dup_of: Option<u64>,
    /// Encoder quality for lossy JPEG / WebP files.
    pub quality: Option<u8>,
}

impl SynthPair {
    /// Whether the layout writes the image file (false only for `missing_file`).
    pub fn file_written(&self) -> bool {
        self.dirt != Some(DirtKind::MissingFile)
    }

    /// The file name of the image, `<key>.<ext>`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.key, self.extension)
    }
}

/// The clean encoding chosen for an item (drawn from its encoding stream only).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    Jpeg { quality: u8, progressive: bool },
    Png,
    WebpLossy { quality: u8 },
    WebpLossless,
    Gif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChoiceKind {
    Jpeg,
    Png,
    WebpLossy,
    WebpLossless,
    Gif,
}

fn choose(seed: u64, index: u64) -> Choice {
    let mut rng = item_rng(seed, index, Purpose::Encoding);
    let kind = weighted(
        &mut rng,
        &[
            (ChoiceKind::Jpeg, 80),
            (ChoiceKind::Png, 10),
            (ChoiceKind::WebpLossy, 5),
            (ChoiceKind::WebpLossless, 3),
            (ChoiceKind::Gif, 2),
        ],
    );
    let quality = rng.random_range(70..=95u8);
    match kind {
        ChoiceKind::Jpeg => Choice::Jpeg {
            quality,
            progressive: rng.random_bool(0.1),
        },
        ChoiceKind::Png => Choice::Png,
        ChoiceKind::WebpLossy => Choice::WebpLossy {
            quality: quality - 10,
        },
        ChoiceKind::WebpLossless => Choice::WebpLossless,
        ChoiceKind::Gif => Choice::Gif,
    }
}

/// An encoded image with what the sidecar says about it.
struct Encoded {
    bytes: Vec<u8>,
    format: FileFormat,
    extension: &'static str,
    width: u32,
    height: u32,
    quality: Option<u8>,
}

impl Encoded {
    fn of(c: &Canvas, bytes: Vec<u8>, format: FileFormat, quality: Option<u8>) -> Encoded {
        let extension = match format {
            FileFormat::Jpeg | FileFormat::Html | FileFormat::Empty => "jpg",
            FileFormat::Png => "png",
            FileFormat::Webp => "webp",
            FileFormat::Gif => "gif",
        };
        Encoded {
            bytes,
            format,
            extension,
            width: c.width,
            height: c.height,
            quality,
        }
    }
}

fn baseline(quality: u8) -> JpegOptions {
    JpegOptions {
        quality,
        progressive: false,
        orientation: None,
    }
}

fn encode_clean(choice: Choice, c: &Canvas) -> Result<Encoded, (&'static str, String)> {
    Ok(match choice {
        Choice::Jpeg {
            quality,
            progressive,
        } => {
            let opts = JpegOptions {
                quality,
                progressive,
                orientation: None,
            };
            Encoded::of(
                c,
                encode::jpeg(c, opts).map_err(|e| ("jpeg", e))?,
                FileFormat::Jpeg,
                Some(quality),
            )
        }
        Choice::Png => Encoded::of(
            c,
            encode::png_rgb(c).map_err(|e| ("png", e))?,
            FileFormat::Png,
            None,
        ),
        Choice::WebpLossy { quality } => Encoded::of(
            c,
            encode::webp_lossy(c, quality as f32).map_err(|e| ("webp", e))?,
            FileFormat::Webp,
            Some(quality),
        ),
        Choice::WebpLossless => Encoded::of(
            c,
            encode::webp_lossless(c).map_err(|e| ("webp", e))?,
            FileFormat::Webp,
            None,
        ),
        Choice::Gif => Encoded::of(
            c,
            encode::gif(std::slice::from_ref(c), 0).map_err(|e| ("gif", e))?,
            FileFormat::Gif,
            None,
        ),
    })
}

/// The pixels of `scene`, as the clean encoding `choice` wants them.
fn draw(choice: Choice, scene: &Scene) -> Canvas {
    match choice {
        // Lossless files on the web are mostly graphics, not photos: no sensor noise (which
        // also keeps them from being incompressible).
        Choice::Png | Choice::WebpLossless | Choice::Gif => render(&Scene {
            noise_amp: 0,
            ..scene.clone()
        }),
        Choice::Jpeg { .. } | Choice::WebpLossy { .. } => render(scene),
    }
}

/// Copies of the canvas with modulated brightness: the later frames of an animated GIF.
fn animation_frames(c: &Canvas, rng: &mut ItemRng) -> Vec<Canvas> {
    let n = rng.random_range(2..=4);
    let mut frames = vec![c.clone()];
    for k in 1..=n {
        let gain = if k % 2 == 1 { 180 } else { 300 }; // ×0.7 / ×1.17 in 256ths
        let mut f = c.clone();
        for v in &mut f.data {
            *v = ((*v as u32 * gain) >> 8).min(255) as u8;
        }
        frames.push(f);
    }
    frames
}

fn html_page(key: &str, rng: &mut ItemRng) -> Vec<u8> {
    let page = match rng.random_range(0..3) {
        0 => format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\
             <body><h1>Not Found</h1><p>The requested URL /images/{key}.jpg was not found on this \
             server.</p></body></html>\n"
        ),
        1 => "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Sign in</title></head><body>\
              <form action=\"/login\" method=\"post\"><input name=\"user\"><input type=\"password\" \
              name=\"pass\"><button>Log in</button></form></body></html>\n"
            .to_string(),
        _ => "<html><head><title>Just a moment...</title><meta http-equiv=\"refresh\" content=\"5\">\
              </head><body><p>Checking your browser before accessing the site.</p></body></html>\n"
            .to_string(),
    };
    page.into_bytes()
}

/// Time one item spent in each stage of rendering (see [`SynthPlan::render_pair_timed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Sampling the scene and writing the caption.
    pub scene: Duration,
    /// Drawing the pixels (background, objects, noise).
    pub raster: Duration,
    /// Encoding the image file, with any dirt made of its bytes.
    pub encode: Duration,
    /// Pixels drawn (canvas width × height).
    pub pixels: u64,
}

impl SynthPlan {
    /// Renders item `index` (`0..count`): image bytes, caption bytes, labels and applied dirt.
    /// Deterministic in `(config, index)`.
    pub fn render_pair(&self, index: u64) -> Result<SynthPair, SynthError> {
        self.render_pair_timed(index).map(|(pair, _)| pair)
    }

    /// [`SynthPlan::render_pair`], also returning the time each stage took.
    pub fn render_pair_timed(&self, index: u64) -> Result<(SynthPair, StageTimes), SynthError> {
        let started = Instant::now();
        let cfg = &self.config;
        if index >= cfg.count {
            return Err(SynthError::Config(format!(
                "item {index} out of range (count {})",
                cfg.count
            )));
        }
        let seed = cfg.seed;
        let (dirt, dirt_skipped) = match self.assigned(index) {
            Some(k) if !k.applies_to(cfg.layout) => (None, Some(k)),
            other => (other, None),
        };
        let dup_of = self
            .dup_of(index)
            .filter(|_| dirt.is_some_and(DirtKind::is_duplicate));
        let source = dup_of.unwrap_or(index);
        let mut drng = item_rng(seed, index, Purpose::Dirt);

        let mut srng = item_rng(seed, source, Purpose::Scene);
        let (mut w, mut h) = web_size(&mut srng);
        match dirt {
            Some(DirtKind::Tiny) => (w, h) = tiny_size(&mut drng),
            Some(DirtKind::ExtremeAspect) => (w, h) = extreme_size(&mut drng),
            _ => {}
        }
        let scene = Scene::sample(w, h, &cfg.sizes, &mut srng);

        let mut crng = item_rng(seed, index, Purpose::Caption);
        let clean_caption = caption::caption(&scene, &mut crng);
        let caption = match dirt {
            Some(DirtKind::CaptionEmpty) => caption::empty(&mut drng),
            Some(DirtKind::CaptionOneWord) => caption::one_word(&scene, &mut drng),
            Some(DirtKind::CaptionOverlong) => caption::overlong(&clean_caption, &scene, &mut drng),
            Some(DirtKind::CaptionHtml) => caption::html(&clean_caption, &mut drng),
            Some(DirtKind::CaptionInvalidUtf8) => caption::invalid_utf8(&clean_caption, &mut drng),
            Some(DirtKind::CaptionMismatched) => {
                caption::mismatched(&scene, &cfg.sizes, &mut drng).into_bytes()
            }
            Some(DirtKind::CaptionBoilerplate) => caption::boilerplate(&mut drng).into_bytes(),
            _ => clean_caption.into_bytes(),
        };

        let key = format!("{index:09}");
        let choice = choose(seed, source);
        let scened = Instant::now();
        let canvas = draw(choice, &scene);
        let drawn = Instant::now();
        let enc =
            self.image(&key, choice, &canvas, dirt, &mut drng)
                .map_err(|(what, detail)| SynthError::Encode {
                    index,
                    what,
                    detail,
                })?;
        let times = StageTimes {
            scene: scened - started,
            raster: drawn - scened,
            encode: drawn.elapsed(),
            pixels: canvas.width as u64 * canvas.height as u64,
        };
        let pair = SynthPair {
            index,
            key,
            image: enc.bytes,
            format: enc.format,
            extension: enc.extension,
            width: enc.width,
            height: enc.height,
            caption,
            labels: scene.labels,
            dirt,
            dirt_skipped,
            dup_of,
            quality: enc.quality,
        };
        Ok((pair, times))
    }

    /// The image file of an item drawn as `canvas`, its clean encoding being `choice` (the
    /// item's own, or the copied item's for duplicates).
    fn image(
        &self,
        key: &str,
        choice: Choice,
        canvas: &Canvas,
        dirt: Option<DirtKind>,
        drng: &mut ItemRng,
    ) -> Result<Encoded, (&'static str, String)> {
        let quality = match choice {
            Choice::Jpeg { quality, .. } | Choice::WebpLossy { quality } => quality,
            _ => drng.random_range(70..=95),
        };
        let jpeg_err = |e| ("jpeg", e);
        let png_err = |e| ("png", e);
        let Some(kind) = dirt else {
            return encode_clean(choice, canvas);
        };
        Ok(match kind {
            DirtKind::Truncated => {
                let full = encode::jpeg(canvas, baseline(quality)).map_err(jpeg_err)?;
                let cut =
                    encode::truncate_jpeg(full, drng.random_range(0.25..0.85)).map_err(jpeg_err)?;
                Encoded::of(canvas, cut, FileFormat::Jpeg, Some(quality))
            }
            DirtKind::Corrupt => {
                let png = encode::png_rgb(canvas).map_err(png_err)?;
                // A quarter of the file (64 B to 4 KiB): the chunk CRC and the zlib stream break.
                let garbage: Vec<u8> = (0..(png.len() / 4).clamp(64, 4096))
                    .map(|_| drng.random())
                    .collect();
                Encoded::of(
                    canvas,
                    encode::corrupt_png(png, &garbage).map_err(png_err)?,
                    FileFormat::Png,
                    None,
                )
            }
            DirtKind::ZeroByte => Encoded::of(canvas, Vec::new(), FileFormat::Empty, None),
            DirtKind::NotImage => {
                let mut e = Encoded::of(canvas, html_page(key, drng), FileFormat::Html, None);
                e.extension = pick(drng, &["jpg", "jpg", "png", "webp"]);
                e
            }
            DirtKind::NearDuplicate => {
                let scale = drng.random_range(0.88..0.97f32);
                let nw = ((canvas.width as f32 * scale).round() as u32).max(1);
                let nh = ((canvas.height as f32 * scale).round() as u32).max(1);
                let small = resize_bilinear(canvas, nw, nh);
                let step = drng.random_range(6..=15u8);
                let q = if quality >= 80 {
                    quality - step
                } else {
                    quality + step
                };
                Encoded::of(
                    &small,
                    encode::jpeg(&small, baseline(q)).map_err(jpeg_err)?,
                    FileFormat::Jpeg,
                    Some(q),
                )
            }
            DirtKind::ExifRotated => {
                let orientation: u16 = pick(drng, &[6, 8]);
                // 6: viewers rotate the stored pixels 90° clockwise, so store them rotated
                // counter-clockwise; 8 is the mirror case.
                let stored = rotate90(canvas, orientation == 8);
                let opts = JpegOptions {
                    quality,
                    progressive: false,
                    orientation: Some(orientation),
                };
                Encoded::of(
                    canvas,
                    encode::jpeg(&stored, opts).map_err(jpeg_err)?,
                    FileFormat::Jpeg,
                    Some(quality),
                )
            }
            DirtKind::Cmyk => Encoded::of(
                canvas,
                encode::jpeg_cmyk(canvas, quality).map_err(jpeg_err)?,
                FileFormat::Jpeg,
                Some(quality),
            ),
            DirtKind::Grayscale => Encoded::of(
                canvas,
                encode::jpeg_gray(canvas, quality).map_err(jpeg_err)?,
                FileFormat::Jpeg,
                Some(quality),
            ),
            DirtKind::Gray16 => Encoded::of(
                canvas,
                encode::png_gray16(canvas).map_err(png_err)?,
                FileFormat::Png,
                None,
            ),
            DirtKind::PaletteAlpha => {
                let corner = (canvas.width.min(canvas.height) as f32
                    * drng.random_range(0.08..0.15f32)) as u32;
                let bytes = encode::png_palette_alpha(canvas, corner).map_err(png_err)?;
                Encoded::of(canvas, bytes, FileFormat::Png, None)
            }
            DirtKind::Animated => {
                let frames = animation_frames(canvas, drng);
                let delay = drng.random_range(10..=50);
                Encoded::of(
                    canvas,
                    encode::gif(&frames, delay).map_err(|e| ("gif", e))?,
                    FileFormat::Gif,
                    None,
                )
            }
            DirtKind::DecompressionBomb => {
                let (dw, dh) = (
                    drng.random_range(30_000..=60_000u32),
                    drng.random_range(30_000..=60_000u32),
                );
                let mut e = if drng.random_bool(0.5) {
                    Encoded::of(
                        canvas,
                        encode::bomb_png(dw, dh).map_err(png_err)?,
                        FileFormat::Png,
                        None,
                    )
                } else {
                    let thumb = resize_bilinear(canvas, 64, 48);
                    let small = encode::jpeg(&thumb, baseline(quality)).map_err(jpeg_err)?;
                    let bytes = encode::bomb_jpeg(small, dw as u16, dh as u16).map_err(jpeg_err)?;
                    Encoded::of(canvas, bytes, FileFormat::Jpeg, Some(quality))
                };
                (e.width, e.height) = (dw, dh);
                e
            }
            DirtKind::Tiny
            | DirtKind::ExtremeAspect
            | DirtKind::DuplicateExact
            | DirtKind::CaptionEmpty
            | DirtKind::CaptionOneWord
            | DirtKind::CaptionOverlong
            | DirtKind::CaptionHtml
            | DirtKind::CaptionInvalidUtf8
            | DirtKind::CaptionMismatched
            | DirtKind::CaptionBoilerplate
            | DirtKind::MissingFile => encode_clean(choice, canvas)?,
        })
    }
}
