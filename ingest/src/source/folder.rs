//! Folders of images: every image file below the folder (recursively, sorted by relative path) is
//! an item. Its caption is the sibling `<stem>.txt`, else the caption field of `<stem>.json`, whose
//! scalar fields are passthrough columns. Units are slices of `unit_rows` images.
//!
//! The listing made while planning is remembered for the process, so opening a slice does not
//! list the folder again; a worker that did not plan lists it once. Local files are read on the
//! calling thread; objects are fetched ahead, several at a time, by a task on the runtime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::datatypes::Field;
use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::error::Result;
use super::format::is_image_ext;
use super::keys::folder_key;
use super::location::{Listed, Location};
use super::meta::{JsonObject, SidecarSchema, parse_object};
use super::options::SourceOptions;
use super::{ImageRef, RawItem, SourceStats, UnitCtx, UnitSource};

/// Objects fetched at once from a store.
const FETCH_CONCURRENCY: usize = 16;
/// Sidecars tried at open time to find one that parses (for the passthrough columns).
const SCHEMA_TRIES: usize = 32;

/// One image of a folder.
#[derive(Debug, Clone)]
struct Entry {
    rel: String,
    size: u64,
    txt: bool,
    json: bool,
}

impl Entry {
    fn sidecar(&self, ext: &str) -> String {
        format!("{}.{ext}", folder_key(&self.rel))
    }
}

static LISTINGS: LazyLock<Mutex<HashMap<String, Arc<Vec<Entry>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn entries_of(files: &[Listed]) -> Vec<Entry> {
    let names: HashSet<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    files
        .iter()
        .filter(|f| {
            f.rel
                .rsplit_once('.')
                .is_some_and(|(_, ext)| is_image_ext(ext))
        })
        .map(|f| {
            let key = folder_key(&f.rel);
            Entry {
                rel: f.rel.clone(),
                size: f.size,
                txt: names.contains(format!("{key}.txt").as_str()),
                json: names.contains(format!("{key}.json").as_str()),
            }
        })
        .collect()
}

/// Remembers a folder's listing (replacing an older one) and returns its number of images.
pub(super) fn remember_listing(loc: &Location, files: &[Listed]) -> u64 {
    let entries = Arc::new(entries_of(files));
    let n = entries.len() as u64;
    if let Ok(mut cache) = LISTINGS.lock() {
        cache.insert(loc.uri(), entries);
    }
    n
}

fn listing(ctx: &UnitCtx, rt: &Handle) -> Result<Arc<Vec<Entry>>> {
    if let Some(found) = LISTINGS.lock().ok().and_then(|c| c.get(&ctx.uri).cloned()) {
        return Ok(found);
    }
    let files = rt.block_on(ctx.loc.list(None))?;
    let entries = Arc::new(entries_of(&files));
    if let Ok(mut cache) = LISTINGS.lock() {
        cache.insert(ctx.uri.clone(), entries.clone());
    }
    Ok(entries)
}

/// One read: the bytes, a problem with this file (malformed item), or a storage failure (error).
#[derive(Debug)]
enum Got {
    Bytes(Bytes),
    Bad(String),
    Failed(String),
}

fn read_local(loc: &Location, rel: &str) -> Got {
    match loc.join(rel) {
        Location::Local(p) => match std::fs::read(&p) {
            Ok(b) => Got::Bytes(Bytes::from(b)),
            Err(e) => Got::Bad(format!("cannot read {rel}: {e}")),
        },
        Location::Store { .. } => Got::Failed(format!("{rel} is not a local file")),
    }
}

async fn read_store(loc: &Location, rel: &str) -> Got {
    let Location::Store { store, path, .. } = loc.join(rel) else {
        return Got::Failed(format!("{rel} is not in a store"));
    };
    let got = match store.get(&path).await {
        Ok(g) => g.bytes().await,
        Err(e) => Err(e),
    };
    match got {
        Ok(b) => Got::Bytes(b),
        Err(object_store::Error::NotFound { .. }) => {
            Got::Bad(format!("{rel} vanished since listing"))
        }
        Err(e) => Got::Failed(format!("get {rel}: {e}")),
    }
}

/// The files of one item.
#[derive(Debug)]
struct Fetched {
    image: Got,
    txt: Option<Got>,
    json: Option<Got>,
}

fn too_big(e: &Entry, max: u64) -> Option<Got> {
    (e.size > max).then(|| {
        Got::Bad(format!(
            "{} is {} bytes, above the {max}-byte limit",
            e.rel, e.size
        ))
    })
}

fn fetch_local(loc: &Location, e: &Entry, max: u64) -> Fetched {
    Fetched {
        image: too_big(e, max).unwrap_or_else(|| read_local(loc, &e.rel)),
        txt: e.txt.then(|| read_local(loc, &e.sidecar("txt"))),
        json: e.json.then(|| read_local(loc, &e.sidecar("json"))),
    }
}

async fn fetch_store(loc: Location, e: Entry, max: u64) -> Fetched {
    let image = match too_big(&e, max) {
        Some(g) => g,
        None => read_store(&loc, &e.rel).await,
    };
    let txt = if e.txt {
        Some(read_store(&loc, &e.sidecar("txt")).await)
    } else {
        None
    };
    let json = if e.json {
        Some(read_store(&loc, &e.sidecar("json")).await)
    } else {
        None
    };
    Fetched { image, txt, json }
}

