//! Planning: inputs → sorted, deterministic [`UnitPlan`]s.
//!
//! A unit id is `<stem>-<hash>` for whole-file units (tars, text lists) and
//! `<stem>-<hash>-<slice:05>` for slices (Parquet files, image folders), where `stem` is the input
//! name without its format extension and `hash` the first 8 hex digits of the BLAKE3 of the full
//! input URI. Two inputs with the same name in different folders get different ids; the same
//! inputs always give the same list, sorted by id (so a file's slices stay in order).

use flipstream_shard::problems::Validate;
use futures::{StreamExt, TryStreamExt};
use tokio::runtime::Handle;

use flipstream_schemas::UnitSpec;
use flipstream_schemas::layout::sanitize_unit_id;

use super::error::{Result, SourceError};
use super::format::{FileFormat, stem_of};
use super::location::Location;
use super::options::SourceOptions;
use super::resolve::{Resolved, resolve};
use super::{SourceKind, UnitPlan, folder, parquet, textlist};

/// Parquet footers and text-list headers read at once while planning.
const INSPECT_CONCURRENCY: usize = 16;
/// Characters of the stem kept in a unit id.
const STEM_CHARS: usize = 80;

/// The id of a unit of the input `uri` named `name`; `slice` for sliced kinds.
pub(super) fn unit_id(name: &str, uri: &str, slice: Option<u64>) -> String {
    let hash = blake3::hash(uri.as_bytes()).to_hex();
    let short = hash.get(..8).unwrap_or_default();
    let stem: String = stem_of(name).chars().take(STEM_CHARS).collect();
    let raw = match slice {
        Some(s) => format!("{stem}-{short}-{s:05}"),
        None => format!("{stem}-{short}"),
    };
    sanitize_unit_id(&raw)
}

fn whole(loc: &Location, kind: SourceKind) -> UnitPlan {
    let uri = loc.uri();
    let spec = UnitSpec {
        id: unit_id(&loc.name(), &uri, None),
        source: uri,
        kind: kind.as_str().into(),
        start: None,
        end: None,
    };
    UnitPlan {
        spec,
        kind,
        estimated_items: None,
    }
}

/// Slices `[0, items)` into units of `unit_rows` (one empty unit when `items` is 0).
fn slices(loc: &Location, kind: SourceKind, items: u64, unit_rows: u64) -> Vec<UnitPlan> {
    let uri = loc.uri();
    let name = loc.name();
    let count = items.div_ceil(unit_rows).max(1);
    (0..count)
        .map(|s| {
            let start = s * unit_rows;
            let end = (start + unit_rows).min(items);
            let spec = UnitSpec {
                id: unit_id(&name, &uri, Some(s)),
                source: uri.clone(),
                kind: kind.as_str().into(),
                start: Some(start),
                end: Some(end),
            };
            UnitPlan {
                spec,
                kind,
                estimated_items: Some(end - start),
            }
        })
        .collect()
}

/// The units of one resolved input.
async fn plan_input(r: Resolved, opts: &SourceOptions, rt: Handle) -> Result<Vec<UnitPlan>> {
    match r {
        Resolved::File {
            loc,
            format: FileFormat::Tar { .. },
        } => Ok(vec![whole(&loc, SourceKind::WebDataset)]),
        Resolved::File {
            loc,
            format: FileFormat::Parquet,
        } => {
            let (kind, rows) = parquet::inspect(&loc, opts).await?;
            Ok(slices(&loc, kind, rows, opts.unit_rows))
        }
        Resolved::File { loc, format } => {
            let (l, o) = (loc.clone(), opts.clone());
            tokio::task::spawn_blocking(move || textlist::inspect(&l, format, &o, &rt))
                .await
                .map_err(|e| SourceError::Read {
                    input: loc.uri(),
                    detail: format!("inspect task failed: {e}"),
                })??;
            Ok(vec![whole(&loc, SourceKind::UrlList)])
        }
        Resolved::Folder { loc, files } => {
            let images = folder::remember_listing(&loc, &files);
            Ok(slices(&loc, SourceKind::Folder, images, opts.unit_rows))
        }
    }
}

/// Expands `inputs` and splits them into units, sorted by id.
///
/// Reads listings, Parquet footers and the first lines of text lists, nothing else. Errors name
/// the input: a pattern that matches nothing, a missing file, an unsupported format, a Parquet
/// file with neither an image nor a URL column, a text list without a URL column.
pub async fn plan_units(inputs: &[String], opts: &SourceOptions) -> Result<Vec<UnitPlan>> {
    opts.validate()?;
    if inputs.is_empty() {
        return Err(SourceError::Option("no inputs given".into()));
    }
    let rt = Handle::try_current()
        .map_err(|_| SourceError::Option("plan_units must run on a tokio runtime".into()))?;
    let resolved = resolve(inputs).await?;
    // Footers and text-list headers are read concurrently, the results kept in input order.
    let planned: Vec<Vec<UnitPlan>> = futures::stream::iter(resolved)
        .map(|r| {
            let rt = rt.clone();
            async move { plan_input(r, opts, rt).await }
        })
        .buffered(INSPECT_CONCURRENCY)
        .try_collect()
        .await?;
    let mut plans: Vec<UnitPlan> = planned.into_iter().flatten().collect();
    plans.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    for pair in plans.windows(2) {
        if let [a, b] = pair
            && a.spec.id == b.spec.id
        {
            return Err(SourceError::InvalidInput {
                input: b.spec.source.clone(),
                detail: format!(
                    "unit id {} is also the id of a unit of {}",
                    b.spec.id, a.spec.source
                ),
            });
        }
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_readable_safe_and_distinct() {
        let a = unit_id("shard-00001.tar", "/data/a/shard-00001.tar", None);
        let b = unit_id("shard-00001.tar", "/data/b/shard-00001.tar", None);
        assert!(
            a.starts_with("shard-00001-") && a.len() == "shard-00001-".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(
            a,
            unit_id("shard-00001.tar", "/data/a/shard-00001.tar", None)
        );
        let s = unit_id("my file.parquet", "s3://b/my file.parquet", Some(3));
        assert!(s.starts_with("my_file-") && s.ends_with("-00003"), "{s}");
        let long = unit_id(&"x".repeat(300), "u", Some(1));
        assert!(long.len() <= 120 && long.ends_with("-00001"), "{long}");
    }
}
