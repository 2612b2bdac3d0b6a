//! Drawing scenes into RGB8 pixels: about 0.7 ms per web-sized image (0.275 MP) on one core.
//!
//! The image is drawn in bands of 8 rows, top to bottom, each band in three simple loops the
//! compiler can keep tight, while the band is in cache:
//! 1. the background, row by row: a per-pixel mix level `0..=256` between its two colours
//!    (integer fixed point), looked up in a 257-entry palette;
//! 2. each object over its bounding box only, from a signed distance function (antialiased
//!    edges: coverage = ½ − distance, clamped), with a lighting ramp; 8-pixel tiles wholly inside
//!    or outside the shape skip the distance function;
//! 3. sensor noise, a saturating add of two precomputed byte tables (the positive and negative
//!    parts of the noise at the scene's amplitude), read from an offset hashed from `(seed, y)`:
//!    noise is a pure function of `(seed, amplitude, x, y)`.
//!
//! Adding the noise last equals noising background and objects separately and blending them
//! (the noise of a pixel is the same value in both), up to clamping at 0 and 255.

use std::sync::OnceLock;

use super::rng::mix64;
use super::scene::{Background, Object, Scene, Shape};

/// An RGB8 image, rows top to bottom, no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canvas {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
        }
    }
}

/// Draws a scene.
pub(crate) fn render(scene: &Scene) -> Canvas {
    render_tiled(scene, TILE)
}

/// [`render`] with objects classified in `tile`-pixel squares, drawn in bands of `tile` rows
/// (any tile size gives the same pixels; see [`Painter::paint_sdf`]).
fn render_tiled(scene: &Scene, tile: u32) -> Canvas {
    let tile = tile.max(1);
    let painters: Vec<Painter<'_>> = scene
        .distractors
        .iter()
        .chain(std::iter::once(&scene.main))
        .map(|o| Painter::new(o, scene))
        .collect();
    let noise = (scene.noise_amp > 0).then(|| noise_table(scene.noise_amp));
    background(scene, tile, |band| {
        for painter in &painters {
            painter.paint(band, tile);
        }
        if let Some(table) = noise {
            add_noise(band, scene.noise_seed, table);
        }
    })
}

/// Rows `first..` of an image `width` pixels wide, while it is being drawn: the background is
/// filled a band at a time, and objects and noise are drawn into the band while it is in cache.
struct Band<'a> {
    data: &'a mut [u8],
    first: u32,
    width: u32,
}

impl Band<'_> {
    fn rows(&self) -> u32 {
        (self.data.len() / (self.width as usize * 3).max(1)) as u32
    }
}

/// Noise bytes per table period (a power of two).
const NOISE_TABLE: usize = 1 << 18;
/// Bytes after the period that repeat its start, so that rows up to this long read one slice.
const NOISE_PAD: usize = 8192;

/// The noise of one amplitude, as the two non-negative parts of each value, so that adding it
/// to a byte is `saturating_add(up).saturating_sub(down)`.
struct NoiseTable {
    up: Vec<u8>,
    down: Vec<u8>,
}

/// Uniform noise in `−amp..amp` (`(n · amp) >> 7` for bytes `n` drawn from [`mix64`]), built
/// once per amplitude.
fn noise_table(amp: u8) -> &'static NoiseTable {
    static TABLES: [OnceLock<NoiseTable>; 256] = [const { OnceLock::new() }; 256];
    TABLES[amp as usize].get_or_init(|| {
        let raw: Vec<i8> = (0..NOISE_TABLE / 8)
            .flat_map(|i| mix64(0x6E_6F69_7365 ^ i as u64).to_le_bytes())
            .map(|b| b as i8)
            .collect();
        let scaled = (0..NOISE_TABLE + NOISE_PAD)
            .map(|i| (raw[i % NOISE_TABLE] as i16 * amp as i16) >> 7)
            .collect::<Vec<i16>>();
        NoiseTable {
            up: scaled.iter().map(|&v| v.max(0) as u8).collect(),
            down: scaled.iter().map(|&v| (-v).max(0) as u8).collect(),
        }
    })
}

