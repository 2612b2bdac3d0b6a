//! Scene descriptions: what is in a synthetic image, and the ground-truth [`Labels`].
//!
//! A [`Scene`] is one *main object* (the largest, drawn last, so always fully visible) plus 0–3
//! smaller distractors, each a [`Shape`] in a named [`Color`], on a textured [`Background`].
//! Sampling is pure: the same RNG stream gives the same scene. Image sizes follow a web-like
//! lognormal spread ([`web_size`]).

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use super::config::SizeMix;
use super::rng::{ItemRng, pick, weighted};

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $str:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in a fixed order.
            pub const ALL: [$name; [$($str),+].len()] = [$($name::$variant),+];

            /// The label string (snake_case), as stored in sidecars and label columns.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $str),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// The shape of an object.
    Shape {
        /// A disc.
        Circle => "circle",
        /// An axis-aligned square (tilted at most ±17°).
        Square => "square",
        /// An equilateral triangle pointing up.
        Triangle => "triangle",
        /// A five-pointed star.
        Star => "star",
        /// A regular hexagon.
        Hexagon => "hexagon",
        /// An ellipse with axis ratio 0.6.
        Ellipse => "ellipse",
        /// A plus-shaped cross.
        Cross => "cross",
        /// An annulus.
        Ring => "ring",
        /// A square standing on a corner.
        Diamond => "diamond",
        /// A crescent moon.
        Crescent => "crescent",
    }
}

named_enum! {
    /// A named colour.
    Color {
        /// Red.
        Red => "red",
        /// Green.
        Green => "green",
        /// Blue.
        Blue => "blue",
        /// Yellow.
        Yellow => "yellow",
        /// Orange.
        Orange => "orange",
        /// Purple.
        Purple => "purple",
        /// Pink.
        Pink => "pink",
        /// Cyan.
        Cyan => "cyan",
        /// White.
        White => "white",
        /// Black.
        Black => "black",
        /// Brown.
        Brown => "brown",
        /// Gray.
        Gray => "gray",
    }
}

named_enum! {
    /// Size class of the main object relative to the image's shortest side.
    SizeClass {
        /// Diameter 20–30 % of the shortest side.
        Small => "small",
        /// Diameter 36–50 % of the shortest side.
        Medium => "medium",
        /// Diameter 58–76 % of the shortest side.
        Large => "large",
    }
}

named_enum! {
    /// Where the main object's centre is, on a 3×3 grid.
    Position {
        /// Upper left cell.
        TopLeft => "top_left",
        /// Upper middle cell.
        Top => "top",
        /// Upper right cell.
        TopRight => "top_right",
        /// Middle left cell.
        Left => "left",
        /// The centre.
        Center => "center",
        /// Middle right cell.
        Right => "right",
        /// Lower left cell.
        BottomLeft => "bottom_left",
        /// Lower middle cell.
        Bottom => "bottom",
        /// Lower right cell.
        BottomRight => "bottom_right",
    }
}

named_enum! {
    /// The background texture.
    Background {
        /// One colour with sensor noise.
        Plain => "plain",
        /// A linear gradient between two colours.
        Gradient => "gradient",
        /// Stripes at some angle.
        Stripes => "stripes",
        /// A checkerboard.
        Checkerboard => "checkerboard",
        /// Polka dots on a grid.
        Dots => "dots",
        /// Smooth value noise (clouds).
        Noise => "noise",
    }
}

impl Color {
    /// The nominal sRGB value (objects are drawn with small jitter and shading around it).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 30, 35],
            Color::Green => [40, 170, 60],
            Color::Blue => [35, 70, 215],
            Color::Yellow => [245, 215, 35],
            Color::Orange => [245, 130, 20],
            Color::Purple => [130, 50, 170],
            Color::Pink => [245, 130, 185],
            Color::Cyan => [40, 200, 220],
            Color::White => [245, 245, 245],
            Color::Black => [20, 20, 20],
            Color::Brown => [125, 75, 35],
            Color::Gray => [128, 128, 128],
        }
    }
}

