//! Captions: varied, web-like descriptions of the scene, and the caption dirt.
//!
//! A clean caption always names the main object's colour and shape (sometimes with a synonym)
//! and has at least three words, so default caption filters accept it. It comes from one of
//! [`TEMPLATES`] (alt text, stock photo, product listing, social post, tag list, …) and then gets
//! web noise: casing, typos, hashtags, emoji, file names, trailing site names, HTML entities.

use rand::Rng;

use super::config::SizeMix;
use super::rng::{ItemRng, pick, pick_slice};
use super::scene::{Background, Color, Object, Position, Scene, Shape, SizeClass};

/// Facts a caption may mention.
struct Facts {
    color: Color,
    shape: Shape,
    size: SizeClass,
    position: Position,
    background: Background,
    others: Vec<(Color, Shape)>,
}

impl Facts {
    fn of(scene: &Scene) -> Facts {
        let l = scene.labels;
        Facts {
            color: l.color,
            shape: l.shape,
            size: l.size,
            position: l.position,
            background: l.background,
            others: scene
                .distractors
                .iter()
                .map(|o: &Object| (o.color, o.shape))
                .collect(),
        }
    }
}

/// Caption templates. Placeholders: `{color} {shape} {size} {pos} {where} {bg} {others} {n}
/// {object} {emoji} {site} {num}`; a template containing `{n}` is used only with distractors.
pub(crate) const TEMPLATES: [&str; 30] = [
    "a {color} {shape} on a {bg} background",
    "Photo: {size} {color} {shape}, {where}",
    "{color} {shape} isolated on {bg} background. Stock photo",
    "Stock image of a {size} {color} {shape} {pos}",
    "Image may contain: {color} {shape}{others}",
    "{size} {color} {shape} sticker",
    "Buy {color} {shape} wall decal - free shipping",
    "{color}, {shape}, {bg}, abstract, geometric, background",
    "close-up of a {color} {shape} {pos}",
    "A {size} {color} {shape} sits {pos}{others}.",
    "{color} {shape} icon on {bg} pattern",
    "Abstract geometric art: {color} {shape} over a {bg} backdrop",
    "vector illustration of a {color} {shape}",
    "my new {color} {shape} {emoji}",
    "{shape} in {color}, {size}, {where}",
    "Product photo: {color} {shape}-shaped {object}",
    "{color} {shape} with {n} other shapes on a {bg} background",
    "The {color} {shape} is {pos}.",
    "picture of a {color} {shape}",
    "{color} {shape} {bg} background wallpaper hd",
    "Minimalist poster featuring a {size} {color} {shape}",
    "There is a {color} {shape} {pos}{others}",
    "{color} {shape} clipart free download",
    "Handmade {color} {shape} {object}, {size} size",
    "{color} {shape} on {bg} | {site}",
    "DSC_{num}: {color} {shape} {pos}",
    "{size} {shape}, color: {color}",
    "a photo of a {color} {shape}",
    "{color} {shape} and {n} more shapes, {bg} texture",
    "Geometric {shape} in {color} tones, {where} of the frame",
];

fn color_word(c: Color, rng: &mut ItemRng) -> &'static str {
    if rng.random_bool(0.85) {
        return c.as_str();
    }
    match c {
        Color::Red => pick(rng, &["bright red", "crimson", "deep red"]),
        Color::Green => pick(rng, &["bright green", "grass green", "dark green"]),
        Color::Blue => pick(rng, &["royal blue", "deep blue", "bright blue"]),
        Color::Yellow => pick(rng, &["bright yellow", "lemon yellow", "golden yellow"]),
        Color::Orange => pick(rng, &["bright orange", "tangerine", "deep orange"]),
        Color::Purple => pick(rng, &["violet", "deep purple", "plum purple"]),
        Color::Pink => pick(rng, &["light pink", "hot pink", "pastel pink"]),
        Color::Cyan => pick(rng, &["turquoise", "aqua", "light cyan"]),
        Color::White => pick(rng, &["off-white", "snow white", "pure white"]),
        Color::Black => pick(rng, &["jet black", "dark black", "matte black"]),
        Color::Brown => pick(rng, &["chocolate brown", "dark brown", "tan brown"]),
        Color::Gray => pick(rng, &["grey", "light gray", "silver gray"]),
    }
}