/// Adds the sensor noise `table` to every channel of every pixel of the band, clamped to
/// `0..=255`.
fn add_noise(band: &mut Band<'_>, seed: u64, table: &NoiseTable) {
    let row_len = band.width as usize * 3;
    if row_len == 0 {
        return;
    }
    for (y, row) in (band.first..).zip(band.data.chunks_exact_mut(row_len)) {
        let start = mix64(seed ^ y as u64) as usize & (NOISE_TABLE - 1);
        let span = start..start + row_len;
        match (table.up.get(span.clone()), table.down.get(span)) {
            (Some(up), Some(down)) => {
                for ((p, &u), &d) in row.iter_mut().zip(up).zip(down) {
                    *p = p.saturating_add(u).saturating_sub(d);
                }
            }
            _ => {
                // Rows longer than the padding wrap around the period.
                for (j, p) in row.iter_mut().enumerate() {
                    let k = (start + j) & (NOISE_TABLE - 1);
                    *p = p.saturating_add(table.up[k]).saturating_sub(table.down[k]);
                }
            }
        }
    }
}

#[inline]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Mix levels of a background: 0 is the first colour, 256 the second.
const MIX_LEVELS: usize = 257;

/// Draws a canvas whose background is `c0 + (c1 − c0)·t/256 + cast` (clamped), where
/// `row_mix(y, ts)` writes the mix `t` (`0..=256`) of every pixel of row `y` into `ts`, and
/// hands each band of `band_rows` filled rows to `finish`, top to bottom.
fn fill_with(
    scene: &Scene,
    band_rows: u32,
    mut finish: impl FnMut(&mut Band<'_>),
    mut row_mix: impl FnMut(u32, &mut [u16]),
) -> Canvas {
    let bg = &scene.background;
    let (width, height) = (scene.width, scene.height);
    let c0: [i32; 3] = std::array::from_fn(|i| bg.c0[i] as i32 + scene.cast[i] as i32);
    let d: [i32; 3] = std::array::from_fn(|i| bg.c1[i] as i32 - bg.c0[i] as i32);
    // The colour of every mix level, so a pixel costs one lookup; a fourth byte lets a pixel be
    // one 4-byte store, its last byte overwritten by the next pixel.
    let palette: [[u8; 4]; MIX_LEVELS] = std::array::from_fn(|t| {
        std::array::from_fn(|ch| match ch {
            0..3 => clamp_u8(c0[ch] + ((d[ch] * t as i32) >> 8)),
            _ => 0,
        })
    });
    let row_len = width as usize * 3;
    let total = row_len * height as usize;
    // One spare byte for the last pixel's 4-byte store; the buffer grows a band at a time, so
    // its zeroing happens in cache, just before the band is drawn.
    let mut data = Vec::with_capacity(total + 1);
    let mut ts = vec![0u16; width as usize];
    for first in (0..height).step_by(band_rows.max(1) as usize) {
        let last = (first + band_rows.max(1)).min(height);
        data.resize(last as usize * row_len + 1, 0);
        for y in first..last {
            row_mix(y, &mut ts);
            let row_start = y as usize * row_len;
            let Some(row) = data.get_mut(row_start..row_start + row_len + 1) else {
                continue;
            };
            for (x, &t) in ts.iter().enumerate() {
                if let Some(px) = row.get_mut(3 * x..3 * x + 4) {
                    px.copy_from_slice(&palette[(t as usize).min(MIX_LEVELS - 1)]);
                }
            }
        }
        if let Some(rows) = data.get_mut(first as usize * row_len..last as usize * row_len) {
            finish(&mut Band {
                data: rows,
                first,
                width,
            });
        }
    }
    data.truncate(total);
    Canvas {
        width,
        height,
        data,
    }
}

/// Fixed-point scale of the background's per-pixel coordinates (16 fractional bits).
const FIX: f32 = 65536.0;

/// Draws the scene's background, handing each band of `band_rows` rows to `finish`.
fn background(scene: &Scene, band_rows: u32, finish: impl FnMut(&mut Band<'_>)) -> Canvas {
    let bg = scene.background;
    let (w, h) = (scene.width as f32, scene.height as f32);
    let (sa, ca) = bg.angle.sin_cos();
    let period = bg.period.max(2);
    let columns = 0..scene.width;
    match bg.kind {
        Background::Plain => fill_with(scene, band_rows, finish, |_, _| {}),
        Background::Gradient => {
            // t = (x·cos + y·sin − lo)·256 / (hi − lo), in 16.16 fixed point along the row.
            let corners = [0.0, w * ca, h * sa, w * ca + h * sa];
            let lo = corners.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = corners.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let k = 256.0 / (hi - lo).max(1.0);
            let step = (ca * k * FIX) as i32;
            fill_with(scene, band_rows, finish, |y, ts| {
                let start = ((y as f32 * sa - lo) * k * FIX) as i32;
                for (x, t) in ts.iter_mut().enumerate() {
                    *t = (start.wrapping_add(step.wrapping_mul(x as i32)) >> 16).clamp(0, 256)
                        as u16;
                }
            })
        }
        Background::Stripes => {
            // Stripe index u = (x·cos + y·sin)·2 / period; odd stripes take the second colour.
            let inv = 2.0 / period as f32;
            let step = (ca * inv * FIX) as i32;
            fill_with(scene, band_rows, finish, |y, ts| {
                let start = (y as f32 * sa * inv * FIX) as i32;
                for (x, t) in ts.iter_mut().enumerate() {
                    let u = start.wrapping_add(step.wrapping_mul(x as i32));
                    *t = (((u >> 16) & 1) as u16) << 8;
                }
            })
        }
        Background::Checkerboard => {
            let parity: Vec<u16> = columns.map(|x| ((x / period) & 1) as u16).collect();
            fill_with(scene, band_rows, finish, |y, ts| {
                let row = ((y / period) & 1) as u16;
                for (t, &p) in ts.iter_mut().zip(&parity) {
                    *t = (p ^ row) << 8;
                }
            })
        }
        Background::Dots => {
            let half = period as f32 / 2.0;
            let r = bg.dot_radius * period as f32;
            let r2 = r * r;
            let dx2: Vec<f32> = columns
                .map(|x| ((x % period) as f32 + 0.5 - half).powi(2))
                .collect();
            fill_with(scene, band_rows, finish, |y, ts| {
                let dy2 = ((y % period) as f32 + 0.5 - half).powi(2);
                for (t, dx2) in ts.iter_mut().zip(&dx2) {
                    *t = u16::from(dx2 + dy2 < r2) << 8;
                }
            })
        }
        Background::Noise => {
            // Value noise: random levels on a lattice of `period` pixels, blended with
            // smoothstep weights (bilinear blending alone shows the lattice). Each row first
            // blends two lattice rows vertically, then each pixel two of those columns.
            let gw = scene.width / period + 2;
            let gh = scene.height / period + 2;
            let lattice: Vec<i32> = (0..gw * gh)
                .map(|i| (((mix64(bg.lattice_seed ^ i as u64) & 0xFF) * 257) >> 8) as i32)
                .collect();
            let smooth = |offset: u32| -> i32 {
                let f = offset as f32 / period as f32;
                (f * f * (3.0 - 2.0 * f) * 256.0) as i32
            };
            let weights: Vec<i32> = (0..period).map(smooth).collect();
            let gw = gw as usize;
            let mut blended = vec![0i32; gw];
            fill_with(scene, band_rows, finish, |y, ts| {
                let (gy, fy) = ((y / period) as usize, smooth(y % period));
                let top = lattice.get(gy * gw..(gy + 1) * gw).unwrap_or_default();
                let bottom = lattice
                    .get((gy + 1) * gw..(gy + 2) * gw)
                    .unwrap_or_default();
                for ((b, &t), &u) in blended.iter_mut().zip(top).zip(bottom) {
                    *b = t * (256 - fy) + u * fy;
                }
                // One lattice cell (`period` columns) at a time, between its two blended corners.
                for (cell, corners) in ts.chunks_mut(period as usize).zip(blended.windows(2)) {
                    let (left, right) = (corners[0], corners[1]);
                    for (t, &fx) in cell.iter_mut().zip(&weights) {
                        *t = ((left * (256 - fx) + right * fx) >> 16).clamp(0, 256) as u16;
                    }
                }
            })
        }
    }
}

/// Signed distance functions in unit space (the shape fits the unit circle; y points down).
mod sdf {
    use std::f32::consts::FRAC_1_SQRT_2;

    pub(super) fn circle(x: f32, y: f32) -> f32 {
        (x * x + y * y).sqrt() - 1.0
    }
    pub(super) fn square(x: f32, y: f32) -> f32 {
        x.abs().max(y.abs()) - 0.78
    }
    pub(super) fn diamond(x: f32, y: f32) -> f32 {
        (x.abs() + y.abs() - 1.0) * FRAC_1_SQRT_2
    }
    pub(super) fn triangle(x: f32, y: f32) -> f32 {
        // Apex up at (0, −1), base at y = 0.5.
        let s = 0.866_025_4 * x.abs() - 0.5 * y;
        y.max(s) - 0.5
    }
    pub(super) fn hexagon(x: f32, y: f32) -> f32 {
        let (ax, ay) = (x.abs(), y.abs());
        ax.max(0.5 * ax + 0.866_025_4 * ay) - 0.866_025_4
    }
    pub(super) fn ellipse(x: f32, y: f32) -> f32 {
        ((x * x + y * y / 0.36).sqrt() - 1.0) * 0.6
    }
    pub(super) fn cross(x: f32, y: f32) -> f32 {
        let (ax, ay) = (x.abs(), y.abs());
        (ax - 0.95).max(ay - 0.3).min((ax - 0.3).max(ay - 0.95))
    }
    pub(super) fn ring(x: f32, y: f32) -> f32 {
        ((x * x + y * y).sqrt() - 0.72).abs() - 0.28
    }
    pub(super) fn crescent(x: f32, y: f32) -> f32 {
        let outer = (x * x + y * y).sqrt() - 1.0;
        let (ix, iy) = (x - 0.45, y + 0.15);
        let inner = (ix * ix + iy * iy).sqrt() - 0.85;
        outer.max(-inner)
    }
    /// Inigo Quilez's exact five-pointed star, outer radius 1, inner ratio 0.45, point up.
    pub(super) fn star(x: f32, y: f32) -> f32 {
        const K1: (f32, f32) = (0.809_017, -0.587_785_24);
        const K2: (f32, f32) = (-0.809_017, -0.587_785_24);
        const RF: f32 = 0.45;
        let (mut px, mut py) = (x.abs(), -y);
        let d1 = 2.0 * (K1.0 * px + K1.1 * py).max(0.0);
        px -= d1 * K1.0;
        py -= d1 * K1.1;
        let d2 = 2.0 * (K2.0 * px + K2.1 * py).max(0.0);
        px -= d2 * K2.0;
        py -= d2 * K2.1;
        px = px.abs();
        py -= 1.0;
        let (bx, by) = (RF * -K1.1, RF * K1.0 - 1.0);
        let h = ((px * bx + py * by) / (bx * bx + by * by)).clamp(0.0, 1.0);
        let (dx, dy) = (px - bx * h, py - by * h);
        let dist = (dx * dx + dy * dy).sqrt();
        if py * bx - px * by < 0.0 { -dist } else { dist }
    }
}
/// Side of the tiles a [`Painter`] classifies as outside / inside / edge.
const TILE: u32 = 8;

/// One object, ready to paint band by band: its bounding box, the transform to its unit space
/// and its lit colour.
struct Painter<'a> {
    o: &'a Object,
    /// Radius in pixels.
    r: f32,
    /// Bounding box, clipped to the image: columns `x0..x1`, rows `y0..y1`.
    x0: u32,
    x1: u32,
    y0: u32,
    y1: u32,
    sin: f32,
    cos: f32,
    inv_r: f32,
    /// The lighting ramp 256·(1 + a·lx + b·ly) is affine in the pixel: k0 + kx·x + ky·y.
    k0: f32,
    kx: f32,
    ky: f32,
    rgb: [i32; 3],
}

impl Painter<'_> {
    fn new<'a>(o: &'a Object, scene: &Scene) -> Painter<'a> {
        let r = o.radius.max(0.5);
        let reach = r * 1.2 + 2.0;
        let (w, h) = (scene.width as f32, scene.height as f32);
        let (sin, cos) = (-o.rotation).sin_cos();
        let inv_r = 1.0 / r;
        let (a, b) = o.shade;
        let kx = 256.0 * inv_r * (a * cos + b * sin);
        let ky = 256.0 * inv_r * (b * cos - a * sin);
        Painter {
            o,
            r,
            x0: (o.cx - reach).floor().clamp(0.0, w) as u32,
            x1: (o.cx + reach).ceil().clamp(0.0, w) as u32,
            y0: (o.cy - reach).floor().clamp(0.0, h) as u32,
            y1: (o.cy + reach).ceil().clamp(0.0, h) as u32,
            sin,
            cos,
            inv_r,
            k0: 256.0 - kx * (o.cx - 0.5) - ky * (o.cy - 0.5),
            kx,
            ky,
            rgb: std::array::from_fn(|i| o.rgb[i] as i32 + scene.cast[i] as i32),
        }
    }

    /// Pixel-space point → the shape's unit space (rotated, y down).
    #[inline]
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (px, py) = ((x - self.o.cx) * self.inv_r, (y - self.o.cy) * self.inv_r);
        (self.cos * px - self.sin * py, self.sin * px + self.cos * py)
    }

    /// Paints the part of the object inside the band.
    fn paint(&self, band: &mut Band<'_>, tile: u32) {
        match self.o.shape {
            Shape::Circle => self.paint_sdf(band, tile, sdf::circle),
            Shape::Square => self.paint_sdf(band, tile, sdf::square),
            Shape::Triangle => self.paint_sdf(band, tile, sdf::triangle),
            Shape::Star => self.paint_sdf(band, tile, sdf::star),
            Shape::Hexagon => self.paint_sdf(band, tile, sdf::hexagon),
            Shape::Ellipse => self.paint_sdf(band, tile, sdf::ellipse),
            Shape::Cross => self.paint_sdf(band, tile, sdf::cross),
            Shape::Ring => self.paint_sdf(band, tile, sdf::ring),
            Shape::Diamond => self.paint_sdf(band, tile, sdf::diamond),
            Shape::Crescent => self.paint_sdf(band, tile, sdf::crescent),
        }
    }

    /// Coverage from the distance, times the lighting ramp, blended over the band.
    ///
    /// The box is walked in `tile`-pixel squares: the distance at a square's centre (the
    /// distance functions are 1-Lipschitz) tells whether the square is entirely outside
    /// (skipped), entirely inside (full coverage, no distance per pixel) or on the edge
    /// (per-pixel distance). Any tiling gives the same pixels; `tile = 1` is the plain per-pixel
    /// evaluation.
    fn paint_sdf(&self, band: &mut Band<'_>, tile: u32, sdf: impl Fn(f32, f32) -> f32) {
        let ya = self.y0.max(band.first);
        let yb = self.y1.min(band.first + band.rows());
        let stride = band.width as usize * 3;
        let lit = |shade: i32| -> [u8; 3] { self.rgb.map(|c| clamp_u8((c * shade) >> 8)) };
        for ty in (ya..yb).step_by(tile as usize) {
            let ty1 = (ty + tile).min(yb);
            for tx in (self.x0..self.x1).step_by(tile as usize) {
                let tx1 = (tx + tile).min(self.x1);
                let (hw, hh) = ((tx1 - tx) as f32 / 2.0, (ty1 - ty) as f32 / 2.0);
                let half_diagonal = (hw * hw + hh * hh).sqrt();
                let (cx, cy) = self.local(tx as f32 + hw, ty as f32 + hh);
                let centre = sdf(cx, cy) * self.r;
                if centre - half_diagonal >= 0.5 {
                    continue;
                }
                let inside = centre + half_diagonal <= -0.5;
                for y in ty..ty1 {
                    let row_start = (y - band.first) as usize * stride;
                    let span = row_start + tx as usize * 3..row_start + tx1 as usize * 3;
                    let Some(row) = band.data.get_mut(span) else {
                        continue;
                    };
                    let row_shade = self.k0 + self.ky * y as f32;
                    for (x, px) in (tx..tx1).zip(row.chunks_exact_mut(3)) {
                        let fg = lit((row_shade + self.kx * x as f32) as i32);
                        if inside {
                            px.copy_from_slice(&fg);
                            continue;
                        }
                        let (lx, ly) = self.local(x as f32 + 0.5, y as f32 + 0.5);
                        let d = sdf(lx, ly) * self.r;
                        if d >= 0.5 {
                            continue;
                        }
                        let a = ((0.5 - d).min(1.0) * 256.0) as i32;
                        for (p, &f) in px.iter_mut().zip(&fg) {
                            *p = ((*p as i32 * (256 - a) + f as i32 * a) >> 8) as u8;
                        }
                    }
                }
            }
        }
    }
}

