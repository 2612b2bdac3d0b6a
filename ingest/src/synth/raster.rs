//! Drawing scenes into RGB8 pixels, fast enough for ~1,000 images per second per core.
//!
//! Backgrounds are one pass over the image; each object is drawn over its bounding box only, from
//! a signed distance function (antialiased edges: coverage = ½ − distance, clamped). Sensor noise
//! comes from a counter-based hash of the pixel coordinates, not from an RNG object per pixel.

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

fn render_tiled(scene: &Scene, tile: u32) -> Canvas {
    let mut canvas = Canvas::new(scene.width, scene.height);
    fill_background(&mut canvas, scene);
    for object in &scene.distractors {
        paint_object(&mut canvas, object, scene, tile);
    }
    paint_object(&mut canvas, &scene.main, scene, tile);
    canvas
}

/// Bytes in the shared noise table (a power of two).
const NOISE_TABLE: usize = 1 << 20;

/// A fixed table of uniform noise bytes, built once from [`mix64`].
fn noise_table() -> &'static [i8] {
    static TABLE: OnceLock<Vec<i8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..NOISE_TABLE / 8)
            .flat_map(|i| mix64(0x6E_6F69_7365 ^ i as u64).to_le_bytes())
            .map(|b| b as i8)
            .collect()
    })
}

/// Per-pixel sensor noise: row `y` reads the shared table from an offset hashed from
/// `(seed, y)`, so noise is a pure function of `(seed, x, y)`, scaled to `±amp`.
struct Noise {
    seed: u64,
    amp: i32,
    table: &'static [i8],
}

impl Noise {
    fn new(seed: u64, amp: u8) -> Noise {
        Noise {
            seed,
            amp: amp as i32,
            table: noise_table(),
        }
    }

    /// Table offset of row `y`.
    #[inline]
    fn row(&self, y: u32) -> usize {
        mix64(self.seed ^ y as u64) as usize
    }

    /// `out[j] = base[j] + noise` for a whole row (pixel 0 first), clamped to `0..=255`.
    fn add_row(&self, row: usize, base: &[i16], out: &mut [u8]) {
        let start = row & (NOISE_TABLE - 1);
        let amp = self.amp as i16;
        match self.table.get(start..start + base.len()) {
            Some(noise) => {
                for ((o, &b), &n) in out.iter_mut().zip(base).zip(noise) {
                    *o = (b + ((n as i16 * amp) >> 7)).clamp(0, 255) as u8;
                }
            }
            None => {
                for (j, (o, &b)) in out.iter_mut().zip(base).enumerate() {
                    let n = self
                        .table
                        .get((start + j) & (NOISE_TABLE - 1))
                        .copied()
                        .unwrap_or(0);
                    *o = (b + ((n as i16 * amp) >> 7)).clamp(0, 255) as u8;
                }
            }
        }
    }

    /// Noise of channel `ch` of pixel `x` in a row starting at `row`.
    #[inline]
    fn at(&self, row: usize, x: u32, ch: usize) -> i32 {
        let v = self
            .table
            .get((row + 3 * x as usize + ch) & (NOISE_TABLE - 1))
            .copied()
            .unwrap_or(0);
        (v as i32 * self.amp) >> 7
    }
}

#[inline]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Fills the canvas with `c0 + (c1 − c0)·t/256 + noise + cast`, where `row(y, ts)` writes the
/// mix `t` (`0..=256`) of every pixel of row `y` into `ts`.
fn fill_with(canvas: &mut Canvas, scene: &Scene, mut row_mix: impl FnMut(u32, &mut [i32])) {
    let bg = &scene.background;
    let c0: [i32; 3] = std::array::from_fn(|i| bg.c0[i] as i32 + scene.cast[i] as i32);
    let d: [i32; 3] = std::array::from_fn(|i| bg.c1[i] as i32 - bg.c0[i] as i32);
    // The colour of every mix level, so a pixel costs one lookup before the noise.
    let palette: Vec<[i16; 3]> = (0..=256)
        .map(|t| std::array::from_fn(|ch| (c0[ch] + ((d[ch] * t) >> 8)) as i16))
        .collect();
    let noise = Noise::new(scene.noise_seed, scene.noise_amp);
    let row_len = canvas.width as usize * 3;
    if row_len == 0 {
        return;
    }
    let mut ts = vec![0i32; canvas.width as usize];
    let mut base = vec![0i16; row_len];
    for (y, row) in canvas.data.chunks_exact_mut(row_len).enumerate() {
        let y = y as u32;
        row_mix(y, &mut ts);
        for (b, &t) in base.chunks_exact_mut(3).zip(&ts) {
            if let Some(c) = palette.get(t.clamp(0, 256) as usize) {
                b.copy_from_slice(c);
            }
        }
        noise.add_row(noise.row(y), &base, row);
    }
}

