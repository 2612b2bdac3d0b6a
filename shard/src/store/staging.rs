//! Staging files of local writes. `object_store`'s local store writes `<name>#<n>` and renames it
//! to `<name>` when the write completes; a process killed mid-write leaves the staging file, which
//! the store itself neither lists nor deletes. A [`super::StoreRoot`] on local disk finds them
//! here so that `shard verify` reports them and ingest's re-run removes them with the other
//! leftovers of the unit.

use std::path::Path as FsPath;

use object_store::ObjectMeta;
use object_store::path::Path;

/// Whether the last part of `rel` is a staging name (`…#` followed by digits only).
pub(super) fn is_staging(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match name.rsplit_once('#') {
        Some((target, n)) => {
            !target.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn io_error(path: &FsPath, source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{}: {source}", path.display()).into(),
    }
}

/// Staging files under `root/folder` (recursively), with paths relative to `root`.
pub(super) fn find(root: &FsPath, folder: &str) -> object_store::Result<Vec<ObjectMeta>> {
    let mut found = Vec::new();
    let mut pending = vec![root.join(folder)];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            // `Path::parse` keeps the `#` that `Path::from` would percent-encode
            if let (true, Ok(location)) = (meta.is_file() && is_staging(&rel), Path::parse(&rel)) {
                found.push(ObjectMeta {
                    location,
                    last_modified: meta
                        .modified()
                        .map_or_else(|_| chrono::Utc::now(), Into::into),
                    size: meta.len(),
                    e_tag: None,
                    version: None,
                });
            }
        }
    }
    Ok(found)
}

/// Removes a staging file; a missing one is not an error.
pub(super) fn remove(path: &FsPath) -> object_store::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_end_in_a_hash_and_digits() {
        for yes in ["shards/a.parquet#1", "x#12", "d/e/f.json#0"] {
            assert!(is_staging(yes), "{yes}");
        }
        for no in ["shards/a.parquet", "a#b", "a#", "#1", "dir#1/file", "a#1x"] {
            assert!(!is_staging(no), "{no}");
        }
    }
}