impl Position {
    /// The cell's centre as fractions of width and height.
    fn anchor(self) -> (f32, f32) {
        let col = match self {
            Position::TopLeft | Position::Left | Position::BottomLeft => 0.25,
            Position::Top | Position::Center | Position::Bottom => 0.5,
            Position::TopRight | Position::Right | Position::BottomRight => 0.75,
        };
        let row = match self {
            Position::TopLeft | Position::Top | Position::TopRight => 0.25,
            Position::Left | Position::Center | Position::Right => 0.5,
            Position::BottomLeft | Position::Bottom | Position::BottomRight => 0.75,
        };
        (col, row)
    }
}

/// Ground truth of one pair, always about the upright scene and its main object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    /// Shape of the main object.
    #[serde(rename = "label_shape")]
    pub shape: Shape,
    /// Colour of the main object.
    #[serde(rename = "label_color")]
    pub color: Color,
    /// Size class of the main object.
    #[serde(rename = "label_size")]
    pub size: SizeClass,
    /// Position of the main object.
    #[serde(rename = "label_position")]
    pub position: Position,
    /// Objects drawn (main + distractors), 1–4.
    pub num_objects: u8,
    /// Background texture.
    pub background: Background,
}

impl Labels {
    /// The zero-shot class: `"<color> <shape>"`, e.g. `"red circle"` (12 × 10 = 120 classes).
    pub fn class_name(&self) -> String {
        format!("{} {}", self.color, self.shape)
    }
}

/// One object to draw. Coordinates are in pixels of the upright image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Object {
    pub shape: Shape,
    pub color: Color,
    /// The colour actually drawn (nominal colour with jitter).
    pub rgb: [u8; 3],
    pub cx: f32,
    pub cy: f32,
    /// Half extent: the shape fits in a circle of this radius (before rotation margins).
    pub radius: f32,
    /// Rotation in radians.
    pub rotation: f32,
    /// Direction and strength of the lighting ramp across the object.
    pub shade: (f32, f32),
}

/// Background pattern parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BackgroundSpec {
    pub kind: Background,
    pub c0: [u8; 3],
    pub c1: [u8; 3],
    /// Angle of gradients and stripes, radians.
    pub angle: f32,
    /// Stripe period, checker cell, dot spacing or noise grid, in pixels.
    pub period: u32,
    /// Dot radius as a fraction of the spacing.
    pub dot_radius: f32,
    /// Seed of the value-noise lattice.
    pub lattice_seed: u64,
}

/// Everything needed to draw one image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scene {
    pub width: u32,
    pub height: u32,
    pub labels: Labels,
    pub main: Object,
    /// Drawn before the main object.
    pub distractors: Vec<Object>,
    pub background: BackgroundSpec,
    /// Per-channel sensor noise amplitude (± this many levels).
    pub noise_amp: u8,
    pub noise_seed: u64,
    /// Mild colour cast added to every pixel.
    pub cast: [i16; 3],
}

/// Common aspect ratios of web images (long side / short side) and their weights.
const ASPECTS: [(f32, u32); 7] = [
    (1.0, 15),
    (4.0 / 3.0, 30),
    (1.5, 25),
    (16.0 / 9.0, 12),
    (1.25, 8),
    (2.0, 4),
    (1.6, 6),
];

/// Longest side of any clean image.
pub(crate) const MAX_SIDE: u32 = 2000;
/// Shortest side of any clean image.
pub(crate) const MIN_SIDE: u32 = 64;