fn fill_background(canvas: &mut Canvas, scene: &Scene) {
    let bg = scene.background;
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    let (sa, ca) = bg.angle.sin_cos();
    let period = bg.period.max(2);
    let columns = 0..canvas.width;
    match bg.kind {
        Background::Plain => fill_with(canvas, scene, |_, _| {}),
        Background::Gradient => {
            let corners = [0.0, w * ca, h * sa, w * ca + h * sa];
            let lo = corners.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = corners.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let k = 256.0 / (hi - lo).max(1.0);
            fill_with(canvas, scene, |y, ts| {
                let start = (y as f32 * sa - lo) * k;
                for (x, t) in ts.iter_mut().enumerate() {
                    *t = (start + x as f32 * ca * k) as i32;
                }
            });
        }
        Background::Stripes => {
            let inv = 2.0 / period as f32;
            fill_with(canvas, scene, |y, ts| {
                let start = y as f32 * sa * inv;
                for (x, t) in ts.iter_mut().enumerate() {
                    let u = start + x as f32 * ca * inv;
                    *t = if (u.floor() as i64) & 1 == 1 { 256 } else { 0 };
                }
            });
        }
        Background::Checkerboard => {
            let cells: Vec<u32> = columns.map(|x| x / period).collect();
            fill_with(canvas, scene, |y, ts| {
                let row_cell = y / period;
                for (t, cell) in ts.iter_mut().zip(&cells) {
                    *t = if (cell + row_cell) & 1 == 1 { 256 } else { 0 };
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
            fill_with(canvas, scene, |y, ts| {
                let dy2 = ((y % period) as f32 + 0.5 - half).powi(2);
                for (t, dx2) in ts.iter_mut().zip(&dx2) {
                    *t = if dx2 + dy2 < r2 { 256 } else { 0 };
                }
            });
        }
        Background::Noise => {
            // Value noise: random levels on a lattice of `period` pixels, blended with
            // smoothstep weights (bilinear blending alone shows the lattice).
            let gw = canvas.width / period + 2;
            let gh = canvas.height / period + 2;
            let lattice: Vec<i32> = (0..gw * gh)
                .map(|i| (((mix64(bg.lattice_seed ^ i as u64) & 0xFF) * 257) >> 8) as i32)
                .collect();
            let at = |gx: u32, gy: u32| lattice.get((gy * gw + gx) as usize).copied().unwrap_or(0);
            let smooth = |offset: u32| -> i32 {
                let f = offset as f32 / period as f32;
                (f * f * (3.0 - 2.0 * f) * 256.0) as i32
            };
            let cols: Vec<(u32, i32)> = columns.map(|x| (x / period, smooth(x % period))).collect();
            fill_with(canvas, scene, |y, ts| {
                let (gy, fy) = (y / period, smooth(y % period));
                for (t, &(gx, fx)) in ts.iter_mut().zip(&cols) {
                    let top = at(gx, gy) * (256 - fx) + at(gx + 1, gy) * fx;
                    let bottom = at(gx, gy + 1) * (256 - fx) + at(gx + 1, gy + 1) * fx;
                    *t = (top * (256 - fy) + bottom * fy) >> 16;
                }
            });
        }
    }
}

/// Signed distance functions in unit space (the shape fits the unit circle; y points down).
mod sdf {
    use std::f32::consts::FRAC_1_SQRT_2;

    pub fn circle(x: f32, y: f32) -> f32 {
        (x * x + y * y).sqrt() - 1.0
    }
    pub fn square(x: f32, y: f32) -> f32 {
        x.abs().max(y.abs()) - 0.78
    }
    pub fn diamond(x: f32, y: f32) -> f32 {
        (x.abs() + y.abs() - 1.0) * FRAC_1_SQRT_2
    }
    pub fn triangle(x: f32, y: f32) -> f32 {
        // Apex up at (0, −1), base at y = 0.5.
        let s = 0.866_025_4 * x.abs() - 0.5 * y;
        y.max(s) - 0.5
    }
    pub fn hexagon(x: f32, y: f32) -> f32 {
        let (ax, ay) = (x.abs(), y.abs());
        ax.max(0.5 * ax + 0.866_025_4 * ay) - 0.866_025_4
    }
    pub fn ellipse(x: f32, y: f32) -> f32 {
        ((x * x + y * y / 0.36).sqrt() - 1.0) * 0.6
    }
    pub fn cross(x: f32, y: f32) -> f32 {
        let (ax, ay) = (x.abs(), y.abs());
        (ax - 0.95).max(ay - 0.3).min((ax - 0.3).max(ay - 0.95))
    }
    pub fn ring(x: f32, y: f32) -> f32 {
        ((x * x + y * y).sqrt() - 0.72).abs() - 0.28
    }
    pub fn crescent(x: f32, y: f32) -> f32 {
        let outer = (x * x + y * y).sqrt() - 1.0;
        let (ix, iy) = (x - 0.45, y + 0.15);
        let inner = (ix * ix + iy * iy).sqrt() - 0.85;
        outer.max(-inner)
    }
    /// Inigo Quilez's exact five-pointed star, outer radius 1, inner ratio 0.45, point up.
    pub fn star(x: f32, y: f32) -> f32 {
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

fn paint_object(canvas: &mut Canvas, object: &Object, scene: &Scene, tile: u32) {
    match object.shape {
        Shape::Circle => paint_sdf(canvas, object, scene, tile, sdf::circle),
        Shape::Square => paint_sdf(canvas, object, scene, tile, sdf::square),
        Shape::Triangle => paint_sdf(canvas, object, scene, tile, sdf::triangle),
        Shape::Star => paint_sdf(canvas, object, scene, tile, sdf::star),
        Shape::Hexagon => paint_sdf(canvas, object, scene, tile, sdf::hexagon),
        Shape::Ellipse => paint_sdf(canvas, object, scene, tile, sdf::ellipse),
        Shape::Cross => paint_sdf(canvas, object, scene, tile, sdf::cross),
        Shape::Ring => paint_sdf(canvas, object, scene, tile, sdf::ring),
        Shape::Diamond => paint_sdf(canvas, object, scene, tile, sdf::diamond),
        Shape::Crescent => paint_sdf(canvas, object, scene, tile, sdf::crescent),
    }
}

/// Side of the tiles `paint_sdf` classifies as outside / inside / edge.
const TILE: u32 = 8;

/// Paints one object over its bounding box: coverage from the distance, a lighting ramp, noise.
///
/// The box is walked in `tile`-pixel squares: the distance at a square's centre (the distance
/// functions are 1-Lipschitz) tells whether the square is entirely outside (skipped), entirely
/// inside (full coverage) or on the edge (per-pixel distance). `tile = 1` is the plain per-pixel
/// evaluation and gives the same pixels.
fn paint_sdf(
    canvas: &mut Canvas,
    o: &Object,
    scene: &Scene,
    tile: u32,
    sdf: impl Fn(f32, f32) -> f32,
) {
    let r = o.radius.max(0.5);
    let reach = r * 1.2 + 2.0;
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    let x0 = (o.cx - reach).floor().clamp(0.0, w) as u32;
    let x1 = (o.cx + reach).ceil().clamp(0.0, w) as u32;
    let y0 = (o.cy - reach).floor().clamp(0.0, h) as u32;
    let y1 = (o.cy + reach).ceil().clamp(0.0, h) as u32;
    let (sin, cos) = (-o.rotation).sin_cos();
    let inv_r = 1.0 / r;
    let local = |x: f32, y: f32| {
        let (px, py) = ((x - o.cx) * inv_r, (y - o.cy) * inv_r);
        (cos * px - sin * py, sin * px + cos * py)
    };
    let rgb: [i32; 3] = std::array::from_fn(|i| o.rgb[i] as i32 + scene.cast[i] as i32);
    let noise = Noise::new(scene.noise_seed, scene.noise_amp);
    let stride = canvas.width as usize * 3;
    let tile = tile.max(1);
    for ty in (y0..y1).step_by(tile as usize) {
        let ty1 = (ty + tile).min(y1);
        for tx in (x0..x1).step_by(tile as usize) {
            let tx1 = (tx + tile).min(x1);
            let (hw, hh) = ((tx1 - tx) as f32 / 2.0, (ty1 - ty) as f32 / 2.0);
            let half_diagonal = (hw * hw + hh * hh).sqrt();
            let (cx, cy) = local(tx as f32 + hw, ty as f32 + hh);
            let centre = sdf(cx, cy) * r;
            if centre - half_diagonal >= 0.5 {
                continue;
            }
            let inside = centre + half_diagonal <= -0.5;
            for y in ty..ty1 {
                let row_start = y as usize * stride;
                let Some(row) = canvas.data.get_mut(row_start..row_start + stride) else {
                    continue;
                };
                let noise_row = noise.row(y);
                for x in tx..tx1 {
                    let (lx, ly) = local(x as f32 + 0.5, y as f32 + 0.5);
                    let a = if inside {
                        256
                    } else {
                        let d = sdf(lx, ly) * r;
                        if d >= 0.5 {
                            continue;
                        }
                        ((0.5 - d).min(1.0) * 256.0) as i32
                    };
                    let shade = (256.0 * (1.0 + o.shade.0 * lx + o.shade.1 * ly)) as i32;
                    let i = x as usize * 3;
                    let Some(px) = row.get_mut(i..i + 3) else {
                        continue;
                    };
                    for ch in 0..3 {
                        let fg =
                            clamp_u8(((rgb[ch] * shade) >> 8) + noise.at(noise_row, x, ch)) as i32;
                        px[ch] = ((px[ch] as i32 * (256 - a) + fg * a) >> 8) as u8;
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
            let scene = Scene::sample(320, 240, &mut item_rng(5, i, Purpose::Scene));
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
            let scene = Scene::sample(240, 180, &mut item_rng(8, i, Purpose::Scene));
            assert_eq!(
                render_tiled(&scene, TILE),
                render_tiled(&scene, 1),
                "scene {i}"
            );
        }
    }

    #[test]
    fn rendering_is_deterministic_and_noisy() {
        let scene = Scene::sample(200, 150, &mut item_rng(1, 2, Purpose::Scene));
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
        let scene = Scene::sample(40, 30, &mut item_rng(1, 3, Purpose::Scene));
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