enum Reader {
    Local,
    Store(mpsc::Receiver<Fetched>),
}

struct FolderSource {
    ctx: UnitCtx,
    entries: Arc<Vec<Entry>>,
    pos: usize,
    end: usize,
    next_index: u64,
    schema: SidecarSchema,
    reader: Reader,
    max_item_bytes: u64,
    stats: SourceStats,
    failed: bool,
}

/// Opens a folder slice.
pub(super) fn open(ctx: UnitCtx, opts: &SourceOptions, rt: Handle) -> Result<Box<dyn UnitSource>> {
    let entries = listing(&ctx, &rt)?;
    let start = usize::try_from(ctx.start).unwrap_or(usize::MAX);
    let end = ctx
        .end
        .map_or(entries.len(), |e| usize::try_from(e).unwrap_or(usize::MAX));
    if start > end || end > entries.len() {
        return Err(ctx.unit_error(format!(
            "slice {start}..{end} does not fit the folder's {} images (it changed since planning)",
            entries.len()
        )));
    }
    let slice = entries.get(start..end).unwrap_or_default();
    // The first sidecar of the slice that parses fixes the passthrough columns.
    let mut first: Option<JsonObject> = None;
    for e in slice.iter().filter(|e| e.json).take(SCHEMA_TRIES) {
        let got = match &ctx.loc {
            Location::Local(_) => read_local(&ctx.loc, &e.sidecar("json")),
            Location::Store { .. } => rt.block_on(read_store(&ctx.loc, &e.sidecar("json"))),
        };
        match got {
            Got::Bytes(b) => {
                if let Ok(m) = parse_object(&b) {
                    first = Some(m);
                    break;
                }
            }
            Got::Bad(_) => {}
            Got::Failed(detail) => return Err(ctx.read_error(detail)),
        }
    }
    let schema = SidecarSchema::infer(first.as_ref(), opts);
    let reader = match &ctx.loc {
        Location::Local(_) => Reader::Local,
        Location::Store { .. } => {
            let (tx, rx) = mpsc::channel(FETCH_CONCURRENCY * 2);
            let (loc, todo, max) = (ctx.loc.clone(), slice.to_vec(), opts.max_item_bytes);
            rt.spawn(async move {
                let mut fetched = futures::stream::iter(todo)
                    .map(|e| fetch_store(loc.clone(), e, max))
                    .buffered(FETCH_CONCURRENCY);
                while let Some(f) = fetched.next().await {
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
            });
            Reader::Store(rx)
        }
    };
    Ok(Box::new(FolderSource {
        ctx,
        entries,
        pos: start,
        end,
        next_index: 0,
        schema,
        reader,
        max_item_bytes: opts.max_item_bytes,
        stats: SourceStats::default(),
        failed: false,
    }))
}

impl FolderSource {
    fn item(&mut self, entry: &Entry, f: Fetched) -> Result<RawItem> {
        let index = self.next_index;
        let key = folder_key(&entry.rel).to_string();
        let n = self.schema.fields().len();
        let image = match f.image {
            Got::Bytes(b) => b,
            Got::Bad(detail) => return Ok(self.ctx.malformed(index, key, detail, n)),
            Got::Failed(detail) => return Err(self.ctx.read_error(detail)),
        };
        let caption = match f.txt {
            Some(Got::Bytes(b)) => Some(b),
            Some(Got::Bad(detail)) => return Ok(self.ctx.malformed(index, key, detail, n)),
            Some(Got::Failed(detail)) => return Err(self.ctx.read_error(detail)),
            None => None,
        };
        let meta = match f.json {
            Some(Got::Bytes(b)) => match parse_object(&b) {
                Ok(m) => Some(m),
                Err(e) => {
                    return Ok(self.ctx.malformed(
                        index,
                        key,
                        format!("{}: {e}", entry.sidecar("json")),
                        n,
                    ));
                }
            },
            Some(Got::Bad(detail)) => return Ok(self.ctx.malformed(index, key, detail, n)),
            Some(Got::Failed(detail)) => return Err(self.ctx.read_error(detail)),
            None => None,
        };
        let caption = caption.or_else(|| meta.as_ref().and_then(|m| self.schema.caption(m)));
        let url = meta.as_ref().and_then(|m| self.schema.url(m));
        let extras = self.schema.extras(meta.as_ref(), &mut self.stats);
        Ok(RawItem {
            index,
            key,
            source: self.ctx.source.clone(),
            image: ImageRef::Bytes(image),
            caption,
            url,
            extras,
            malformed: None,
        })
    }
}

impl UnitSource for FolderSource {
    fn extra_fields(&self) -> &[Field] {
        self.schema.fields()
    }

    fn next_item(&mut self) -> Option<Result<RawItem>> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let entry = self.entries.get(self.pos)?.clone();
        let fetched = match &mut self.reader {
            Reader::Local => fetch_local(&self.ctx.loc, &entry, self.max_item_bytes),
            Reader::Store(rx) => match rx.blocking_recv() {
                Some(f) => f,
                None => {
                    self.failed = true;
                    return Some(Err(self.ctx.read_error("the fetch task stopped early")));
                }
            },
        };
        self.pos += 1;
        let item = self.item(&entry, fetched);
        match &item {
            Ok(_) => self.next_index += 1,
            Err(_) => self.failed = true,
        }
        Some(item)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}
