//! Caption cleanup and caption filters.
//!
//! Web captions arrive as bytes: alt texts with HTML tags and entities, control characters, NUL
//! bytes, zero-width characters, runs of whitespace, occasionally megabytes of text or invalid
//! UTF-8. [`clean_caption`] turns them into one tidy line or says, with a [`RejectReason`], why the
//! item must be rejected:
//!
//! 1. missing → `caption_missing`; invalid UTF-8 → `caption_invalid_utf8` (or replaced, if
//!    configured);
//! 2. HTML: `<script>`/`<style>` bodies and tags removed, entities decoded (also double-encoded
//!    ones such as `&amp;amp;`);
//! 3. control and invisible format characters removed, whitespace collapsed, trimmed, NFC;
//! 4. nothing left → `caption_missing`; fewer words or characters than the minimum →
//!    `caption_too_short`; longer than the maximum → truncated at a word boundary or
//!    `caption_too_long`, as configured.
//!
//! Defaults follow DataComp's basic filtering (at least 2 words and 5 characters).

use flipstream_schemas::RejectReason;
use flipstream_shard::problems::{Problem, Validate};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// What to do with captions over `max_chars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Cut at the last word boundary before the limit.
    Truncate,
    /// Reject the item (`caption_too_long`).
    Reject,
}

/// What to do with captions that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// Reject the item (`caption_invalid_utf8`).
    Reject,
    /// Replace invalid sequences with U+FFFD and go on.
    Replace,
}

/// Caption rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptionRules {
    /// Minimum number of whitespace-separated words.
    pub min_words: usize,
    /// Minimum number of characters (after cleanup).
    pub min_chars: usize,
    /// Maximum number of characters (after cleanup).
    pub max_chars: usize,
    /// Truncate or reject captions over `max_chars`.
    pub overlong: Overlong,
    /// Remove HTML tags and decode entities.
    pub strip_html: bool,
    /// Reject or repair invalid UTF-8.
    pub invalid_utf8: InvalidUtf8,
}

impl Default for CaptionRules {
    fn default() -> Self {
        Self {
            min_words: 2,
            min_chars: 5,
            max_chars: 1000,
            overlong: Overlong::Truncate,
            strip_html: true,
            invalid_utf8: InvalidUtf8::Reject,
        }
    }
}

impl Validate for CaptionRules {
    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.max_chars == 0 {
            p.push(Problem::new("max_chars", "must be at least 1"));
        } else if self.min_chars > self.max_chars {
            p.push(Problem::new(
                "min_chars",
                format!(
                    "({}) is above max_chars ({})",
                    self.min_chars, self.max_chars
                ),
            ));
        }
        p
    }
}

/// A caption rejection: the reason and what exactly was found.
pub type CaptionReject = (RejectReason, String);

/// Cleans a raw caption and applies the rules.
pub fn clean_caption(raw: Option<&[u8]>, rules: &CaptionRules) -> Result<String, CaptionReject> {
    let Some(raw) = raw else {
        return Err((RejectReason::CaptionMissing, "no caption".into()));
    };
    let text = match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(e) => match rules.invalid_utf8 {
            InvalidUtf8::Reject => {
                return Err((
                    RejectReason::CaptionInvalidUtf8,
                    format!("invalid UTF-8 at byte {} of {}", e.valid_up_to(), raw.len()),
                ));
            }
            InvalidUtf8::Replace => String::from_utf8_lossy(raw),
        },
    };
    let mut out = normalize_whitespace(&text);
    if rules.strip_html {
        out = strip_html(out);
    }
    if out.is_empty() {
        return Err((
            RejectReason::CaptionMissing,
            format!("empty after cleanup ({} bytes raw)", raw.len()),
        ));
    }
    let chars = out.chars().count();
    if chars > rules.max_chars {
        match rules.overlong {
            Overlong::Reject => {
                return Err((
                    RejectReason::CaptionTooLong,
                    format!("{chars} characters (maximum {})", rules.max_chars),
                ));
            }
            Overlong::Truncate => out = truncate_at_word(&out, rules.max_chars),
        }
    }
    let words = out.split_whitespace().count();
    let chars = out.chars().count();
    if words < rules.min_words {
        return Err((
            RejectReason::CaptionTooShort,
            format!("{words} word(s) (minimum {})", rules.min_words),
        ));
    }
    if chars < rules.min_chars {
        return Err((
            RejectReason::CaptionTooShort,
            format!("{chars} character(s) (minimum {})", rules.min_chars),
        ));
    }
    Ok(out)
}

/// Removes tags and decodes entities until nothing changes, so that cleaning a clean caption
/// leaves it as it is: a tag can appear only once entities are decoded (`&lt;b&gt;`) or control
/// characters dropped (`<\u{1}b>`). Each round that changes the text shortens it; the bound is a
/// safety net.
fn strip_html(mut text: String) -> String {
    for _ in 0..MAX_HTML_ROUNDS {
        if !(text.contains('<') || text.contains('&')) {
            break;
        }
        let next = normalize_whitespace(&decode_entities(&strip_tags(&text)));
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// Rounds of [`strip_html`] at most (each decodes two levels of entities).
const MAX_HTML_ROUNDS: usize = 64;

/// Removes HTML tags, and the bodies of `<script>` and `<style>` elements. Tags become spaces so
/// that `a<br>b` does not turn into one word. A `<` that does not start a tag is kept.
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt + 1..];
        let starts_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        let Some(gt) = after.find('>').filter(|_| starts_tag) else {
            out.push('<');
            rest = after;
            continue;
        };
        let name = after[..gt]
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        rest = &after[gt + 1..];
        for body_tag in ["script", "style"] {
            if name == body_tag {
                let close = format!("</{body_tag}");
                rest = match rest.to_ascii_lowercase().find(&close) {
                    Some(end) => rest[end..].find('>').map_or("", |g| &rest[end + g + 1..]),
                    None => "",
                };
            }
        }
        out.push(' ');
    }
    out.push_str(rest);
    out
}

