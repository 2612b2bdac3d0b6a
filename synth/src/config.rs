//! [`SynthConfig`]: what to generate (count, seed, layout, dirt mix, object sizes), with validation.
//!
//! A [`DirtMix`] maps dirt kinds to the fraction of items that get them; it parses from the
//! command-line forms `off`, `default` and `kind=fraction,kind=fraction` (which may start with
//! `default,` to adjust the preset).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::dirt::DirtKind;
use super::error::SynthError;
use super::scene::SizeClass;

/// Keys are nine-digit zero-padded indices, so at most this many items.
pub const MAX_COUNT: u64 = 1_000_000_000;

/// How the generated pairs are laid out on disk.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `shard-00000.tar`, … with members `<key>.<ext>`, `<key>.txt`, `<key>.json`.
    #[default]
    Webdataset,
    /// `part-00000.parquet`, … in Hugging Face style (`image` is `struct<bytes, path>`).
    Parquet,
    /// `images/<key>.<ext>`, `images/<key>.txt`, `images/<key>.json`.
    Folder,
    /// `urls.parquet` (url, caption, uid, labels) and the files it points to under `files/`.
    Urls,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Layout; 4] = [
        Layout::Webdataset,
        Layout::Parquet,
        Layout::Folder,
        Layout::Urls,
    ];

    /// The name used on the command line and in `synth.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Webdataset => "webdataset",
            Layout::Parquet => "parquet",
            Layout::Folder => "folder",
            Layout::Urls => "urls",
        }
    }

    /// Whether items are grouped into numbered shard files.
    pub fn is_sharded(self) -> bool {
        matches!(self, Layout::Webdataset | Layout::Parquet)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layout {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                SynthError::Config(format!(
                    "unknown layout {s:?} (known: webdataset, parquet, folder, urls)"
                ))
            })
    }
}

/// Fractions of items that get each dirt kind (absent kinds: none). Serialises as a map from kind
/// name to fraction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DirtMix(pub BTreeMap<DirtKind, f64>);

/// Floating-point slack when comparing fractions and counts.
const EPS: f64 = 1e-9;

impl DirtMix {
    /// No dirt at all (the default).
    pub fn none() -> Self {
        DirtMix(BTreeMap::new())
    }

    /// The web-like preset behind `--dirt default`: about 16 % of items carry one kind of dirt,
    /// roughly in the proportions seen in scraped image-text pairs.
    pub fn web_default() -> Self {
        use DirtKind::*;
        let pairs = [
            (Truncated, 0.010),
            (Corrupt, 0.005),
            (ZeroByte, 0.003),
            (NotImage, 0.005),
            (Tiny, 0.010),
            (ExtremeAspect, 0.005),
            (DuplicateExact, 0.020),
            (NearDuplicate, 0.010),
            (CaptionEmpty, 0.010),
            (CaptionOneWord, 0.010),
            (CaptionOverlong, 0.003),
            (CaptionHtml, 0.010),
            (CaptionInvalidUtf8, 0.003),
            (ExifRotated, 0.010),
            (Cmyk, 0.003),
            (Gray16, 0.002),
            (Grayscale, 0.010),
            (PaletteAlpha, 0.005),
            (Animated, 0.003),
            (DecompressionBomb, 0.001),
            (MissingFile, 0.020),
        ];
        DirtMix(pairs.into_iter().collect())
    }

    /// Whether no kind has a positive fraction.
    pub fn is_off(&self) -> bool {
        self.0.values().all(|f| *f <= 0.0)
    }

    /// Sum of the fractions.
    pub fn total_fraction(&self) -> f64 {
        self.0.values().sum()
    }

    /// Items per kind for `count` items: ⌈fraction·count⌉, at least one when the fraction is
    /// positive; kinds with fraction 0 are left out. In [`DirtKind::ALL`] order.
    pub fn counts(&self, count: u64) -> Vec<(DirtKind, u64)> {
        self.0
            .iter()
            .filter(|(_, f)| **f > 0.0)
            .map(|(k, f)| {
                let exact = (f * count as f64 - EPS).ceil().max(1.0);
                (*k, exact as u64)
            })
            .collect()
    }

    /// Checks each fraction and their sum, and that the resulting counts fit into `count` items.
    pub fn validate(&self, count: u64) -> Result<(), SynthError> {
        for (k, f) in &self.0 {
            if !f.is_finite() || *f < 0.0 || *f > 1.0 {
                return Err(SynthError::Config(format!(
                    "dirt fraction for {k} must be between 0 and 1, got {f}"
                )));
            }
        }
        let total = self.total_fraction();
        if total > 1.0 + EPS {
            return Err(SynthError::Config(format!(
                "dirt fractions sum to {total}, more than 1 (each item gets at most one kind)"
            )));
        }
        let needed: u64 = self.counts(count).iter().map(|(_, n)| n).sum();
        if needed > count {
            return Err(SynthError::Config(format!(
                "the dirt mix needs {needed} items (⌈fraction·count⌉, at least one per kind) but count is {count}"
            )));
        }
        Ok(())
    }
}

