//! Input patterns: brace expansion (`shard-{00000..00099}.tar`, `{train,val}.parquet`, the
//! WebDataset convention) and glob matching (`data/*.tar`, `s3://b/**/*.parquet`).
//!
//! Braces are expanded first; each result that still holds a glob metacharacter (`*`, `?`, `[`)
//! is then matched against a listing, anything else names one input.

use glob::{MatchOptions, Pattern};

/// At most this many inputs from one brace pattern (a typo like `{0..99999999}` stays harmless).
const MAX_EXPANSION: usize = 1_000_000;

/// Expands `{a,b}` alternatives and `{000..123}` numeric ranges (zero-padded to the wider endpoint
/// when either endpoint has a leading zero; descending ranges count down). Braces that are neither
/// stay literal.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(pattern, "", &mut out)?;
    Ok(out)
}

fn expand_into(rest: &str, prefix: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some((open, close)) = first_group(rest) else {
        out.push(format!("{prefix}{rest}"));
        return if out.len() > MAX_EXPANSION {
            Err(format!("expands to more than {MAX_EXPANSION} inputs"))
        } else {
            Ok(())
        };
    };
    let inner = &rest[open + 1..close];
    let suffix = &rest[close + 1..];
    let head = format!("{prefix}{}", &rest[..open]);
    match alternatives(inner)? {
        Some(alts) => {
            for alt in alts {
                expand_into(&format!("{alt}{suffix}"), &head, out)?;
            }
            Ok(())
        }
        // Not a brace expression: keep it literally and go on after it.
        None => expand_into(suffix, &format!("{head}{{{inner}}}"), out),
    }
}

/// Byte offsets of the first `{` and its matching `}`.
fn first_group(s: &str) -> Option<(usize, usize)> {
    let open = s.find('{')?;
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((open, open + i));
                }
            }
            _ => {}
        }
    }
    None
}

/// The alternatives of a brace body, or `None` when it is not a brace expression.
fn alternatives(inner: &str) -> Result<Option<Vec<String>>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !parts.is_empty() {
        parts.push(inner[start..].to_string());
        return Ok(Some(parts));
    }
    let Some((a, b)) = inner.split_once("..") else {
        return Ok(None);
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Ok(None);
    }
    let lo: u64 = a
        .parse()
        .map_err(|_| format!("range endpoint {a} is too large"))?;
    let hi: u64 = b
        .parse()
        .map_err(|_| format!("range endpoint {b} is too large"))?;
    if lo.abs_diff(hi) >= MAX_EXPANSION as u64 {
        return Err(format!(
            "range {{{inner}}} has more than {MAX_EXPANSION} values"
        ));
    }
    let padded = |s: &str| s.len() > 1 && s.starts_with('0');
    let width = if padded(a) || padded(b) {
        a.len().max(b.len())
    } else {
        0
    };
    let values: Vec<u64> = if lo <= hi {
        (lo..=hi).collect()
    } else {
        (hi..=lo).rev().collect()
    };
    Ok(Some(
        values.into_iter().map(|v| format!("{v:0width$}")).collect(),
    ))
}

/// True when the string holds a glob metacharacter.
pub(super) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Splits a glob into the folder before its first metacharacter (ends with `/`, or empty) and
/// the rest.
pub(super) fn glob_base(pattern: &str) -> (&str, &str) {
    let first_meta = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    match pattern[..first_meta].rfind('/') {
        Some(slash) => pattern.split_at(slash + 1),
        None => ("", pattern),
    }
}

/// A compiled glob over `/`-separated paths: `*` and `?` stay within one path component, `**`
/// spans components, `[a-z]` / `[!x]` are classes.
pub(super) struct Glob(Pattern);

impl Glob {
    /// Compiles a glob.
    pub(super) fn new(pattern: &str) -> Result<Self, String> {
        Pattern::new(pattern).map(Glob).map_err(|e| e.to_string())
    }

    /// True when `path` matches the whole pattern.
    pub(super) fn matches(&self, path: &str) -> bool {
        let opts = MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        self.0.matches_with(path, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ranges_keep_padding() {
        assert_eq!(
            expand_braces("shard-{00000..00002}.tar").unwrap(),
            ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
        );
        assert_eq!(expand_braces("p{8..10}").unwrap(), ["p8", "p9", "p10"]);
        assert_eq!(expand_braces("p{2..0}").unwrap(), ["p2", "p1", "p0"]);
        assert_eq!(expand_braces("{09..11}").unwrap(), ["09", "10", "11"]);
    }

    #[test]
    fn alternatives_nest_and_multiply() {
        assert_eq!(
            expand_braces("{a,b}/{1..2}").unwrap(),
            ["a/1", "a/2", "b/1", "b/2"]
        );
        assert_eq!(expand_braces("x{a,b{c,d}}").unwrap(), ["xa", "xbc", "xbd"]);
        assert_eq!(expand_braces("{,.gz}").unwrap(), ["", ".gz"]);
    }

    #[test]
    fn non_expressions_stay_literal() {
        assert_eq!(expand_braces("a{b}c").unwrap(), ["a{b}c"]);
        assert_eq!(
            expand_braces("a{1..x}{1..2}").unwrap(),
            ["a{1..x}1", "a{1..x}2"]
        );
        assert_eq!(expand_braces("open{only").unwrap(), ["open{only"]);
        assert!(expand_braces("{0..99999999}").is_err());
    }

    #[test]
    fn globs_split_and_match_per_component() {
        assert_eq!(glob_base("data/x/*.tar"), ("data/x/", "*.tar"));
        assert_eq!(glob_base("*.tar"), ("", "*.tar"));
        assert!(is_glob("a/[ab].tar") && !is_glob("a/b.tar"));
        let g = Glob::new("data/*.tar").unwrap();
        assert!(g.matches("data/a.tar"));
        assert!(!g.matches("data/sub/a.tar"));
        assert!(!g.matches("data/.hidden.tar"));
        assert!(
            Glob::new("data/**/*.tar")
                .unwrap()
                .matches("data/sub/deeper/a.tar")
        );
        assert!(Glob::new("[").is_err());
    }
}
