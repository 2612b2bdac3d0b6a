//! The ground truth written next to the data: `synth.jsonl` (one [`SidecarRecord`] per item)
//! and `synth.json` (the [`SynthSummary`]: options, seed, version, counts, bytes).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::SynthConfig;
use super::dirt::DirtKind;
use super::error::SynthError;
use super::pair::SynthPair;
use super::scene::Labels;

/// File name of the per-item sidecar.
pub const SIDECAR_FILE: &str = "synth.jsonl";
/// File name of the summary.
pub const SUMMARY_FILE: &str = "synth.json";
/// Value of [`SynthSummary::format`].
pub const SUMMARY_FORMAT: &str = "flipstream-synth";

/// Where a layout put an item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Path of the image file relative to the output (`folder`, `urls`); for `missing_file`
    /// the path the URL names, which is not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Shard file (`webdataset`, `parquet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Tar member of the image (`webdataset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Row within the shard (`parquet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// URL of the image (`urls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One line of `synth.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarRecord<'a> {
    /// Item key.
    pub key: Cow<'a, str>,
    /// Item index.
    pub index: u64,
    /// Where the item is.
    #[serde(flatten)]
    pub location: Location,
    /// What the image bytes are (`jpeg`, `png`, `webp`, `gif`, `html`, `empty`).
    pub format: Cow<'a, str>,
    /// Upright width (declared width for a decompression bomb).
    pub width: u32,
    /// Upright height (declared height for a decompression bomb).
    pub height: u32,
    /// Size of the image file in bytes.
    pub bytes: u64,
    /// Encoder quality of lossy files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// Ground truth.
    #[serde(flatten)]
    pub labels: Labels,
    /// The caption as written; invalid UTF-8 replaced by U+FFFD here.
    pub caption: Cow<'a, str>,
    /// Whether the written caption bytes are valid UTF-8.
    pub caption_utf8: bool,
    /// Applied dirt, or null.
    pub dirt: Option<DirtKind>,
    /// A dirt kind that was assigned but that this layout cannot carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirt_skipped: Option<DirtKind>,
    /// Key of the copied item, for duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dup_of: Option<String>,
}

impl<'a> SidecarRecord<'a> {
    /// The record of a pair at a location.
    pub fn new(pair: &'a SynthPair, location: Location) -> SidecarRecord<'a> {
        SidecarRecord {
            key: Cow::Borrowed(&pair.key),
            index: pair.index,
            location,
            format: Cow::Borrowed(pair.format.as_str()),
            width: pair.width,
            height: pair.height,
            bytes: pair.image.len() as u64,
            quality: pair.quality,
            labels: pair.labels,
            caption: String::from_utf8_lossy(&pair.caption),
            caption_utf8: std::str::from_utf8(&pair.caption).is_ok(),
            dirt: pair.dirt,
            dirt_skipped: pair.dirt_skipped,
            dup_of: pair.dup_of.map(|i| format!("{i:09}")),
        }
    }
}

/// `synth.json`: what was generated. Byte-identical for identical options (no timings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    /// Always `flipstream-synth`.
    pub format: String,
    /// Version of the generator (the flipstream version).
    pub flipstream_version: String,
    /// The seed (also in `config`).
    pub seed: u64,
    /// The resolved options.
    pub config: SynthConfig,
    /// Items generated.
    pub items: u64,
    /// Items without applied dirt.
    pub clean: u64,
    /// Items per applied dirt kind.
    pub dirt: BTreeMap<DirtKind, u64>,
    /// Items per assigned kind that the layout could not carry.
    pub dirt_skipped: BTreeMap<DirtKind, u64>,
    /// Items per image file format.
    pub formats: BTreeMap<String, u64>,
    /// Shard files (`webdataset`, `parquet`) or the URL list (`urls`).
    pub data_files: Vec<String>,
    /// Files under `images/` (`folder`) or `files/` (`urls`).
    pub loose_files: u64,
    /// Image bytes generated (including files of duplicates).
    pub image_bytes: u64,
    /// Caption bytes generated.
    pub caption_bytes: u64,
    /// Bytes of every file in the output except `synth.json` itself.
    pub total_bytes: u64,
}

/// Running counts while writing.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub items: u64,
    pub clean: u64,
    pub dirt: BTreeMap<DirtKind, u64>,
    pub dirt_skipped: BTreeMap<DirtKind, u64>,
    pub formats: BTreeMap<String, u64>,
    pub image_bytes: u64,
    pub caption_bytes: u64,
}

impl Tally {
    pub(super) fn add(&mut self, pair: &SynthPair) {
        self.items += 1;
        match pair.dirt {
            Some(k) => *self.dirt.entry(k).or_insert(0) += 1,
            None => self.clean += 1,
        }
        if let Some(k) = pair.dirt_skipped {
            *self.dirt_skipped.entry(k).or_insert(0) += 1;
        }
        *self
            .formats
            .entry(pair.format.as_str().to_string())
            .or_insert(0) += 1;
        self.image_bytes += pair.image.len() as u64;
        self.caption_bytes += pair.caption.len() as u64;
    }
}

/// Writer of `synth.jsonl`.
pub(crate) struct SidecarWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl SidecarWriter {
    pub(super) fn create(dir: &Path) -> Result<SidecarWriter, SynthError> {
        let path = dir.join(SIDECAR_FILE);
        let file = File::create(&path).map_err(SynthError::io(&path))?;
        Ok(SidecarWriter {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    pub(super) fn write(&mut self, record: &SidecarRecord<'_>) -> Result<(), SynthError> {
        serde_json::to_writer(&mut self.out, record).map_err(|source| SynthError::Json {
            path: self.path.clone(),
            source,
        })?;
        self.out
            .write_all(b"\n")
            .map_err(SynthError::io(&self.path))
    }

    /// Flushes and returns the file's size.
    pub(super) fn finish(mut self) -> Result<u64, SynthError> {
        self.out.flush().map_err(SynthError::io(&self.path))?;
        let len = self
            .out
            .get_ref()
            .metadata()
            .map_err(SynthError::io(&self.path))?
            .len();
        Ok(len)
    }
}