impl FromStr for DirtMix {
    type Err = SynthError;

    /// Parses `off` / `none`, `default`, or `kind=fraction,…` (optionally starting with
    /// `default,` to override single kinds of the preset).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "off" || s == "none" {
            return Ok(DirtMix::none());
        }
        let mut mix = BTreeMap::new();
        let mut explicit = BTreeMap::new();
        for (i, part) in s.split(',').map(str::trim).enumerate() {
            if part == "default" && i == 0 {
                mix = DirtMix::web_default().0;
                continue;
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(SynthError::Config(format!(
                    "bad dirt item {part:?}: expected kind=fraction (or off, default)"
                )));
            };
            let kind: DirtKind = name
                .trim()
                .parse()
                .map_err(|e: super::dirt::UnknownDirtKind| SynthError::Config(e.to_string()))?;
            let fraction: f64 = value.trim().parse().map_err(|_| {
                SynthError::Config(format!(
                    "bad dirt fraction {value:?} for {kind}: expected a number"
                ))
            })?;
            if explicit.insert(kind, fraction).is_some() {
                return Err(SynthError::Config(format!("dirt kind {kind} given twice")));
            }
            mix.insert(kind, fraction);
        }
        Ok(DirtMix(mix))
    }
}

/// Relative weights of the main object's size classes ([`SizeClass`]): the default 25 / 45 / 30
/// (small / medium / large) mixes web photos with small subjects and product shots; a demo on a
/// tiny model at 64 px may ask for large objects only (`large=1`), whose outline spans several
/// ViT patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeMix {
    /// Weight of [`SizeClass::Small`] (diameter 20–30 % of the shortest side).
    pub small: u32,
    /// Weight of [`SizeClass::Medium`] (36–50 %).
    pub medium: u32,
    /// Weight of [`SizeClass::Large`] (58–76 %).
    pub large: u32,
}

impl Default for SizeMix {
    fn default() -> Self {
        SizeMix {
            small: 25,
            medium: 45,
            large: 30,
        }
    }
}

impl SizeMix {
    /// The weights in [`SizeClass::ALL`] order.
    pub fn weights(&self) -> [(SizeClass, u32); 3] {
        [
            (SizeClass::Small, self.small),
            (SizeClass::Medium, self.medium),
            (SizeClass::Large, self.large),
        ]
    }
}

impl fmt::Display for SizeMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "small={},medium={},large={}",
            self.small, self.medium, self.large
        )
    }
}

impl FromStr for SizeMix {
    type Err = SynthError;

    /// Parses `default` or `class=weight,…` (classes left out weigh 0; at least one weight > 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "default" {
            return Ok(SizeMix::default());
        }
        let mut mix = SizeMix {
            small: 0,
            medium: 0,
            large: 0,
        };
        for part in s.split(',').map(str::trim) {
            let bad = || {
                SynthError::Config(format!(
                    "bad object-size item {part:?}: expected small|medium|large=WEIGHT (a whole number)"
                ))
            };
            let (name, value) = part.split_once('=').ok_or_else(bad)?;
            let weight: u32 = value.trim().parse().map_err(|_| bad())?;
            match name.trim() {
                "small" => mix.small = weight,
                "medium" => mix.medium = weight,
                "large" => mix.large = weight,
                _ => return Err(bad()),
            }
        }
        if mix.small as u64 + mix.medium as u64 + mix.large as u64 == 0 {
            return Err(SynthError::Config(format!(
                "object sizes {s:?}: at least one weight must be positive"
            )));
        }
        Ok(mix)
    }
}

/// What to generate. `Default` is 1,000 clean pairs, seed 0, WebDataset shards of 1,000.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Number of items (pairs) to generate.
    pub count: u64,
    /// Seed: same seed and options give byte-identical output.
    pub seed: u64,
    /// On-disk layout.
    pub layout: Layout,
    /// Items per shard; duplicates always copy an earlier item of the same block of
    /// `shard_size` items, in every layout.
    pub shard_size: u64,
    /// Dirt fractions (empty: clean data).
    pub dirt: DirtMix,
    /// URL prefix for the `urls` layout: the URL of an item is `url_base + "files/<key>.<ext>"`.
    pub url_base: String,
    /// Size classes of the main objects.
    pub sizes: SizeMix,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            count: 1000,
            seed: 0,
            layout: Layout::Webdataset,
            shard_size: 1000,
            dirt: DirtMix::none(),
            url_base: "http://127.0.0.1:8000/".to_string(),
            sizes: SizeMix::default(),
        }
    }
}

