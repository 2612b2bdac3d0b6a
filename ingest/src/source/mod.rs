//! Ingest sources: inputs → deterministic units of work → streams of raw items.
//!
//! [`plan_units`] expands inputs (local paths, globs, brace ranges, folders, object-store URLs and
//! prefixes) and splits them into [`UnitPlan`]s: one per tar or text list, slices of
//! [`SourceOptions::unit_rows`] rows for Parquet files and image folders. Planning reads listings
//! and Parquet footers only. [`open_unit`] turns one plan into a [`UnitSource`], a blocking
//! iterator of [`RawItem`]s in unit order.
//!
//! Kinds ([`SourceKind`]):
//! - `webdataset`: tars of members grouped by key (`<key>.jpg`, `<key>.txt`, `<key>.json`);
//! - `parquet`: Parquet with images (Hugging Face `struct<bytes, path>` or binary columns), and
//!   Parquet URL lists;
//! - `folder`: folders of images with `<stem>.txt` / `<stem>.json` sidecars;
//! - `textlist`: CSV / TSV / JSON-lines URL lists, optionally gzip or zstd compressed.
//!
//! Bad data never fails a unit: a truncated tar, an unreadable member, a bad row becomes an item
//! with [`RawItem::malformed`] set, so it is counted and rejected. Only an unreadable *input*
//! (missing file, unreachable store, failed read) is a [`SourceError`]. `docs/sources.md` describes
//! the rules (kind detection, column names, keys, unit ids) for users.

mod columns;
mod error;
mod folder;
mod format;
mod keys;
mod location;
mod meta;
mod options;
mod parquet;
mod pattern;
mod plan;
mod resolve;
mod textlist;
mod values;
mod webdataset;

use arrow::datatypes::Field;
use bytes::Bytes;
use flipstream_schemas::UnitSpec;
use flipstream_shard::problems::Validate;
use flipstream_shard::rows::Scalar;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

pub use error::{Result, SourceError};
pub use options::{Passthrough, SourceOptions};
pub use pattern::expand_braces;
pub use plan::plan_units;

use format::FileFormat;
use location::Location;

/// What an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SourceKind {
    /// WebDataset tar shards.
    #[serde(rename = "webdataset")]
    WebDataset,
    /// Parquet files holding the images.
    #[serde(rename = "parquet")]
    Parquet,
    /// A folder of image files with caption sidecars.
    #[serde(rename = "folder")]
    Folder,
    /// A list of image URLs with captions (Parquet, CSV, TSV, JSON lines).
    #[serde(rename = "url_list")]
    UrlList,
}

impl SourceKind {
    /// Every kind.
    pub const ALL: [SourceKind; 4] = [
        SourceKind::WebDataset,
        SourceKind::Parquet,
        SourceKind::Folder,
        SourceKind::UrlList,
    ];

    /// The name used in commit records (`UnitSpec::kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::WebDataset => "webdataset",
            SourceKind::Parquet => "parquet",
            SourceKind::Folder => "folder",
            SourceKind::UrlList => "url_list",
        }
    }

    /// Parses [`SourceKind::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned unit of work; `spec` is what goes into the commit record.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitPlan {
    /// Id, input URI, kind name and (for slices) the item range.
    pub spec: UnitSpec,
    /// The kind of input.
    pub kind: SourceKind,
    /// Items in the unit when known without reading it (Parquet slices, folder slices).
    pub estimated_items: Option<u64>,
}

/// Where an item's image is.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageRef {
    /// The encoded image bytes, as read.
    Bytes(Bytes),
    /// A URL to download.
    Url(String),
    /// The item has no image (sample without image member, null image cell).
    Missing,
}

impl ImageRef {
    /// The image of a URL-list row: the URL to fetch, or `Missing` and why the row is malformed.
    pub fn of_url(url: Option<&str>) -> (ImageRef, Option<String>) {
        match url {
            Some(u) => (ImageRef::Url(u.to_string()), None),
            None => (ImageRef::Missing, Some("row has no URL".to_string())),
        }
    }
}

/// One input item, in unit order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    /// Position in the unit, 0-based, dense.
    pub index: u64,
    /// Stable key: the source's own key when it has one, else `<input stem>/<index in input:09>`.
    pub key: String,
    /// Value of the `source` column: the input's file (or folder) name.
    pub source: String,
    /// The image.
    pub image: ImageRef,
    /// Raw caption bytes as found (not validated as UTF-8); `None` when absent.
    pub caption: Option<Bytes>,
    /// Source URL, when the input has one.
    pub url: Option<String>,
    /// Passthrough values, aligned with [`UnitSource::extra_fields`].
    pub extras: Vec<Option<Scalar>>,
    /// `Some(detail)` when the row or member itself is malformed (to be rejected as
    /// `malformed_row`).
    pub malformed: Option<String>,
}