/// Bilinear resampling to `width × height` (used for near-duplicates, ~90–98 % scale).
pub(crate) fn resize_bilinear(src: &Canvas, width: u32, height: u32) -> Canvas {
    let mut dst = Canvas::new(width, height);
    if src.width == 0 || src.height == 0 {
        return dst;
    }
    let sx = src.width as f32 / width.max(1) as f32;
    let sy = src.height as f32 / height.max(1) as f32;
    let get = |x: u32, y: u32, ch: usize| -> f32 {
        let i = (y.min(src.height - 1) as usize * src.width as usize
            + x.min(src.width - 1) as usize)
            * 3
            + ch;
        src.data.get(i).copied().unwrap_or(0) as f32
    };
    let row_len = width as usize * 3;
    if row_len == 0 {
        return dst;
    }
    for (y, row) in dst.data.chunks_exact_mut(row_len).enumerate() {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let (y0, ty) = (fy.floor() as u32, fy.fract());
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let (x0, tx) = (fx.floor() as u32, fx.fract());
            for (ch, out) in px.iter_mut().enumerate() {
                let top = get(x0, y0, ch) * (1.0 - tx) + get(x0 + 1, y0, ch) * tx;
                let bottom = get(x0, y0 + 1, ch) * (1.0 - tx) + get(x0 + 1, y0 + 1, ch) * tx;
                *out = (top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    dst
}

/// Rotates by 90°: clockwise when `clockwise`, else counter-clockwise.
pub(crate) fn rotate90(src: &Canvas, clockwise: bool) -> Canvas {
    let (w, h) = (src.width as usize, src.height as usize);
    let mut dst = Canvas::new(src.height, src.width);
    // dst is h wide and w tall.
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = if clockwise {
                (h - 1 - y, x)
            } else {
                (y, w - 1 - x)
            };
            let s = (y * w + x) * 3;
            let d = (dy * h + dx) * 3;
            dst.data[d..d + 3].copy_from_slice(&src.data[s..s + 3]);
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::super::rng::{Purpose, item_rng};
    use super::super::scene::{Color, Scene};
    use super::*;

    fn pixel(c: &Canvas, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * c.width as usize + x as usize) * 3;
        [c.data[i], c.data[i + 1], c.data[i + 2]]
    }

    #[test]
    fn sdfs_are_negative_inside_and_positive_outside() {
        type Sdf = fn(f32, f32) -> f32;
        let all: [(Shape, Sdf); 10] = [
            (Shape::Circle, sdf::circle),
            (Shape::Square, sdf::square),
            (Shape::Triangle, sdf::triangle),
            (Shape::Star, sdf::star),
            (Shape::Hexagon, sdf::hexagon),
            (Shape::Ellipse, sdf::ellipse),
            (Shape::Cross, sdf::cross),
            (Shape::Ring, sdf::ring),
            (Shape::Diamond, sdf::diamond),
            (Shape::Crescent, sdf::crescent),
        ];
        for (shape, f) in all {
            assert!(f(1.3, 1.3) > 0.0, "{shape} outside corner");
            assert!(f(0.0, 1.25) > 0.0, "{shape} below");
            let inside = match shape {
                Shape::Ring => (0.72, 0.0),
                Shape::Crescent => (-0.8, 0.0),
                Shape::Star => (0.0, -0.8),
                _ => (0.0, 0.1),
            };
            assert!(f(inside.0, inside.1) < 0.0, "{shape} inside");
        }
        assert!(sdf::ring(0.0, 0.0) > 0.0, "ring has a hole");
        assert!(
            sdf::star(0.7, 0.0) > 0.0 || sdf::star(0.0, 0.7) > 0.0,
            "star is not convex"
        );
        // The star's tip is at the top.
        assert!(sdf::star(0.0, -0.97) < 0.0 && sdf::star(0.0, 0.97) > 0.0);
    }

    #[test]
    fn main_object_colour_dominates_its_centre() {
        for i in 0..60 {
            let scene = Scene::sample(
                320,
                240,
                &crate::SizeMix::default(),
                &mut item_rng(5, i, Purpose::Scene),
            );
            let c = render(&scene);
            let m = &scene.main;
            let probe = match m.shape {
                Shape::Ring => (
                    m.cx + 0.72 * m.radius * m.rotation.cos(),
                    m.cy + 0.72 * m.radius * m.rotation.sin(),
                ),
                Shape::Crescent => (
                    m.cx - 0.8 * m.radius * m.rotation.cos(),
                    m.cy + 0.8 * m.radius * m.rotation.sin(),
                ),
                _ => (m.cx, m.cy),
            };
            let p = pixel(&c, probe.0 as u32, probe.1 as u32);
            let want = m.rgb;
            let dist: i32 = (0..3).map(|k| (p[k] as i32 - want[k] as i32).abs()).sum();
            assert!(
                dist < 90,
                "scene {i} {:?} {:?}: {p:?} vs {want:?}",
                m.shape,
                m.color
            );
        }
        assert!(Color::ALL.len() >= 10);
    }

    #[test]
    fn tiled_painting_equals_per_pixel_painting() {
        for i in 0..40 {
            let scene = Scene::sample(
                240,
                180,
                &crate::SizeMix::default(),
                &mut item_rng(8, i, Purpose::Scene),
            );
            assert_eq!(
                render_tiled(&scene, TILE),
                render_tiled(&scene, 1),
                "scene {i}"
            );
        }
    }

    #[test]
    fn rendering_is_deterministic_and_noisy() {
        let scene = Scene::sample(
            200,
            150,
            &crate::SizeMix::default(),
            &mut item_rng(1, 2, Purpose::Scene),
        );
        let a = render(&scene);
        assert_eq!(a, render(&scene));
        let distinct: std::collections::BTreeSet<[u8; 3]> = (0..150)
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .map(|(x, y)| pixel(&a, x, y))
            .collect();
        assert!(distinct.len() > 100, "only {} colours", distinct.len());
    }

    #[test]
    fn rotation_and_resize_geometry() {
        let scene = Scene::sample(
            40,
            30,
            &crate::SizeMix::default(),
            &mut item_rng(1, 3, Purpose::Scene),
        );
        let c = render(&scene);
        let cw = rotate90(&c, true);
        assert_eq!((cw.width, cw.height), (30, 40));
        assert_eq!(pixel(&cw, 29, 0), pixel(&c, 0, 0));
        let ccw = rotate90(&c, false);
        assert_eq!(pixel(&ccw, 0, 39), pixel(&c, 0, 0));
        assert_eq!(rotate90(&cw, false), c);
        let small = resize_bilinear(&c, 36, 27);
        assert_eq!(small.data.len(), 36 * 27 * 3);
        let same = resize_bilinear(&c, 40, 30);
        assert_eq!(same, c);
    }
}
