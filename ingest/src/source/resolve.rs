//! Input strings to concrete inputs: brace ranges, globs, folders and prefixes expanded, each
//! input classified by name (see [`FileFormat`]).
//!
//! A folder (local directory, or a store URL ending in `/` or naming a prefix) becomes its tars if
//! it holds any, else its Parquet files, else a folder of images. Hidden and private names
//! (`.x`, `_x`) are skipped everywhere, like pyarrow does.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};

use super::error::{Result, SourceError};
use super::format::{FileFormat, SUPPORTED, is_image_ext};
use super::location::{Listed, Location};
use super::pattern::{Glob, expand_braces, glob_base, is_glob};

/// One concrete input.
#[derive(Debug, Clone)]
pub(super) enum Resolved {
    /// A file or object of a known format.
    File {
        /// Where it is.
        loc: Location,
        /// What it is.
        format: FileFormat,
    },
    /// A folder of images, with its full listing (images and sidecars).
    Folder {
        /// The folder.
        loc: Location,
        /// Every file below it, sorted by relative path.
        files: Vec<Listed>,
    },
}

impl Resolved {
    /// The input's URI.
    pub(super) fn uri(&self) -> String {
        match self {
            Resolved::File { loc, .. } | Resolved::Folder { loc, .. } => loc.uri(),
        }
    }
}

/// Inputs looked up at once (object-store `HEAD`s and listings).
const CONCURRENCY: usize = 16;

/// Expands and classifies every input; duplicates (the same URI reached twice) are dropped.
pub(super) async fn resolve(inputs: &[String]) -> Result<Vec<Resolved>> {
    let mut expanded = Vec::new();
    for input in inputs {
        let one = expand_braces(input).map_err(|detail| SourceError::InvalidInput {
            input: input.clone(),
            detail,
        })?;
        expanded.extend(one);
    }
    let found: Vec<Vec<Resolved>> = futures::stream::iter(expanded)
        .map(|one| async move {
            if is_glob(&one) {
                resolve_glob(&one).await
            } else {
                resolve_one(&one).await
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut seen = BTreeSet::new();
    Ok(found
        .into_iter()
        .flatten()
        .filter(|r| seen.insert(r.uri()))
        .collect())
}

/// A file with a known format, or an error naming it.
fn classify_file(loc: Location) -> Result<Resolved> {
    let name = loc.name();
    match FileFormat::detect(&name) {
        Some(format) => Ok(Resolved::File { loc, format }),
        None => Err(SourceError::UnknownKind {
            input: loc.uri(),
            detail: format!("expected {SUPPORTED}"),
        }),
    }
}

/// A folder's inputs: its tars, else its Parquet files, else itself as a folder of images.
fn classify_folder(loc: Location, files: Vec<Listed>) -> Result<Vec<Resolved>> {
    let of_format = |want: fn(FileFormat) -> bool| -> Vec<Resolved> {
        files
            .iter()
            .filter_map(|f| {
                FileFormat::detect(&f.rel)
                    .filter(|fmt| want(*fmt))
                    .map(|format| (f, format))
            })
            .map(|(f, format)| Resolved::File {
                loc: f.loc.clone(),
                format,
            })
            .collect()
    };
    let tars = of_format(|f| matches!(f, FileFormat::Tar { .. }));
    if !tars.is_empty() {
        return Ok(tars);
    }
    let parquets = of_format(|f| matches!(f, FileFormat::Parquet));
    if !parquets.is_empty() {
        return Ok(parquets);
    }
    let has_images = files.iter().any(|f| {
        f.rel
            .rsplit_once('.')
            .is_some_and(|(_, ext)| is_image_ext(ext))
    });
    if has_images {
        return Ok(vec![Resolved::Folder { loc, files }]);
    }
    Err(SourceError::UnknownKind {
        input: loc.uri(),
        detail: format!(
            "the folder holds no tars, Parquet files or images ({} files); expected {SUPPORTED}",
            files.len()
        ),
    })
}

async fn resolve_one(input: &str) -> Result<Vec<Resolved>> {
    let loc = Location::parse(input)?;
    match &loc {
        Location::Local(path) => {
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| SourceError::io(input, e))?;
            if meta.is_dir() {
                let files = loc.list(None).await?;
                classify_folder(loc, files)
            } else if meta.is_file() {
                Ok(vec![classify_file(loc)?])
            } else {
                // reading a FIFO would wait for a writer forever
                Err(SourceError::UnknownKind {
                    input: loc.uri(),
                    detail: "not a regular file or folder (a FIFO, socket or device)".into(),
                })
            }
        }
        Location::Store { .. } => {
            if !input.ends_with('/') {
                match loc.size().await {
                    Ok(_) => return Ok(vec![classify_file(loc)?]),
                    Err(SourceError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let files = loc.list(None).await?;
            if files.is_empty() {
                return Err(SourceError::NotFound {
                    input: input.to_string(),
                });
            }
            classify_folder(loc, files)
        }
    }
}

async fn resolve_glob(pattern: &str) -> Result<Vec<Resolved>> {
    let invalid = |detail: String| SourceError::InvalidInput {
        input: pattern.to_string(),
        detail,
    };
    let (base, rest) = glob_base(pattern);
    let glob = Glob::new(rest).map_err(invalid)?;
    let base_loc = if base.is_empty() {
        Location::parse(".")?
    } else {
        Location::parse(base.trim_end_matches('/'))?
    };
    let base_loc = match (&base_loc, base) {
        // `/x` keeps its root: trimming `/` would leave an empty path.
        (Location::Local(_), "/") => Location::parse("/")?,
        _ => base_loc,
    };
    if matches!(base_loc, Location::Local(_)) && !base_loc.is_local_dir() {
        return Err(SourceError::NoMatch {
            input: pattern.to_string(),
        });
    }
    let depth = (!rest.contains("**")).then(|| rest.split('/').count());
    let matched: Vec<Listed> = base_loc
        .list(depth)
        .await?
        .into_iter()
        .filter(|f| glob.matches(&f.rel))
        .collect();
    if matched.is_empty() {
        return Err(SourceError::NoMatch {
            input: pattern.to_string(),
        });
    }
    matched.into_iter().map(|f| classify_file(f.loc)).collect()
}