impl SynthConfig {
    /// Checks every option; generation calls this first, so nothing is written for a bad config.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.count == 0 || self.count > MAX_COUNT {
            return Err(SynthError::Config(format!(
                "count must be between 1 and {MAX_COUNT}, got {}",
                self.count
            )));
        }
        if self.shard_size == 0 {
            return Err(SynthError::Config(
                "shard size must be at least 1".to_string(),
            ));
        }
        self.dirt.validate(self.count)?;
        let url = url::Url::parse(&self.url_base)
            .map_err(|e| SynthError::Config(format!("bad URL base {:?}: {e}", self.url_base)))?;
        if !matches!(url.scheme(), "http" | "https") || !self.url_base.ends_with('/') {
            return Err(SynthError::Config(format!(
                "URL base must be an http(s) URL ending with '/', got {:?}",
                self.url_base
            )));
        }
        Ok(())
    }

    /// Number of shard blocks (`⌈count / shard_size⌉`).
    pub fn shard_count(&self) -> u64 {
        self.count.div_ceil(self.shard_size.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sizes_parse_and_refuse_nonsense() {
        assert_eq!("default".parse::<SizeMix>().unwrap(), SizeMix::default());
        let large: SizeMix = "large=1".parse().unwrap();
        assert_eq!((large.small, large.medium, large.large), (0, 0, 1));
        let mix: SizeMix = " medium = 3, large=7".parse().unwrap();
        assert_eq!(mix.to_string(), "small=0,medium=3,large=7");
        assert_eq!(mix.to_string().parse::<SizeMix>().unwrap(), mix);
        for bad in [
            "huge=1",
            "large",
            "large=-1",
            "large=0.5",
            "small=0,large=0",
            "",
        ] {
            let e = bad.parse::<SizeMix>().unwrap_err();
            assert!(e.is_usage(), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_forms() {
        assert!("off".parse::<DirtMix>().unwrap().is_off());
        assert_eq!(
            "default".parse::<DirtMix>().unwrap(),
            DirtMix::web_default()
        );
        let m: DirtMix = "tiny=0.1, zero_byte=0.05".parse().unwrap();
        assert_eq!(m.0.len(), 2);
        assert_eq!(m.0[&DirtKind::Tiny], 0.1);
        let m: DirtMix = "default,tiny=0.2".parse().unwrap();
        assert_eq!(m.0[&DirtKind::Tiny], 0.2);
        // every kind but the two semantic ones, which are asked for by name
        assert_eq!(m.0.len(), DirtKind::ALL.len() - 2);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "rotten=0.1",
            "tiny",
            "tiny=abc",
            "tiny=0.1,tiny=0.2",
            "tiny=0.1,default",
        ] {
            let err = bad.parse::<DirtMix>().unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_are_ceilings_with_a_minimum_of_one() {
        let m: DirtMix = "tiny=0.07,zero_byte=0.001,corrupt=0.0".parse().unwrap();
        assert_eq!(
            m.counts(100),
            vec![(DirtKind::ZeroByte, 1), (DirtKind::Tiny, 7)]
        );
        assert_eq!(
            m.counts(1000),
            vec![(DirtKind::ZeroByte, 1), (DirtKind::Tiny, 70)]
        );
        assert_eq!(
            m.counts(1001),
            vec![(DirtKind::ZeroByte, 2), (DirtKind::Tiny, 71)]
        );
    }

    #[test]
    fn validation() {
        let over: DirtMix = "tiny=0.6,corrupt=0.5".parse().unwrap();
        assert!(
            over.validate(100)
                .unwrap_err()
                .to_string()
                .contains("sum to")
        );
        let neg: DirtMix = "tiny=-0.1".parse().unwrap();
        assert!(neg.validate(100).is_err());
        assert!(
            DirtMix::web_default()
                .validate(10)
                .unwrap_err()
                .to_string()
                .contains("needs")
        );
        DirtMix::web_default().validate(200).unwrap();
        let full: DirtMix = "tiny=0.5,corrupt=0.5".parse().unwrap();
        full.validate(10).unwrap();
        let cfg = SynthConfig {
            count: 0,
            ..SynthConfig::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = SynthConfig {
            url_base: "ftp://x/".into(),
            ..SynthConfig::default()
        };
        assert!(cfg.validate().is_err());
        SynthConfig::default().validate().unwrap();
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = SynthConfig {
            dirt: DirtMix::web_default(),
            layout: Layout::Urls,
            ..SynthConfig::default()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"zero_byte\":0.003"), "{json}");
        let back: SynthConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
    }
}
