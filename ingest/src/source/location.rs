//! Where an input lives: a local path or an object in a store, with streaming and whole reads.
//!
//! Local files are read with `std::fs` (no runtime needed); objects through `object_store`, rooted
//! with [`flipstream_shard::StoreRoot`] so that `memory://`, `s3://`, `gs://` and `az://` work the
//! same everywhere. Streaming reads of objects go through [`SyncIoBridge`], so a large tar streams
//! with flat memory on a blocking thread.
//!
//! Every streaming read is wrapped in a [`Tap`] that remembers an error of the *storage* (network,
//! disk) as opposed to a format error found by a decoder above it: a truncated file is malformed
//! data, a connection reset is a failed read that must be retried.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use flipstream_shard::reader::FirstError;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::error::{Result, SourceError};
use super::format::Compression;

/// Read buffer for local files.
const LOCAL_BUFFER: usize = 1 << 20;

/// A local file or folder, or an object (or prefix) in a store.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// An absolute local path.
    Local(PathBuf),
    /// An object or prefix: `base` is `scheme://authority`, `path` the key below it.
    Store {
        /// The store, rooted at `base`.
        store: Arc<dyn ObjectStore>,
        /// `scheme://authority`, for messages and URIs.
        base: String,
        /// Object key (or prefix).
        path: Path,
    },
}

/// A file found under a folder or by a glob.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// Where it is.
    pub loc: Location,
    /// Path relative to the listed folder, `/`-separated.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
}

/// True for names that listings skip, like pyarrow does: hidden (`.x`) and private (`_x`) files
/// and folders (`_SUCCESS`, `_temporary`, `.ipynb_checkpoints`, flipstream's own `_flipstream`).
pub(super) fn is_skipped_name(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

impl Location {
    /// Parses a local path, `file://` URL or object-store URL (without glob or trailing-slash
    /// handling, which [`super::resolve`] does).
    pub(crate) fn parse(input: &str) -> Result<Self> {
        let invalid = |detail: String| SourceError::InvalidInput {
            input: input.to_string(),
            detail,
        };
        if !input.contains("://") {
            let abs = std::path::absolute(input).map_err(|e| SourceError::io(input, e))?;
            return Ok(Location::Local(abs));
        }
        let url = url::Url::parse(input).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| invalid("not a local file URL".into()))?;
            return Ok(Location::Local(path));
        }
        let base = url[..url::Position::BeforePath].to_string();
        let root =
            flipstream_shard::StoreRoot::parse(&base).map_err(|e| SourceError::StoreUrl {
                input: input.to_string(),
                source: Box::new(e),
            })?;
        let path = Path::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
        Ok(Location::Store {
            store: root.store().clone(),
            base,
            path,
        })
    }

    /// The full URI: an absolute local path, or `scheme://authority/key`.
    pub(crate) fn uri(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Store { base, path, .. } => store_uri(base, path),
        }
    }

    /// The last path component (file or folder name; for a whole bucket, its name).
    pub(crate) fn name(&self) -> String {
        let name = match self {
            Location::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::Store { base, path, .. } => match path.filename() {
                Some(n) => n.to_string(),
                None => base
                    .split_once("://")
                    .map_or(base.as_str(), |(_, host)| host)
                    .to_string(),
            },
        };
        if name.is_empty() {
            "root".to_string()
        } else {
            name
        }
    }

    /// The location of `rel` (`/`-separated) below this folder.
    pub(crate) fn join(&self, rel: &str) -> Location {
        match self {
            Location::Local(p) => {
                Location::Local(rel.split('/').fold(p.clone(), |acc, part| acc.join(part)))
            }
            Location::Store { store, base, path } => Location::Store {
                store: store.clone(),
                base: base.clone(),
                path: rel
                    .split('/')
                    .fold(path.clone(), |acc, part| acc.join(part)),
            },
        }
    }

    /// Size of the file or object; `NotFound` when it does not exist.
    pub(crate) async fn size(&self) -> Result<u64> {
        match self {
            Location::Local(p) => {
                let meta = tokio::fs::metadata(p)
                    .await
                    .map_err(|e| SourceError::io(self.uri(), e))?;
                if meta.is_file() {
                    Ok(meta.len())
                } else {
                    Err(SourceError::UnknownKind {
                        input: self.uri(),
                        detail: "not a regular file".into(),
                    })
                }
            }
            Location::Store { store, path, .. } => store
                .head(path)
                .await
                .map(|m| m.size)
                .map_err(|e| SourceError::store(self.uri(), "head", e)),
        }
    }

    /// Opens a streaming read (blocking; `rt` drives object-store reads), decompressing when
    /// asked or when the content starts with gzip or zstd magic. A missing file or unreachable store is an error here; later storage failures are
    /// recorded in the returned [`Tap`].
    pub(crate) fn open_read(
        &self,
        compression: Compression,
        rt: &Handle,
    ) -> Result<(Box<dyn Read + Send>, Tap)> {
        let tap = Tap::default();
        let raw: Box<dyn Read + Send> = match self {
            Location::Local(p) => {
                let file = std::fs::File::open(p).map_err(|e| SourceError::io(self.uri(), e))?;
                Box::new(tap.wrap(BufReader::with_capacity(LOCAL_BUFFER, file)))
            }
            Location::Store { store, path, .. } => {
                let got = rt
                    .block_on(store.get(path))
                    .map_err(|e| SourceError::store(self.uri(), "get", e))?;
                let stream = got.into_stream().map_err(std::io::Error::other);
                let bridge = SyncIoBridge::new_with_handle(StreamReader::new(stream), rt.clone());
                Box::new(tap.wrap(BufReader::with_capacity(LOCAL_BUFFER, bridge)))
            }
        };
        // a file's content wins over its name: a gzip file named `.tar` is read as `.tar.gz`
        let mut raw = BufReader::with_capacity(8, raw);
        let head = raw.fill_buf().map_err(|e| SourceError::io(self.uri(), e))?;
        let compression = match (compression, Compression::sniff(head)) {
            (Compression::None, Some(found)) => found,
            (declared, _) => declared,
        };
        let raw: Box<dyn Read + Send> = Box::new(raw);
        let reader: Box<dyn Read + Send> = match compression {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| SourceError::io(self.uri(), e))?,
            ),
        };
        Ok((reader, tap))
    }

    /// Lists every file below this folder (recursively, or down to `max_depth` path components
    /// for local folders), sorted by relative path, skipping hidden and private names (see
    /// [`is_skipped_name`]).
    pub(crate) async fn list(&self, max_depth: Option<usize>) -> Result<Vec<Listed>> {
        let mut files = match self {
            Location::Local(dir) => {
                let dir = dir.clone();
                let uri = self.uri();
                tokio::task::spawn_blocking(move || list_local(&dir, max_depth))
                    .await
                    .map_err(|e| SourceError::Read {
                        input: uri,
                        detail: format!("listing task failed: {e}"),
                    })??
            }
            Location::Store { store, base, path } => {
                let prefix = (!path.as_ref().is_empty()).then_some(path);
                let mut stream = store.list(prefix);
                let mut files = Vec::new();
                while let Some(meta) = stream.next().await {
                    let meta = meta.map_err(|e| SourceError::store(self.uri(), "list", e))?;
                    let rel = match meta.location.as_ref().strip_prefix(path.as_ref()) {
                        Some(r) if path.as_ref().is_empty() => r.to_string(),
                        Some(r) => match r.strip_prefix('/') {
                            Some(r) => r.to_string(),
                            None => continue,
                        },
                        None => continue,
                    };
                    if rel.is_empty() || rel.split('/').any(is_skipped_name) {
                        continue;
                    }
                    let loc = Location::Store {
                        store: store.clone(),
                        base: base.clone(),
                        path: meta.location,
                    };
                    files.push(Listed {
                        loc,
                        rel,
                        size: meta.size,
                    });
                }
                files
            }
        };
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(files)
    }

    /// True for a local folder.
    pub(crate) fn is_local_dir(&self) -> bool {
        matches!(self, Location::Local(p) if p.is_dir())
    }
}