fn shape_word(s: Shape, rng: &mut ItemRng) -> &'static str {
    if rng.random_bool(0.8) {
        return s.as_str();
    }
    match s {
        Shape::Circle => pick(rng, &["disc", "round dot", "circle shape"]),
        Shape::Square => pick(rng, &["square block", "square tile", "square shape"]),
        Shape::Triangle => pick(rng, &["triangular shape", "triangle sign", "pyramid shape"]),
        Shape::Star => pick(rng, &["five-pointed star", "star shape", "star icon"]),
        Shape::Hexagon => pick(rng, &["hexagonal tile", "hexagon shape", "honeycomb cell"]),
        Shape::Ellipse => pick(rng, &["oval", "oval shape", "elliptical shape"]),
        Shape::Cross => pick(rng, &["plus sign", "cross shape", "plus symbol"]),
        Shape::Ring => pick(rng, &["donut", "ring shape", "hoop"]),
        Shape::Diamond => pick(rng, &["rhombus", "diamond shape", "lozenge"]),
        Shape::Crescent => pick(rng, &["crescent moon", "half moon", "moon shape"]),
    }
}

fn size_word(s: SizeClass, rng: &mut ItemRng) -> &'static str {
    match s {
        SizeClass::Small => pick(rng, &["small", "small", "little", "tiny"]),
        SizeClass::Medium => pick(rng, &["medium", "medium-sized", "mid-size", "medium"]),
        SizeClass::Large => pick(rng, &["large", "large", "big", "huge"]),
    }
}

fn where_words(p: Position) -> &'static str {
    match p {
        Position::TopLeft => "top left",
        Position::Top => "top",
        Position::TopRight => "top right",
        Position::Left => "left",
        Position::Center => "center",
        Position::Right => "right",
        Position::BottomLeft => "bottom left",
        Position::Bottom => "bottom",
        Position::BottomRight => "bottom right",
    }
}

fn position_phrase(p: Position, rng: &mut ItemRng) -> &'static str {
    match p {
        Position::TopLeft => pick(rng, &["in the top left corner", "at the upper left"]),
        Position::Top => pick(rng, &["at the top", "near the top edge"]),
        Position::TopRight => pick(rng, &["in the top right corner", "at the upper right"]),
        Position::Left => pick(rng, &["on the left", "on the left side"]),
        Position::Center => pick(rng, &["in the center", "in the middle"]),
        Position::Right => pick(rng, &["on the right", "on the right side"]),
        Position::BottomLeft => pick(rng, &["in the bottom left corner", "at the lower left"]),
        Position::Bottom => pick(rng, &["at the bottom", "near the bottom edge"]),
        Position::BottomRight => pick(rng, &["in the bottom right corner", "at the lower right"]),
    }
}

fn background_word(b: Background, rng: &mut ItemRng) -> &'static str {
    match b {
        Background::Plain => pick(rng, &["plain", "solid", "simple"]),
        Background::Gradient => pick(rng, &["gradient", "soft gradient", "blurred"]),
        Background::Stripes => pick(rng, &["striped", "stripy", "lined"]),
        Background::Checkerboard => pick(rng, &["checkered", "checkerboard", "chequered"]),
        Background::Dots => pick(rng, &["polka dot", "dotted", "spotted"]),
        Background::Noise => pick(rng, &["textured", "mottled", "grainy"]),
    }
}

const SITES: [&str; 10] = [
    "Shutterstock",
    "Stock Photo",
    "Etsy",
    "Pinterest",
    "example.com",
    "Alamy",
    "Dreamstime.com",
    "Redbubble",
    "iStock",
    "shop.example.org",
];
const EMOJI: [&str; 10] = ["✨", "🔴", "⭐", "📸", "🎨", "👍", "🔥", "💎", "😍", "🛒"];
const OBJECTS: [&str; 8] = [
    "cushion", "coaster", "badge", "keychain", "cookie", "sticker", "pendant", "magnet",
];

fn others_phrase(f: &Facts, rng: &mut ItemRng) -> String {
    match f.others.as_slice() {
        [] => String::new(),
        [(c, s)] => format!(", next to a {} {}", c.as_str(), s.as_str()),
        more => {
            if rng.random_bool(0.5) {
                format!(" and {} other shapes", more.len())
            } else {
                let list: Vec<String> = more.iter().map(|(c, s)| format!("{c} {s}")).collect();
                format!(", {}", list.join(", "))
            }
        }
    }
}

/// `a` before a vowel becomes `an` (`a orange star` → `an orange star`).
fn fix_articles(s: &str) -> String {
    let words: Vec<&str> = s.split(' ').collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let next_vowel = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiouAEIOU".contains(c));
        match *w {
            "a" if next_vowel => out.push_str("an"),
            "A" if next_vowel => out.push_str("An"),
            _ => out.push_str(w),
        }
    }
    out
}