/// Counters a source keeps while reading, beyond the items themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// Passthrough values that did not fit their column's type (inferred from the first JSON of
    /// a tar or folder unit, or a window of rows of a text list) and were stored as null.
    pub extras_nulled: u64,
    /// JSON fields (tar and folder sidecars, JSON lines) that are not passthrough columns of the
    /// unit because the values the types were inferred from lacked them.
    pub extras_unknown: u64,
    /// Tar members and sidecar files that belong to no item (hidden files, members without key).
    pub skipped_members: u64,
}

/// A unit's items, read in order. Blocking: run it on a blocking thread.
pub trait UnitSource: Send {
    /// Passthrough columns of this unit (names mapped with
    /// [`flipstream_schemas::extra_column_name`], nullable), fixed before the first item.
    fn extra_fields(&self) -> &[Field];

    /// The next item, or `None` at the end. Bad data gives an item with `malformed` set; only a
    /// failure to read the input itself is an `Err`, after which the source is finished.
    fn next_item(&mut self) -> Option<Result<RawItem>>;

    /// Counters so far (values nulled, fields unknown, members skipped).
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

/// The unit being read: what every reader needs to name its items and errors.
#[derive(Debug, Clone)]
pub(crate) struct UnitCtx {
    /// Unit id.
    pub id: String,
    /// Input URI.
    pub uri: String,
    /// Where the input is.
    pub loc: Location,
    /// Value of the `source` column.
    pub source: String,
    /// Prefix of generated keys.
    pub stem: String,
    /// First item of the slice in the input.
    pub start: u64,
    /// One past the last item of the slice (`None`: to the end).
    pub end: Option<u64>,
}

impl UnitCtx {
    fn new(plan: &UnitPlan) -> Result<Self> {
        let loc = Location::parse(&plan.spec.source)?;
        let source = loc.name();
        Ok(Self {
            id: plan.spec.id.clone(),
            uri: loc.uri(),
            stem: format::stem_of(&source).to_string(),
            source,
            loc,
            start: plan.spec.start.unwrap_or(0),
            end: plan.spec.end,
        })
    }

    /// The generated key of the item at `index_in_input`.
    pub(crate) fn fallback_key(&self, index_in_input: u64) -> String {
        keys::fallback_key(&self.stem, index_in_input)
    }

    /// A malformed item.
    pub(crate) fn malformed(
        &self,
        index: u64,
        key: String,
        detail: String,
        n_extras: usize,
    ) -> RawItem {
        RawItem {
            index,
            key,
            source: self.source.clone(),
            image: ImageRef::Missing,
            caption: None,
            url: None,
            extras: vec![None; n_extras],
            malformed: Some(detail),
        }
    }

    /// An error about this unit.
    pub(crate) fn unit_error(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Unit {
            unit: self.id.clone(),
            input: self.uri.clone(),
            detail: detail.into(),
        }
    }

    /// A failed read of this unit's input.
    pub(crate) fn read_error(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Read {
            input: self.uri.clone(),
            detail: detail.into(),
        }
    }
}

/// Opens a planned unit for reading. Blocking (call it from a blocking thread, not from async
/// code); `rt` drives object-store reads.
pub fn open_unit(plan: &UnitPlan, opts: &SourceOptions, rt: Handle) -> Result<Box<dyn UnitSource>> {
    opts.validate()?;
    let ctx = UnitCtx::new(plan)?;
    if plan.spec.kind != plan.kind.as_str() {
        return Err(ctx.unit_error(format!(
            "spec kind {:?} does not match {}",
            plan.spec.kind, plan.kind
        )));
    }
    let format = FileFormat::detect(&ctx.source);
    match (plan.kind, format) {
        (SourceKind::WebDataset, Some(FileFormat::Tar { gzip })) => {
            webdataset::open(ctx, gzip, opts, &rt)
        }
        (SourceKind::Parquet, Some(FileFormat::Parquet)) => {
            parquet::open(ctx, parquet::Mode::Images, opts, rt)
        }
        (SourceKind::UrlList, Some(FileFormat::Parquet)) => {
            parquet::open(ctx, parquet::Mode::Urls, opts, rt)
        }
        (
            SourceKind::UrlList,
            Some(f @ (FileFormat::Delimited { .. } | FileFormat::Json { .. })),
        ) => textlist::open(ctx, f, opts, &rt),
        (SourceKind::Folder, _) => folder::open(ctx, opts, rt),
        (kind, _) => Err(ctx.unit_error(format!("a {kind} unit cannot read {:?}", ctx.source))),
    }
}