/// A web-like image size: shortest side lognormal with median 375 px (σ = 0.42), 2 % small
/// thumbnails (median 100 px), shortest side ≥ 64, longest side ≤ 2,000, common aspect ratios in
/// landscape (70 %) or portrait orientation, a third of them cropped slightly off-ratio.
pub(crate) fn web_size(rng: &mut ItemRng) -> (u32, u32) {
    let (median, sigma, hi): (f32, f32, f32) = if rng.random_bool(0.02) {
        (100.0, 0.3, 160.0)
    } else {
        (375.0, 0.42, MAX_SIDE as f32)
    };
    let short = match LogNormal::new(median.ln(), sigma) {
        Ok(d) => d.sample(rng),
        Err(_) => median,
    }
    .clamp(MIN_SIDE as f32, hi);
    let mut aspect = weighted(rng, &ASPECTS);
    if rng.random_bool(0.33) {
        aspect = (aspect * rng.random_range(0.94..1.06f32)).max(1.0);
    }
    let mut long = short * aspect;
    let mut short = short;
    if long > MAX_SIDE as f32 {
        short *= MAX_SIDE as f32 / long;
        long = MAX_SIDE as f32;
    }
    let (s, l) = (
        (short.round() as u32).max(MIN_SIDE),
        (long.round() as u32).clamp(MIN_SIDE, MAX_SIDE),
    );
    if rng.random_bool(0.7) { (l, s) } else { (s, l) }
}

/// Size of a `tiny` item: shortest side 8–40 px, aspect ≤ 1.5.
pub(crate) fn tiny_size(rng: &mut ItemRng) -> (u32, u32) {
    let short = rng.random_range(8..=40u32);
    let long = ((short as f32) * rng.random_range(1.0..1.5f32)).round() as u32;
    if rng.random_bool(0.5) {
        (long, short)
    } else {
        (short, long)
    }
}

/// Size of an `extreme_aspect` item: shortest side 64–100 px, aspect 8:1 to 20:1, longest
/// side ≤ 2,000 (e.g. 1600×80).
pub(crate) fn extreme_size(rng: &mut ItemRng) -> (u32, u32) {
    let short = rng.random_range(64..=100u32);
    let long = (short * rng.random_range(8..=20u32)).min(MAX_SIDE);
    if rng.random_bool(0.75) {
        (long, short)
    } else {
        (short, long)
    }
}

/// Minimum RGB distance between the main object's colour and each background colour.
const MIN_CONTRAST: f32 = 110.0;

fn rgb_distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    let d: i32 = (0..3).map(|i| (a[i] as i32 - b[i] as i32).pow(2)).sum();
    (d as f32).sqrt()
}

