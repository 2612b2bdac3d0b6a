//! The ingest configuration: one serde struct with defaults, written into the dataset manifest.
//!
//! Defaults follow DataComp's "basic" filtering where it applies (captions of at least 2 words and
//! 5 characters, shortest side at least 200 px, aspect ratio at most 3) and img2dataset's usual
//! output (shortest side resized to 256, downscale only, JPEG quality 90).
//!
//! [`IngestConfig::fingerprint`] hashes everything that decides *what* ends up in the dataset, and
//! nothing that only decides *how fast* (concurrency, timeouts, retries): workers started with
//! different thread counts still write into the same dataset, while a changed filter is refused.

use flipstream_imaging::ProcessSpec;
use flipstream_shard::WriterSettings;
use flipstream_shard::problems::{Problem, Validate, problems_within};
use serde::{Deserialize, Serialize};

use crate::caption::CaptionRules;
pub use crate::dedup::DedupRules;
use crate::fetch::FetchConfig;
use crate::source::SourceOptions;

/// Everything ingest decides, with defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// How inputs are read and split into units.
    pub sources: SourceOptions,
    /// Caption cleanup and filters.
    pub caption: CaptionRules,
    /// Image limits, size filters, resize and encoding.
    pub image: ProcessSpec,
    /// Duplicate detection.
    pub dedup: DedupRules,
    /// Downloading (URL lists).
    pub fetch: FetchConfig,
    /// Shard layout.
    pub writer: WriterSettings,
}

/// Fields of [`FetchConfig`] that change speed, not content: left out of the fingerprint.
const FETCH_RUNTIME_FIELDS: [&str; 8] = [
    "concurrency",
    "connect_timeout_ms",
    "read_timeout_ms",
    "total_timeout_ms",
    "retries",
    "backoff_base_ms",
    "backoff_max_ms",
    "retry_after_cap_ms",
];

impl Validate for IngestConfig {
    /// Every part's problems under its table (`caption.max_chars`, `fetch.concurrency`, …).
    fn problems(&self) -> Vec<Problem> {
        let mut p = problems_within(&self.sources, "sources");
        p.extend(problems_within(&self.caption, "caption"));
        p.extend(problems_within(&self.dedup, "dedup"));
        p.extend(problems_within(&self.fetch, "fetch"));
        p.extend(problems_within(&self.writer, "writer"));
        p.extend(self.image_problems());
        p
    }
}

impl IngestConfig {
    /// The `[image]` table's problems.
    fn image_problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let image = &self.image;
        if image.resize.size == 0 {
            p.push(Problem::new("image.resize.size", "must be at least 1"));
        } else {
            // The output is at least size × size pixels; bound it like the input (an unbounded
            // size would ask for gigabytes per image, or overflow).
            let side = u64::from(image.resize.size);
            if side.saturating_mul(side) > image.max_pixels {
                p.push(Problem::new(
                    "image.resize.size",
                    format!(
                        "= {side} makes images of at least {side} × {side} pixels, above \
                         image.max_pixels = {}: choose a smaller size (at most {})",
                        image.max_pixels,
                        (image.max_pixels as f64).sqrt().floor() as u64
                    ),
                ));
            }
        }
        if !(1..=100).contains(&image.encode.quality) {
            p.push(Problem::new(
                "image.encode.quality",
                format!("must be in 1..=100, got {}", image.encode.quality),
            ));
        }
        if let Some(r) = image.max_aspect_ratio
            && (r.is_nan() || r < 1.0)
        {
            p.push(Problem::new(
                "image.max_aspect_ratio",
                format!("must be at least 1, got {r}"),
            ));
        }
        p
    }

    /// The configuration as stored in the manifest, without the runtime-only fields.
    pub fn content_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(fetch) = v.get_mut("fetch").and_then(|f| f.as_object_mut()) {
            for k in FETCH_RUNTIME_FIELDS {
                fetch.remove(k);
            }
        }
        v
    }

    /// Hex BLAKE3 of [`IngestConfig::content_json`] (serde_json sorts object keys).
    pub fn fingerprint(&self) -> String {
        let canonical = self.content_json().to_string();
        blake3::hash(canonical.as_bytes()).to_hex()[..16].to_string()
    }

    /// Reads a TOML configuration file's text (unknown keys are an error naming them).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_datacomp_basic() {
        let c = IngestConfig::default();
        c.validate().unwrap();
        assert_eq!(c.image.min_side, Some(200));
        assert_eq!(c.image.max_aspect_ratio, Some(3.0));
        assert_eq!((c.caption.min_words, c.caption.min_chars), (2, 5));
    }

    #[test]
    fn fingerprint_ignores_speed_but_not_content() {
        let base = IngestConfig::default();
        let mut faster = base.clone();
        faster.fetch.concurrency = 512;
        faster.fetch.retries = 9;
        assert_eq!(base.fingerprint(), faster.fingerprint());
        let mut stricter = base.clone();
        stricter.caption.min_words = 3;
        assert_ne!(base.fingerprint(), stricter.fingerprint());
        let mut other_size = base.clone();
        other_size.image.resize.size = 384;
        assert_ne!(base.fingerprint(), other_size.fingerprint());
    }

    #[test]
    fn toml_overrides_and_unknown_keys() {
        let c = IngestConfig::from_toml("[caption]\nmin_words = 3\n[image.resize]\nsize = 384\n")
            .unwrap();
        assert_eq!(c.caption.min_words, 3);
        assert_eq!(c.image.resize.size, 384);
        assert_eq!(c.image.min_side, Some(200), "untouched defaults stay");
        let err = IngestConfig::from_toml("[caption]\nmin_wrds = 3\n").unwrap_err();
        assert!(err.contains("min_wrds"), "{err}");
    }
}
