//! Which input column plays which role (image, caption, key, URL) and which are passthrough.
//!
//! Roles are auto-detected by name, unless [`SourceOptions`] names the column: for each role the
//! candidate names are tried in order, first exactly, then ignoring case (so LAION's `URL` and
//! `TEXT` are found). A candidate only counts when its type can play the role (an image column
//! must hold bytes or a Hugging Face `struct<bytes, path>`).

use super::error::{Result, SourceError};
use super::options::SourceOptions;

/// Image column names, in order of preference (img2dataset writes `jpg`, Hugging Face `image`).
pub(super) const IMAGE_NAMES: [&str; 8] = [
    "image",
    "img",
    "jpg",
    "jpeg",
    "png",
    "webp",
    "image_data",
    "bytes",
];
/// Caption column names (LAION `TEXT`, DataComp `text`, CC3M/synth `caption`).
pub(super) const CAPTION_NAMES: [&str; 5] = ["caption", "text", "txt", "alt_text", "alt"];
/// Key column names (img2dataset `key`, DataComp `uid`).
pub(super) const KEY_NAMES: [&str; 4] = ["key", "__key__", "uid", "id"];
/// URL column names (LAION `URL`, DataComp `url`).
pub(super) const URL_NAMES: [&str; 3] = ["url", "image_url", "img_url"];

/// What a column can hold, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColClass {
    /// Image bytes: binary, or a Hugging Face image struct.
    Image,
    /// Text (utf8, large utf8, view, dictionary of text).
    Text,
    /// Raw bytes that are not an image struct (binary columns can also hold captions).
    Bytes,
    /// Numbers and booleans.
    Scalar,
    /// Anything else (lists, other structs): never read.
    Other,
}

/// A column's name and class.
#[derive(Debug, Clone)]
pub(super) struct ColumnInfo {
    /// Name in the input.
    pub name: String,
    /// What it holds.
    pub class: ColClass,
}

/// Column positions of each role, and of the passthrough columns in output order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Roles {
    /// Image bytes.
    pub image: Option<usize>,
    /// Caption.
    pub caption: Option<usize>,
    /// The item's own key.
    pub key: Option<usize>,
    /// Source URL.
    pub url: Option<usize>,
    /// Passthrough columns.
    pub extras: Vec<usize>,
}

fn image_ok(c: ColClass) -> bool {
    matches!(c, ColClass::Image | ColClass::Bytes)
}
fn caption_ok(c: ColClass) -> bool {
    matches!(c, ColClass::Text | ColClass::Bytes)
}
fn key_ok(c: ColClass) -> bool {
    matches!(c, ColClass::Text | ColClass::Scalar)
}
fn url_ok(c: ColClass) -> bool {
    c == ColClass::Text
}

/// Finds a role's column: the named override (which must exist and fit), else the first
/// candidate that exists and fits.
fn find(
    cols: &[ColumnInfo],
    role: &str,
    named: Option<&str>,
    candidates: &[&str],
    ok: fn(ColClass) -> bool,
    input: &str,
) -> Result<Option<usize>> {
    if let Some(name) = named {
        let Some(i) = cols.iter().position(|c| c.name == name) else {
            return Err(SourceError::Columns {
                input: input.to_string(),
                detail: format!(
                    "{role} column {name:?} not found; columns are {}",
                    names(cols)
                ),
            });
        };
        if !cols.get(i).is_some_and(|c| ok(c.class)) {
            return Err(SourceError::Columns {
                input: input.to_string(),
                detail: format!("column {name:?} cannot hold the {role} (its type does not fit)"),
            });
        }
        return Ok(Some(i));
    }
    for exact in [true, false] {
        for cand in candidates {
            let hit = cols.iter().position(|c| {
                ok(c.class)
                    && if exact {
                        c.name == *cand
                    } else {
                        c.name.eq_ignore_ascii_case(cand)
                    }
            });
            if hit.is_some() {
                return Ok(hit);
            }
        }
    }
    Ok(None)
}

/// The column names, for messages.
pub(super) fn names(cols: &[ColumnInfo]) -> String {
    let list: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    format!("[{}]", list.join(", "))
}