fn jitter(rgb: [u8; 3], amount: i32, rng: &mut ItemRng) -> [u8; 3] {
    rgb.map(|c| (c as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// A muted random colour (real backgrounds are rarely saturated).
fn muted_color(rng: &mut ItemRng) -> [u8; 3] {
    let raw: [u8; 3] = [rng.random(), rng.random(), rng.random()];
    let gray = (raw.iter().map(|&c| c as f32).sum::<f32>()) / 3.0;
    let sat = rng.random_range(0.15..0.8f32);
    raw.map(|c| (gray + (c as f32 - gray) * sat).round().clamp(0.0, 255.0) as u8)
}

/// A background colour far enough from `avoid` for the main object to stand out.
fn contrasting_color(avoid: [u8; 3], rng: &mut ItemRng) -> [u8; 3] {
    for _ in 0..32 {
        let c = muted_color(rng);
        if rgb_distance(c, avoid) >= MIN_CONTRAST {
            return c;
        }
    }
    // Fallback: push away from the object's brightness.
    let bright = avoid.iter().map(|&c| c as u32).sum::<u32>() > 3 * 128;
    if bright {
        [40, 45, 50]
    } else {
        [215, 210, 200]
    }
}

/// Rotation limit: small enough that a square never looks like a diamond.
const MAX_ROTATION: f32 = 0.3;

fn new_object(
    shape: Shape,
    color: Color,
    cx: f32,
    cy: f32,
    radius: f32,
    rng: &mut ItemRng,
) -> Object {
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    let strength = rng.random_range(0.0..0.12f32);
    Object {
        shape,
        color,
        rgb: jitter(color.rgb(), 12, rng),
        cx,
        cy,
        radius,
        rotation: rng.random_range(-MAX_ROTATION..MAX_ROTATION),
        shade: (angle.cos() * strength, angle.sin() * strength),
    }
}

impl Scene {
    /// Samples a scene of the given size, the main object's size class drawn from `sizes`.
    pub(crate) fn sample(width: u32, height: u32, sizes: &SizeMix, rng: &mut ItemRng) -> Scene {
        let (w, h) = (width as f32, height as f32);
        let m = w.min(h);
        let shape = pick(rng, &Shape::ALL);
        let color = pick(rng, &Color::ALL);
        let size = weighted(rng, &sizes.weights());
        let radius = m * match size {
            SizeClass::Small => rng.random_range(0.10..0.15f32),
            SizeClass::Medium => rng.random_range(0.18..0.25f32),
            SizeClass::Large => rng.random_range(0.29..0.38f32),
        };
        let position = if size == SizeClass::Large {
            pick(
                rng,
                &[
                    Position::Center,
                    Position::Left,
                    Position::Right,
                    Position::Top,
                    Position::Bottom,
                ],
            )
        } else {
            pick(rng, &Position::ALL)
        };
        let (ax, ay) = position.anchor();
        let place = |anchor: f32, extent: f32, jit: f32| {
            let c = (anchor + jit) * extent;
            let margin = radius * 1.05;
            if extent > 2.0 * margin {
                c.clamp(margin, extent - margin)
            } else {
                extent / 2.0
            }
        };
        let jx = rng.random_range(-0.04..0.04f32);
        let jy = rng.random_range(-0.04..0.04f32);
        let main = new_object(
            shape,
            color,
            place(ax, w, jx),
            place(ay, h, jy),
            radius,
            rng,
        );

        let wanted = weighted(rng, &[(0usize, 35), (1, 30), (2, 20), (3, 15)]);
        let mut distractors: Vec<Object> = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            let mut d_shape = pick(rng, &Shape::ALL);
            let d_color = pick(rng, &Color::ALL);
            if d_shape == shape && d_color == color {
                d_shape = Shape::ALL[(d_shape as usize + 1) % Shape::ALL.len()];
            }
            let r = radius * rng.random_range(0.3..0.65f32);
            for _ in 0..10 {
                let cx = if w > 2.0 * r {
                    rng.random_range(r..w - r)
                } else {
                    w / 2.0
                };
                let cy = if h > 2.0 * r {
                    rng.random_range(r..h - r)
                } else {
                    h / 2.0
                };
                let clear_of_main = (cx - main.cx).hypot(cy - main.cy) > (radius + r) * 0.95;
                let clear_of_others = distractors
                    .iter()
                    .all(|o| (cx - o.cx).hypot(cy - o.cy) > (o.radius + r) * 0.8);
                if clear_of_main && clear_of_others {
                    distractors.push(new_object(d_shape, d_color, cx, cy, r, rng));
                    break;
                }
            }
        }

        let kind = weighted(
            rng,
            &[
                (Background::Plain, 10),
                (Background::Gradient, 25),
                (Background::Stripes, 15),
                (Background::Checkerboard, 12),
                (Background::Dots, 13),
                (Background::Noise, 25),
            ],
        );
        let c0 = contrasting_color(main.rgb, rng);
        let c1 = contrasting_color(main.rgb, rng);
        let background = BackgroundSpec {
            kind,
            c0,
            c1,
            angle: rng.random_range(0.0..std::f32::consts::PI),
            period: match kind {
                Background::Noise => rng.random_range(16..=72),
                Background::Dots => rng.random_range(12..=48),
                _ => rng.random_range(8..=64),
            },
            dot_radius: rng.random_range(0.15..0.4f32),
            lattice_seed: rng.random(),
        };
        let labels = Labels {
            shape,
            color,
            size,
            position,
            num_objects: 1 + distractors.len() as u8,
            background: kind,
        };
        Scene {
            width,
            height,
            labels,
            main,
            distractors,
            background,
            noise_amp: rng.random_range(1..=6),
            noise_seed: rng.random(),
            cast: [0; 3].map(|_: i16| rng.random_range(-10..=10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::{Purpose, item_rng};
    use super::*;

    #[test]
    fn enums_are_large_enough_and_named() {
        assert!(Shape::ALL.len() >= 8);
        assert!(Color::ALL.len() >= 10);
        assert_eq!(Position::TopLeft.as_str(), "top_left");
        assert_eq!(
            serde_json::to_string(&Position::BottomRight).unwrap(),
            "\"bottom_right\""
        );
    }

    #[test]
    fn size_distribution_is_web_like() {
        let sizes: Vec<(u32, u32)> = (0..500)
            .map(|i| web_size(&mut item_rng(3, i, Purpose::Scene)))
            .collect();
        let mut short: Vec<u32> = sizes.iter().map(|&(w, h)| w.min(h)).collect();
        short.sort_unstable();
        let median = short[short.len() / 2];
        let (q1, q3) = (short[short.len() / 4], short[3 * short.len() / 4]);
        assert!(
            (330..=420).contains(&median),
            "median shortest side {median}"
        );
        assert!(
            q1 >= 230 && q3 <= 560 && q3 - q1 >= 120,
            "quartiles {q1}..{q3}"
        );
        assert!(
            sizes
                .iter()
                .all(|&(w, h)| w.min(h) >= MIN_SIDE && w.max(h) <= MAX_SIDE)
        );
        assert!(
            sizes.iter().any(|&(w, h)| w.max(h) >= 1000),
            "no large images"
        );
        assert!(
            sizes
                .iter()
                .all(|&(w, h)| w.max(h) as f32 / w.min(h) as f32 <= 2.2)
        );
        let square = sizes.iter().filter(|&&(w, h)| w == h).count();
        let portrait = sizes.iter().filter(|&&(w, h)| w < h).count();
        assert!(
            square > 20 && portrait > 50 && portrait < 250,
            "square {square}, portrait {portrait}"
        );
    }

    #[test]
    fn dirt_sizes_are_in_range() {
        for i in 0..200 {
            let (w, h) = tiny_size(&mut item_rng(1, i, Purpose::Dirt));
            assert!((8..=40).contains(&w.min(h)) && w.max(h) <= 60);
            let (w, h) = extreme_size(&mut item_rng(1, i, Purpose::Dirt));
            assert!(
                (64..=100).contains(&w.min(h)) && w.max(h) / w.min(h) >= 8 && w.max(h) <= MAX_SIDE
            );
        }
    }

    #[test]
    fn main_object_is_largest_and_contrasts_with_background() {
        for i in 0..300 {
            let s = Scene::sample(
                500,
                375,
                &SizeMix::default(),
                &mut item_rng(9, i, Purpose::Scene),
            );
            assert_eq!(s.labels.num_objects as usize, 1 + s.distractors.len());
            assert!(s.distractors.iter().all(|d| d.radius < s.main.radius));
            assert!(
                s.distractors
                    .iter()
                    .all(|d| (d.shape, d.color) != (s.main.shape, s.main.color))
            );
            assert!(
                rgb_distance(s.background.c0, s.main.rgb) >= MIN_CONTRAST - 1.0
                    || s.background.c0 == [40, 45, 50]
                    || s.background.c0 == [215, 210, 200]
            );
            assert!(
                s.main.cx >= 0.0 && s.main.cx <= 500.0 && s.main.cy >= 0.0 && s.main.cy <= 375.0
            );
        }
    }
}