fn fill(template: &str, f: &Facts, rng: &mut ItemRng) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let name = &rest[open + 1..open + close];
        let value: String = match name {
            "color" => color_word(f.color, rng).to_string(),
            "shape" => shape_word(f.shape, rng).to_string(),
            "size" => size_word(f.size, rng).to_string(),
            "pos" => position_phrase(f.position, rng).to_string(),
            "where" => where_words(f.position).to_string(),
            "bg" => background_word(f.background, rng).to_string(),
            "others" => others_phrase(f, rng),
            "n" => f.others.len().to_string(),
            "object" => pick(rng, &OBJECTS).to_string(),
            "emoji" => pick(rng, &EMOJI).to_string(),
            "site" => pick(rng, &SITES).to_string(),
            "num" => format!("{:04}", rng.random_range(0..10_000)),
            other => format!("{{{other}}}"),
        };
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    fix_articles(&out)
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Swaps two adjacent letters inside one word of four or more ASCII letters (not the first
/// word, and never the label words, so the caption keeps naming the main object).
fn typo(s: &str, f: &Facts, rng: &mut ItemRng) -> String {
    let mut words: Vec<String> = s.split(' ').map(str::to_string).collect();
    let protected = [f.color.as_str(), f.shape.as_str()];
    let candidates: Vec<usize> = (1..words.len())
        .filter(|&i| {
            let w = words[i].to_lowercase();
            w.len() >= 4
                && w.bytes().all(|b| b.is_ascii_alphabetic())
                && !protected.iter().any(|p| w.contains(p))
        })
        .collect();
    if let Some(&i) = pick_slice(rng, &candidates) {
        let mut bytes = words[i].clone().into_bytes();
        let j = rng.random_range(1..bytes.len() - 1);
        bytes.swap(j, j + 1);
        words[i] = String::from_utf8(bytes).unwrap_or_else(|_| words[i].clone());
    }
    words.join(" ")
}

/// Adds web noise to a clean caption.
fn add_noise(caption: String, f: &Facts, rng: &mut ItemRng) -> String {
    let mut c = match rng.random_range(0..100) {
        0..60 => caption,
        60..80 => capitalize(&caption),
        80..88 => title_case(&caption),
        88..92 => caption.to_uppercase(),
        _ => caption.to_lowercase(),
    };
    if rng.random_bool(0.07) {
        c = typo(&c, f, rng);
    }
    if rng.random_bool(0.05) {
        c = match rng.random_range(0..3) {
            0 => format!("&quot;{c}&quot;"),
            1 => format!("{c} &amp; more"),
            _ => format!("{c} &ndash; {}", pick(rng, &SITES)),
        };
    }
    if rng.random_bool(0.07) {
        c = format!(
            "{c} #{} #{} #{}",
            f.color,
            f.shape,
            pick(rng, &["art", "design", "geometry", "minimal"])
        );
    }
    if rng.random_bool(0.05) {
        let e = pick(rng, &EMOJI);
        c = if rng.random_bool(0.5) {
            format!("{e} {c}")
        } else {
            format!("{c} {e}")
        };
    }
    if rng.random_bool(0.03) {
        let n = rng.random_range(1000..10_000);
        c = if rng.random_bool(0.5) {
            format!("IMG_{n}.JPG {c}")
        } else {
            format!("{c} (DSC_{n}.jpg)")
        };
    }
    if rng.random_bool(0.10) {
        let sep = pick(rng, &[" | ", " - ", " – ", " :: "]);
        c = format!("{c}{sep}{}", pick(rng, &SITES));
    }
    if rng.random_bool(0.05) {
        c = match rng.random_range(0..3) {
            0 => format!("  {c}"),
            1 => format!("{c}  "),
            _ => c.replacen(' ', "  ", 1),
        };
    }
    c
}

/// A clean (web-noisy but valid) caption for the scene.
pub(crate) fn caption(scene: &Scene, rng: &mut ItemRng) -> String {
    let f = Facts::of(scene);
    let usable: Vec<&str> = TEMPLATES
        .iter()
        .copied()
        .filter(|t| !t.contains("{n}") || !f.others.is_empty())
        .collect();
    let template = pick_slice(rng, &usable).copied().unwrap_or(TEMPLATES[0]);
    let text = fill(template, &f, rng);
    add_noise(text, &f, rng)
}

/// `caption_mismatched`: a clean caption of another scene, one whose main object differs in
/// colour or shape (or both) from `scene`'s.
pub(crate) fn mismatched(scene: &Scene, sizes: &SizeMix, rng: &mut ItemRng) -> String {
    let other = other_scene(scene, sizes, rng);
    caption(&other, rng)
}

/// A scene of the same size whose main object differs from `scene`'s in colour or shape.
fn other_scene(scene: &Scene, sizes: &SizeMix, rng: &mut ItemRng) -> Scene {
    let l = scene.labels;
    let mut other = Scene::sample(scene.width, scene.height, sizes, rng);
    if (other.labels.color, other.labels.shape) == (l.color, l.shape) {
        // one draw in 120: describe the next colour instead
        let at = Color::ALL.iter().position(|&c| c == l.color).unwrap_or(0);
        other.labels.color = Color::ALL[(at + 1) % Color::ALL.len()];
    }
    other
}

/// Page text that ends up as alt text: galleries, shops, placeholders, credits. At least three
/// words, and no colour or shape word.
const BOILERPLATE: [&str; 12] = [
    "Click to enlarge image",
    "Image not available for this product",
    "Free shipping on all orders over $50",
    "Add to cart - in stock now",
    "Photo {n} of 24 - view the whole gallery",
    "Sorry, this image is no longer available",
    "All rights reserved © 2019 example.com",
    "Uploaded by user{n} on our forum",
    "Loading image, please wait...",
    "Thumbnail for product number {n}",
    "See more photos in the album below",
    "Sponsored content - learn more here",
];

/// `caption_boilerplate`: one of [`BOILERPLATE`] (with a number where it has `{n}`).
pub(crate) fn boilerplate(rng: &mut ItemRng) -> String {
    let text = pick(rng, &BOILERPLATE);
    text.replace("{n}", &rng.random_range(2..10_000).to_string())
}

/// `caption_empty`: nothing, or only whitespace.
pub(crate) fn empty(rng: &mut ItemRng) -> Vec<u8> {
    pick(rng, &["", "", "", " ", "\n", "  \t "])
        .as_bytes()
        .to_vec()
}

/// `caption_one_word`: a single token (file name, placeholder, a lone label word).
pub(crate) fn one_word(scene: &Scene, rng: &mut ItemRng) -> Vec<u8> {
    let l = scene.labels;
    let word = match rng.random_range(0..6) {
        0 => format!("IMG_{}.JPG", rng.random_range(1000..10_000)),
        1 => format!("DSC{:05}", rng.random_range(0..100_000)),
        2 => pick(
            rng,
            &[
                "untitled",
                "image",
                "photo",
                "thumbnail",
                "null",
                "undefined",
            ],
        )
        .to_string(),
        3 => l.color.as_str().to_string(),
        4 => l.shape.as_str().to_string(),
        _ => format!("{}{}", l.color, capitalize(l.shape.as_str())),
    };
    word.into_bytes()
}

/// `caption_overlong`: a valid caption followed by keyword spam, 10–100 kB in total.
pub(crate) fn overlong(base: &str, scene: &Scene, rng: &mut ItemRng) -> Vec<u8> {
    let target = rng.random_range(10_000..=100_000usize);
    let l = scene.labels;
    let spam = [
        format!("best {} {} cheap", l.color, l.shape),
        format!("buy {} online", l.shape),
        "free shipping".to_string(),
        format!("{} {} wallpaper", l.color, l.shape),
        "high quality hd download".to_string(),
        "sale discount".to_string(),
    ];
    let mut out = String::with_capacity(target + 64);
    out.push_str(base);
    while out.len() < target {
        out.push(' ');
        out.push_str(pick_slice(rng, &spam).map_or("spam", String::as_str));
    }
    out.truncate(target.max(base.len()));
    out.into_bytes()
}

/// `caption_html`: the caption wrapped in tags, with entities inside.
pub(crate) fn html(base: &str, rng: &mut ItemRng) -> Vec<u8> {
    let escaped = base.replace('&', "&amp;").replacen(' ', "&nbsp;", 1);
    let wrapped = match rng.random_range(0..4) {
        0 => format!("<div class=\"caption\"><p>{escaped}</p></div>"),
        1 => format!(
            "<a href=\"https://example.com/p/{}\">{escaped}</a>",
            rng.random_range(100..100_000)
        ),
        2 => format!("<span style=\"font-weight:bold\">{escaped}</span><br/>"),
        _ => format!("<p>{escaped} &copy; 2024</p>"),
    };
    wrapped.into_bytes()
}

/// `caption_invalid_utf8`: the caption with raw bytes that are not UTF-8 (Latin-1 text, a
/// stray `0xFF 0xFE`, a truncated multi-byte sequence or a lone continuation byte).
pub(crate) fn invalid_utf8(base: &str, rng: &mut ItemRng) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + 8);
    match rng.random_range(0..4) {
        0 => {
            out.extend_from_slice(b"Caf\xe9 ");
            out.extend_from_slice(base.as_bytes());
        }
        1 => {
            out.extend_from_slice(base.as_bytes());
            out.extend_from_slice(b" \xff\xfe");
        }
        2 => {
            out.extend_from_slice(base.as_bytes());
            out.extend_from_slice(b" \xe2\x82");
        }
        _ => {
            out.extend_from_slice(b"\x80 ");
            out.extend_from_slice(base.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rng::{Purpose, item_rng};
    use super::*;

    fn scene(i: u64) -> Scene {
        Scene::sample(
            300,
            200,
            &crate::SizeMix::default(),
            &mut item_rng(2, i, Purpose::Scene),
        )
    }

    #[test]
    fn a_mismatched_caption_describes_another_main_object() {
        let sizes = crate::SizeMix::default();
        for i in 0..2000 {
            let s = scene(i);
            let mut rng = item_rng(3, i, Purpose::Dirt);
            let o = other_scene(&s, &sizes, &mut rng);
            assert_ne!(
                (o.labels.color, o.labels.shape),
                (s.labels.color, s.labels.shape)
            );
            assert!(!mismatched(&s, &sizes, &mut rng).is_empty());
        }
    }

    #[test]
    fn boilerplate_names_nothing_in_any_image() {
        let mut rng = item_rng(4, 0, Purpose::Dirt);
        for _ in 0..200 {
            let text = boilerplate(&mut rng).to_lowercase();
            assert!(text.split_whitespace().count() >= 3, "{text}");
            let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).collect();
            for c in Color::ALL {
                assert!(!words.contains(&c.as_str()), "{text}");
            }
            for s in Shape::ALL {
                assert!(!words.contains(&s.as_str()), "{text}");
            }
        }
    }

    #[test]
    fn templates_are_many_and_well_formed() {
        assert!(TEMPLATES.len() >= 20);
        let known = [
            "color", "shape", "size", "pos", "where", "bg", "others", "n", "object", "emoji",
            "site", "num",
        ];
        for t in TEMPLATES {
            assert!(t.contains("{color}") && t.contains("{shape}"), "{t}");
            for part in t.split('{').skip(1) {
                let name = part.split('}').next().unwrap();
                assert!(known.contains(&name), "{t}: {name}");
            }
        }
    }

    #[test]
    fn clean_captions_name_the_main_object_and_vary() {
        let mut distinct = std::collections::BTreeSet::new();
        for i in 0..400 {
            let s = scene(i);
            let mut rng = item_rng(2, i, Purpose::Caption);
            let c = caption(&s, &mut rng);
            let lower = c.to_lowercase();
            assert!(!lower.contains('{'), "{c}");
            assert!(c.split_whitespace().count() >= 3, "{c}");
            let shape_named = lower.contains(s.labels.shape.as_str())
                || [
                    "disc",
                    "dot",
                    "oval",
                    "elliptical",
                    "plus",
                    "donut",
                    "hoop",
                    "rhombus",
                    "lozenge",
                    "moon",
                    "honeycomb",
                    "pyramid",
                    "triang",
                ]
                .iter()
                .any(|w| lower.contains(w));
            assert!(shape_named, "{c} ({})", s.labels.shape);
            assert!(
                !lower.contains(" a orange") && !lower.contains(" a oval"),
                "{c}"
            );
            distinct.insert(c);
        }
        assert!(distinct.len() > 380);
    }

    #[test]
    fn dirt_captions() {
        let s = scene(1);
        let mut rng = item_rng(2, 1, Purpose::Dirt);
        for _ in 0..20 {
            assert!(
                String::from_utf8(empty(&mut rng))
                    .unwrap()
                    .trim()
                    .is_empty()
            );
            let w = String::from_utf8(one_word(&s, &mut rng)).unwrap();
            assert_eq!(w.split_whitespace().count(), 1, "{w}");
            let long = overlong("a red circle", &s, &mut rng);
            assert!((10_000..=100_000).contains(&long.len()) && long.starts_with(b"a red circle"));
            let h = String::from_utf8(html("red & blue star", &mut rng)).unwrap();
            assert!(
                h.contains('<') && h.contains("&amp;") && h.contains("blue"),
                "{h}"
            );
            assert!(std::str::from_utf8(&invalid_utf8("a red circle", &mut rng)).is_err());
        }
    }

    #[test]
    fn articles_are_fixed() {
        assert_eq!(
            fix_articles("a orange star and a red ring"),
            "an orange star and a red ring"
        );
        assert_eq!(fix_articles("A oval"), "An oval");
    }
}