/// Detects the roles of `cols` (`with_image`: look for an image column at all).
///
/// Passthrough columns are the text and scalar columns that are not the image, caption or URL,
/// nor a key column named `key` (which would duplicate the key), selected and ordered by
/// `opts.passthrough`.
pub(super) fn detect(
    cols: &[ColumnInfo],
    opts: &SourceOptions,
    with_image: bool,
    input: &str,
) -> Result<Roles> {
    let mut image = None;
    if with_image {
        image = find(
            cols,
            "image",
            opts.image_column.as_deref(),
            &IMAGE_NAMES,
            image_ok,
            input,
        )?;
        if image.is_none() && opts.image_column.is_none() {
            // Any Hugging Face image struct, whatever its name.
            image = cols.iter().position(|c| c.class == ColClass::Image);
        }
    }
    let caption = find(
        cols,
        "caption",
        opts.caption_column.as_deref(),
        &CAPTION_NAMES,
        caption_ok,
        input,
    )?
    .filter(|&c| Some(c) != image);
    let key = find(
        cols,
        "key",
        opts.key_column.as_deref(),
        &KEY_NAMES,
        key_ok,
        input,
    )?;
    let url = find(
        cols,
        "url",
        opts.url_column.as_deref(),
        &URL_NAMES,
        url_ok,
        input,
    )?;
    let key_is_dup = |i: usize| {
        Some(i) == key
            && cols
                .get(i)
                .is_some_and(|c| c.name.eq_ignore_ascii_case("key") || c.name == "__key__")
    };
    let candidates: Vec<(String, usize)> = cols
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            matches!(c.class, ColClass::Text | ColClass::Scalar)
                && Some(*i) != image
                && Some(*i) != caption
                && Some(*i) != url
                && !key_is_dup(*i)
        })
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let extras = opts
        .passthrough
        .order(candidates)
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    Ok(Roles {
        image,
        caption,
        key,
        url,
        extras,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::options::Passthrough;

    fn cols(spec: &[(&str, ColClass)]) -> Vec<ColumnInfo> {
        spec.iter()
            .map(|(n, c)| ColumnInfo {
                name: n.to_string(),
                class: *c,
            })
            .collect()
    }

    #[test]
    fn laion_and_datacomp_names_are_found() {
        use ColClass::*;
        let laion = cols(&[
            ("SAMPLE_ID", Scalar),
            ("URL", Text),
            ("TEXT", Text),
            ("similarity", Scalar),
        ]);
        let r = detect(&laion, &SourceOptions::default(), true, "x").unwrap();
        assert_eq!(
            (r.image, r.caption, r.key, r.url),
            (None, Some(2), None, Some(1))
        );
        assert_eq!(r.extras, [0, 3]);
        let dc = cols(&[
            ("uid", Text),
            ("url", Text),
            ("text", Text),
            ("original_width", Scalar),
        ]);
        let r = detect(&dc, &SourceOptions::default(), true, "x").unwrap();
        assert_eq!((r.key, r.url, r.caption), (Some(0), Some(1), Some(2)));
        assert_eq!(
            r.extras,
            [0, 3],
            "uid is passed through as well as used as the key"
        );
    }

    #[test]
    fn hf_struct_images_and_key_column() {
        use ColClass::*;
        let hf = cols(&[
            ("key", Text),
            ("picture", Image),
            ("caption", Text),
            ("url", Text),
            ("label", Scalar),
        ]);
        let r = detect(&hf, &SourceOptions::default(), true, "x").unwrap();
        assert_eq!((r.image, r.key, r.caption), (Some(1), Some(0), Some(2)));
        assert_eq!(
            r.extras,
            [4],
            "a `key` column is not duplicated as passthrough"
        );
        let only = SourceOptions {
            passthrough: Passthrough::None,
            ..Default::default()
        };
        assert!(detect(&hf, &only, true, "x").unwrap().extras.is_empty());
    }

    #[test]
    fn overrides_must_exist_and_fit() {
        use ColClass::*;
        let c = cols(&[("photo", Bytes), ("words", Text), ("n", Scalar)]);
        let o = SourceOptions {
            image_column: Some("photo".into()),
            caption_column: Some("words".into()),
            ..Default::default()
        };
        let r = detect(&c, &o, true, "x").unwrap();
        assert_eq!((r.image, r.caption), (Some(0), Some(1)));
        let bad = SourceOptions {
            image_column: Some("nope".into()),
            ..Default::default()
        };
        let err = detect(&c, &bad, true, "in.parquet")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in.parquet")
                && err.contains("\"nope\"")
                && err.contains("[photo, words, n]"),
            "{err}"
        );
        let wrong = SourceOptions {
            url_column: Some("n".into()),
            ..Default::default()
        };
        assert!(detect(&c, &wrong, true, "x").is_err());
    }
}