/// Decodes HTML entities, twice at most (web text is often double-encoded: `&amp;quot;`).
fn decode_entities(s: &str) -> String {
    let once = html_escape::decode_html_entities(s);
    if once.contains('&') && once != s {
        html_escape::decode_html_entities(&once).into_owned()
    } else {
        once.into_owned()
    }
}

/// Drops control and invisible format characters, collapses whitespace runs into one space, trims,
/// and normalises to NFC.
fn normalize_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    // NFC last: dropping a control character can bring two combining marks together, whose
    // canonical order NFC then fixes (normalising first would leave them out of order)
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = true;
        } else if c.is_control() || is_invisible_format(c) {
            continue;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out.nfc().collect()
}

/// Zero-width and byte-order-mark characters that carry no text.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{202A}'..='\u{202E}')
}

/// Cuts to at most `max` characters, at the last space when there is one in the last fifth.
fn truncate_at_word(s: &str, max: usize) -> String {
    let cut = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    let head = &s[..cut];
    match head.rfind(' ') {
        Some(sp) if head[..sp].chars().count() >= max * 4 / 5 => head[..sp].to_string(),
        _ => head.trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> Result<String, CaptionReject> {
        clean_caption(Some(s.as_bytes()), &CaptionRules::default())
    }

    #[test]
    fn tidies_html_entities_controls_and_whitespace() {
        assert_eq!(
            clean("  A <b>red</b>&nbsp;circle\t\non a &amp;amp; striped\u{0} background  ")
                .unwrap(),
            "A red circle on a & striped background"
        );
        assert_eq!(
            clean("line<br/>break and <script>alert(1)</script>more words").unwrap(),
            "line break and more words"
        );
        assert_eq!(
            clean("zero\u{200B}width\u{FEFF} chars here").unwrap(),
            "zerowidth chars here"
        );
        assert_eq!(clean("a < b and c > d").unwrap(), "a < b and c > d");
        assert_eq!(
            clean("cafe\u{301} au lait").unwrap(),
            "caf\u{e9} au lait",
            "NFC"
        );
    }

    /// Inputs the `caption` fuzz target found (fuzz/regressions/caption/): cleaning a clean
    /// caption must leave it unchanged.
    #[test]
    fn cleaning_is_idempotent_on_the_fuzzers_finds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions/caption");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            let rules = CaptionRules::default();
            if let Ok(once) = clean_caption(Some(&raw), &rules) {
                assert_eq!(
                    clean_caption(Some(once.as_bytes()), &rules),
                    Ok(once.clone())
                );
            }
            seen += 1;
        }
        assert!(seen > 0, "no regression inputs in {dir}");
        // the shapes behind them
        assert_eq!(clean("a <\u{1}b>bold</b> word").unwrap(), "a bold word");
        assert_eq!(
            clean("a &lt;b&gt;bold&lt;/b&gt; word").unwrap(),
            "a bold word"
        );
        // combining marks brought together by a dropped control character: canonical order
        assert_eq!(
            clean("x\u{594}\u{1}\u{596}yz word").unwrap(),
            "x\u{596}\u{594}yz word"
        );
    }

    #[test]
    fn rejects_with_reasons_and_details() {
        let rules = CaptionRules::default();
        assert_eq!(
            clean_caption(None, &rules).unwrap_err().0,
            RejectReason::CaptionMissing
        );
        assert_eq!(
            clean("   \u{0}\t").unwrap_err().0,
            RejectReason::CaptionMissing
        );
        assert_eq!(
            clean("<p></p>").unwrap_err().0,
            RejectReason::CaptionMissing
        );
        let (r, d) = clean("sunset").unwrap_err();
        assert_eq!(r, RejectReason::CaptionTooShort);
        assert!(d.contains("1 word"), "{d}");
        assert_eq!(
            clean("a b").unwrap_err().0,
            RejectReason::CaptionTooShort,
            "3 characters"
        );
        let (r, d) = clean_caption(Some(b"caf\xe9 au lait"), &rules).unwrap_err();
        assert_eq!(r, RejectReason::CaptionInvalidUtf8);
        assert!(d.contains("byte 3"), "{d}");
    }

    #[test]
    fn invalid_utf8_can_be_repaired() {
        let rules = CaptionRules {
            invalid_utf8: InvalidUtf8::Replace,
            ..Default::default()
        };
        assert_eq!(
            clean_caption(Some(b"caf\xe9 au lait"), &rules).unwrap(),
            "caf\u{FFFD} au lait"
        );
    }

    #[test]
    fn overlong_captions_are_truncated_at_a_word_or_rejected() {
        let long = "word ".repeat(250_000); // 1.25 MB
        let out = clean(&long).unwrap();
        assert!(out.chars().count() <= 1000);
        assert!(out.ends_with("word"), "cut at a word boundary");
        let rules = CaptionRules {
            overlong: Overlong::Reject,
            ..Default::default()
        };
        let (r, d) = clean_caption(Some(long.as_bytes()), &rules).unwrap_err();
        assert_eq!(r, RejectReason::CaptionTooLong);
        assert!(d.contains("maximum 1000"), "{d}");
        let unbroken = "a ".to_string() + &"x".repeat(5000);
        assert_eq!(clean(&unbroken).unwrap().chars().count(), 1000);
    }

    #[test]
    fn rules_are_validated() {
        assert!(CaptionRules::default().validate().is_ok());
        let bad = CaptionRules {
            min_chars: 10,
            max_chars: 5,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("min_chars")
        );
    }
}