/// `base/key` as a URL, each key segment percent-encoded, so that [`Location::parse`] gives the
/// same object back whatever characters the key holds (`#`, `?`, `%`, spaces).
fn store_uri(base: &str, path: &Path) -> String {
    let Ok(mut url) = url::Url::parse(base) else {
        return format!("{base}/{path}");
    };
    match url.path_segments_mut() {
        Ok(mut segments) => {
            segments.clear();
            for part in path.parts() {
                segments.push(part.as_ref());
            }
        }
        Err(()) => return format!("{base}/{path}"),
    }
    url.to_string()
}

fn list_local(dir: &FsPath, max_depth: Option<usize>) -> Result<Vec<Listed>> {
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .max_depth(max_depth.unwrap_or(usize::MAX))
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_skipped_name(&e.file_name().to_string_lossy()));
    for entry in walk {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(dir).display().to_string();
            match e.into_io_error() {
                Some(io) => SourceError::io(at, io),
                None => SourceError::Read {
                    input: at,
                    detail: "file system loop".into(),
                },
            }
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel_path) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let rel = rel_path
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let size = entry
            .metadata()
            .map_err(|e| SourceError::Read {
                input: entry.path().display().to_string(),
                detail: e.to_string(),
            })?
            .len();
        files.push(Listed {
            loc: Location::Local(entry.path().to_path_buf()),
            rel,
            size,
        });
    }
    Ok(files)
}

/// Remembers the first error of the storage below a decoder (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tap(FirstError);

impl Tap {
    /// Wraps a reader: its errors are recorded here.
    pub(crate) fn wrap<R: Read>(&self, inner: R) -> impl Read + use<R> {
        Tapped {
            inner,
            tap: self.clone(),
        }
    }

    /// The storage error, if one happened.
    pub(crate) fn failure(&self) -> Option<String> {
        self.0.get()
    }
}

struct Tapped<R> {
    inner: R,
    tap: Tap,
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            self.tap.0.record(|| e.to_string());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_uris_round_trip_any_key() {
        for key in ["a/b.tar", "dir with space/x#1?.tar", "100%/ü.parquet"] {
            let Location::Store { store, .. } = Location::parse("memory://loc-test").unwrap()
            else {
                panic!("not a store")
            };
            let loc = Location::Store {
                store,
                base: "memory://loc-test".into(),
                path: Path::parse(key).unwrap(),
            };
            let uri = loc.uri();
            let Location::Store { path, base, .. } = Location::parse(&uri).unwrap() else {
                panic!("{uri} is not a store URL")
            };
            assert_eq!(
                (base.as_str(), path.as_ref()),
                ("memory://loc-test", key),
                "{uri}"
            );
        }
    }

    #[test]
    fn names_of_files_folders_and_buckets() {
        assert_eq!(Location::parse("/data/x.tar").unwrap().name(), "x.tar");
        assert_eq!(Location::parse("memory://bucket/a/b/").unwrap().name(), "b");
        assert_eq!(Location::parse("memory://bucket").unwrap().name(), "bucket");
        assert_eq!(Location::parse("/").unwrap().name(), "root");
        assert!(matches!(
            Location::parse("file:///data/x.tar").unwrap(),
            Location::Local(_)
        ));
    }
}
