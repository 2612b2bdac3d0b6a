//! `shard verify`: checks every object of a dataset against its commit record and reports *all*
//! problems, each naming the object and what is wrong.
//!
//! Checked:
//! - the manifest exists and parses; every commit record parses, is consistent, and carries the
//!   manifest's configuration fingerprint; no file is named by two records;
//! - every shard and rejection file a record names: it exists, has the recorded size and (unless
//!   checksums are off) the recorded BLAKE3, its footer is flipstream schema v1 of the right kind
//!   ([`flipstream_schemas::validate_parquet_file`] on the fetched footer), for the right unit, with
//!   the recorded row count and row groups;
//! - every other object under the root: orphans of a committed unit, leftovers of a unit without
//!   a (readable) commit record, and stray objects outside the layout;
//! - every retry unit (`ingest --retry-failed`): the unit it re-tried is committed and re-tried
//!   once, and each of its keys was rejected there, for the reasons its record says it
//!   superseded;
//! - keys are unique across all shards ([`keys`], unless `check_keys` is off).
//!
//! A file found with a problem is read and checked a second time, and only what the second read
//! confirms is reported (`rechecked` counts such files): a read that went wrong in transit is
//! never reported as damage. Files are checked concurrently (bounded). Checksums stream each object through BLAKE3 without
//! holding it in memory; without checksums only the footer is fetched, so a flipped byte inside a
//! column chunk goes unnoticed (a changed size or a damaged footer does not).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::progress::Progress;
use arrow::datatypes::{Field, Schema};
use bytes::Bytes;
use flipstream_schemas::{
    CommitRecord, DatasetManifest, FileKind, ValidationError, layout, metadata,
    validate_parquet_file, validate_schema,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};
use serde::{Deserialize, Serialize};

pub mod keys;

use crate::dataset::{read_commits_lenient, read_manifest, unreferenced_objects};
use crate::error::{Result, ShardError};
use crate::store::StoreRoot;

/// Checks a footer's flipstream metadata (schema version, file kind) and its schema against
/// schema v1; returns the passthrough columns. The same checks as
/// [`validate_parquet_file`], for a footer that is already parsed.
pub fn check_footer(
    meta: &ParquetMetaData,
    schema: &Schema,
    kind: FileKind,
) -> Result<Vec<Field>, ValidationError> {
    let kv = meta.file_metadata().key_value_metadata();
    let version = metadata::lookup(kv, metadata::SCHEMA_VERSION_KEY).ok_or_else(|| {
        ValidationError::Metadata(format!(
            "no `{}` key: not written by flipstream",
            metadata::SCHEMA_VERSION_KEY
        ))
    })?;
    if version != flipstream_schemas::SCHEMA_VERSION.to_string() {
        return Err(ValidationError::Metadata(format!(
            "schema version {version}, this build reads {}",
            flipstream_schemas::SCHEMA_VERSION
        )));
    }
    let found = metadata::lookup(kv, metadata::KIND).and_then(FileKind::parse);
    if found != Some(kind) {
        return Err(ValidationError::Metadata(format!(
            "file kind is {}, expected {}",
            found.map_or("missing", FileKind::as_str),
            kind.as_str()
        )));
    }
    Ok(validate_schema(schema, kind)?)
}

/// What `shard verify` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Stream every file through BLAKE3 (reads the whole dataset).
    pub checksums: bool,
    /// Files checked at once.
    pub concurrency: usize,
    /// Read every shard's `key` column and report keys found in more than one row ([`keys`]).
    pub check_keys: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            checksums: true,
            concurrency: 16,
            check_keys: true,
        }
    }
}

/// Kinds of problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `_flipstream/manifest.json` is missing.
    MissingManifest,
    /// The manifest does not parse or is not ours.
    BadManifest,
    /// A commit record does not parse or is inconsistent.
    BadCommitRecord,
    /// A commit record's configuration fingerprint differs from the manifest's.
    ConfigMismatch,
    /// A file is named by two commit records.
    DuplicateReference,
    /// A named file does not exist.
    MissingFile,
    /// A named file could not be read (store error).
    Unreadable,
    /// A named file has another size than recorded.
    SizeMismatch,
    /// A named file has another BLAKE3 than recorded.
    ChecksumMismatch,
    /// A named file is not readable Parquet (truncated, damaged footer).
    NotParquet,
    /// A named file is Parquet but not a flipstream file of the expected kind and version.
    WrongMetadata,
    /// A named file's columns differ from schema v1.
    WrongSchema,
    /// A named file belongs to another unit (by its metadata).
    WrongUnit,
    /// A named file holds another number of rows than recorded.
    RowCountMismatch,
    /// A named shard's row groups differ from the record.
    RowGroupMismatch,
    /// A file of a committed unit that its commit record does not name.
    Orphan,
    /// A file of a unit without a (readable) commit record.
    Uncommitted,
    /// An object outside the dataset layout.
    Stray,
    /// A retry unit (`ingest --retry-failed`) that does not match the unit it re-tried: that
    /// unit is not committed, is re-tried twice, or did not reject the keys the retry holds.
    BadRetry,
    /// A shard holds keys that an earlier shard (or an earlier row of its own) holds.
    DuplicateKey,
}

/// One problem: the object and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    /// Path relative to the dataset root.
    pub object: String,
    /// Kind of problem.
    pub kind: ProblemKind,
    /// What exactly is wrong.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Dataset root.
    pub url: String,
    /// Readable commit records.
    pub units: u64,
    /// Files named by them and checked.
    pub files: u64,
    /// Bytes streamed through BLAKE3.
    pub bytes_hashed: u64,
    /// Whether checksums were checked.
    pub checksums: bool,
    /// Files read a second time because the first read found a problem (a problem is reported
    /// only when the second read finds it too).
    #[serde(default)]
    pub rechecked: u64,
    /// Shard rows whose keys were checked for uniqueness (0 when the check was off).
    #[serde(default)]
    pub keys_checked: u64,
    /// Every problem, sorted by object.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A file a commit record names, with what the record says about it.
#[derive(Debug, Clone)]
struct Expected {
    unit: String,
    path: String,
    kind: FileKind,
    bytes: u64,
    blake3: String,
    rows: u64,
    row_groups: Option<Vec<u64>>,
}

fn problem(object: &str, kind: ProblemKind, detail: impl Into<String>) -> Problem {
    Problem {
        object: object.to_string(),
        kind,
        detail: detail.into(),
    }
}

/// The end of a file, served to the Parquet footer parser as if it were the whole file.
struct Tail {
    file_len: u64,
    start: u64,
    bytes: Bytes,
}

impl Tail {
    fn range(&self, start: u64, len: u64) -> parquet::errors::Result<Range<usize>> {
        if start < self.start || start + len > self.file_len {
            return Err(parquet::errors::ParquetError::General(format!(
                "footer points at bytes {start}..{} outside the file's last {} bytes",
                start + len,
                self.bytes.len()
            )));
        }
        let from = (start - self.start) as usize;
        Ok(from..from + len as usize)
    }
}

impl Length for Tail {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Tail {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let r = self.range(start, self.file_len - start.min(self.file_len))?;
        Ok(bytes::Buf::reader(self.bytes.slice(r)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let r = self.range(start, length as u64)?;
        Ok(self.bytes.slice(r))
    }
}

/// First fetch of a footer: most footers fit.
const TAIL_GUESS: u64 = 64 * 1024;

async fn fetch_tail(root: &StoreRoot, path: &str, size: u64) -> Result<Tail> {
    let get = |r: Range<u64>| async move {
        root.store()
            .get_range(&Path::from(path), r)
            .await
            .map_err(|e| ShardError::store("get", root.location(path), e))
    };
    if size == 0 {
        return Ok(Tail {
            file_len: 0,
            start: 0,
            bytes: Bytes::new(),
        });
    }
    let first = size.saturating_sub(TAIL_GUESS);
    let bytes = get(first..size).await?;
    let mut tail = Tail {
        file_len: size,
        start: first,
        bytes,
    };
    let n = tail.bytes.len();
    if let Some(len) = n.checked_sub(8).and_then(|i| tail.bytes.get(i..i + 4)) {
        let footer_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as u64;
        let need = footer_len + 8;
        if need > size - first && need <= size {
            tail = Tail {
                file_len: size,
                start: size - need,
                bytes: get(size - need..size).await?,
            };
        }
    }
    Ok(tail)
}

async fn hash_object(root: &StoreRoot, path: &str) -> Result<(String, u64)> {
    let res = root
        .store()
        .get(&Path::from(path))
        .await
        .map_err(|e| ShardError::store("get", root.location(path), e))?;
    let mut stream = res.into_stream();
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| ShardError::store("get", root.location(path), e))?
    {
        hasher.update(&chunk);
        n += chunk.len() as u64;
    }
    Ok((hasher.finalize().to_hex().to_string(), n))
}

fn store_problem(path: &str, e: ShardError) -> Problem {
    if e.is_not_found() {
        problem(
            path,
            ProblemKind::MissingFile,
            "named by the commit record but does not exist",
        )
    } else {
        problem(path, ProblemKind::Unreadable, e.to_string())
    }
}

/// What checking one file found.
struct Checked {
    problems: Vec<Problem>,
    bytes_hashed: u64,
    rechecked: bool,
}

/// Checks one named file; a file found damaged is checked again and reported only when the
/// second read agrees, so that a read that went wrong in transit is never reported as damage.
async fn check_file_confirmed(root: &StoreRoot, e: &Expected, checksums: bool) -> Checked {
    let (problems, hashed) = check_file(root, e, checksums).await;
    if problems.is_empty() {
        return Checked {
            problems,
            bytes_hashed: hashed,
            rechecked: false,
        };
    }
    let (confirmed, again) = check_file(root, e, checksums).await;
    Checked {
        problems: confirmed,
        bytes_hashed: hashed + again,
        rechecked: true,
    }
}

/// Checks one named file; returns its problems and the bytes hashed.
async fn check_file(root: &StoreRoot, e: &Expected, checksums: bool) -> (Vec<Problem>, u64) {
    let mut problems = Vec::new();
    let path = e.path.as_str();
    let meta = match root.head(path).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return (
                vec![problem(
                    path,
                    ProblemKind::MissingFile,
                    "named by the commit record but does not exist",
                )],
                0,
            );
        }
        Err(err) => return (vec![store_problem(path, err)], 0),
    };
    let size = meta.size;
    if size != e.bytes {
        problems.push(problem(
            path,
            ProblemKind::SizeMismatch,
            format!("{size} bytes, the commit record says {}", e.bytes),
        ));
    }
    let mut hashed = 0;
    if checksums {
        match hash_object(root, path).await {
            Ok((hash, n)) => {
                hashed = n;
                // a size change already says the content changed
                if hash != e.blake3 && size == e.bytes {
                    problems.push(problem(
                        path,
                        ProblemKind::ChecksumMismatch,
                        format!("BLAKE3 {hash}, the commit record says {}", e.blake3),
                    ));
                }
            }
            Err(err) => problems.push(store_problem(path, err)),
        }
    }
    let tail = match fetch_tail(root, path, size).await {
        Ok(t) => t,
        Err(err) => {
            problems.push(store_problem(path, err));
            return (problems, hashed);
        }
    };
    problems.extend(footer_problems(tail, e));
    (problems, hashed)
}

/// The footer of the object at `e.path` against its commit record: a readable flipstream Parquet
/// file of the right kind, unit, rows and row groups.
fn footer_problems(tail: Tail, e: &Expected) -> Vec<Problem> {
    let path = e.path.as_str();
    let mut p = Vec::new();
    match validate_parquet_file(tail, Some(e.kind)) {
        Err(ValidationError::NotParquet(err)) => p.push(problem(
            path,
            ProblemKind::NotParquet,
            format!("not a readable Parquet file (truncated or damaged?): {err}"),
        )),
        Err(ValidationError::Metadata(m)) => p.push(problem(path, ProblemKind::WrongMetadata, m)),
        Err(ValidationError::Schema(diff)) => {
            p.push(problem(path, ProblemKind::WrongSchema, diff.to_string()))
        }
        Ok(info) => {
            if info.unit.as_deref() != Some(e.unit.as_str()) {
                p.push(problem(
                    path,
                    ProblemKind::WrongUnit,
                    format!(
                        "file metadata says unit {:?}, the commit record is unit {:?}",
                        info.unit, e.unit
                    ),
                ));
            }
            if info.rows != e.rows {
                p.push(problem(
                    path,
                    ProblemKind::RowCountMismatch,
                    format!("{} rows, the commit record says {}", info.rows, e.rows),
                ));
            }
            if let Some(rgs) = &e.row_groups
                && &info.row_groups != rgs
            {
                p.push(problem(
                    path,
                    ProblemKind::RowGroupMismatch,
                    format!(
                        "{} row groups {:?}, the commit record says {} {:?}",
                        info.row_groups.len(),
                        info.row_groups,
                        rgs.len(),
                        rgs
                    ),
                ));
            }
        }
    }
    p
}

fn expected_files(record: &CommitRecord) -> Vec<Expected> {
    let unit = &record.unit.id;
    let mut v: Vec<Expected> = record
        .shards
        .iter()
        .map(|s| Expected {
            unit: unit.clone(),
            path: s.path.clone(),
            kind: FileKind::Shard,
            bytes: s.bytes,
            blake3: s.blake3.clone(),
            rows: s.rows,
            row_groups: Some(s.row_groups.clone()),
        })
        .collect();
    if let Some(r) = &record.rejections {
        v.push(Expected {
            unit: unit.clone(),
            path: r.path.clone(),
            kind: FileKind::Rejections,
            bytes: r.bytes,
            blake3: r.blake3.clone(),
            rows: r.rows,
            row_groups: None,
        });
    }
    v
}

/// Classifies an object no commit record names.
fn unreferenced_problem(
    path: &str,
    committed: &BTreeSet<String>,
    broken: &BTreeSet<String>,
) -> Problem {
    // local multipart uploads stage as `<target>#<n>`
    let target = path.split('#').next().unwrap_or(path);
    match layout::unit_of_data_path(target) {
        Some(unit) if committed.contains(unit) => problem(
            path,
            ProblemKind::Orphan,
            format!(
                "belongs to committed unit {unit:?} but its commit record does not name it (left by an earlier attempt?)"
            ),
        ),
        Some(unit) if broken.contains(unit) => problem(
            path,
            ProblemKind::Uncommitted,
            format!("belongs to unit {unit:?}, whose commit record is unreadable"),
        ),
        Some(unit) => problem(
            path,
            ProblemKind::Uncommitted,
            format!(
                "belongs to unit {unit:?}, which has no commit record (interrupted or still running; re-run ingest to finish it)"
            ),
        ),
        None => problem(path, ProblemKind::Stray, "not part of the dataset layout"),
    }
}

/// Verifies the dataset at `root`; see the module docs. Fails only when the store itself cannot
/// be listed; every problem with the dataset's objects is in the report.
pub async fn verify_dataset(
    root: &StoreRoot,
    options: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut problems = Vec::new();
    let manifest = manifest_checked(root, &mut problems).await?;
    let (records, broken_units) = commit_records_checked(root, &mut problems).await?;
    let expected = expected_objects(&records, manifest.as_ref(), &mut problems);
    let checked = check_files(root, &expected, options, progress).await;
    problems.extend(checked.problems);
    let damaged: BTreeSet<&str> = problems.iter().map(|p| p.object.as_str()).collect();
    let retry_problems = check_retries(root, &records, &damaged).await?;
    let (key_problems, keys_checked) = match options.check_keys {
        true => keys::duplicate_keys(root, &records, &damaged, options.concurrency).await?,
        false => (Vec::new(), 0),
    };
    problems.extend(retry_problems);
    problems.extend(key_problems);
    let committed: BTreeSet<String> = records.iter().map(|r| r.unit.id.clone()).collect();
    for path in unreferenced_objects(root, &records).await? {
        problems.push(unreferenced_problem(&path, &committed, &broken_units));
    }
    problems.sort();
    progress.finish();
    Ok(VerifyReport {
        url: root.url().to_string(),
        units: records.len() as u64,
        files: expected.len() as u64,
        bytes_hashed: checked.bytes_hashed,
        checksums: options.checksums,
        rechecked: checked.rechecked,
        keys_checked,
        problems,
    })
}

/// The manifest, or `None` and the problem with it.
async fn manifest_checked(
    root: &StoreRoot,
    problems: &mut Vec<Problem>,
) -> Result<Option<DatasetManifest>> {
    match read_manifest(root).await {
        Ok(m) => Ok(Some(m)),
        Err(ShardError::NotADataset { .. }) => {
            problems.push(problem(
                layout::MANIFEST,
                ProblemKind::MissingManifest,
                "the dataset manifest is missing",
            ));
            Ok(None)
        }
        Err(e @ ShardError::BadRecord { .. }) => {
            problems.push(problem(
                layout::MANIFEST,
                ProblemKind::BadManifest,
                e.to_string(),
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The commit records that parse, and the units whose record does not (each a problem).
async fn commit_records_checked(
    root: &StoreRoot,
    problems: &mut Vec<Problem>,
) -> Result<(Vec<CommitRecord>, BTreeSet<String>)> {
    let mut records = Vec::new();
    let mut broken_units = BTreeSet::new();
    for (path, parsed) in read_commits_lenient(root).await? {
        match parsed {
            Ok(r) => records.push(r),
            Err(e) => {
                if let Some(unit) = layout::unit_of_commit_path(&path) {
                    broken_units.insert(unit.to_string());
                }
                problems.push(problem(&path, ProblemKind::BadCommitRecord, e.to_string()));
            }
        }
    }
    Ok((records, broken_units))
}

/// Every object the records name, once; a record of another configuration than the manifest's,
/// and an object named by two units, are problems.
fn expected_objects(
    records: &[CommitRecord],
    manifest: Option<&DatasetManifest>,
    problems: &mut Vec<Problem>,
) -> Vec<Expected> {
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    let mut expected = Vec::new();
    for r in records {
        if let Some(m) = manifest
            && r.config_fingerprint != m.config_fingerprint
        {
            problems.push(problem(
                &layout::commit_path(&r.unit.id),
                ProblemKind::ConfigMismatch,
                format!(
                    "configuration fingerprint {}, the manifest's is {}",
                    r.config_fingerprint, m.config_fingerprint
                ),
            ));
        }
        for e in expected_files(r) {
            if let Some(other) = named.insert(e.path.clone(), e.unit.clone()) {
                problems.push(problem(
                    &e.path,
                    ProblemKind::DuplicateReference,
                    format!("named by units {other:?} and {:?}", e.unit),
                ));
                continue;
            }
            expected.push(e);
        }
    }
    expected
}

/// Checks every expected object, `options.concurrency` at a time; their problems and tallies.
async fn check_files(
    root: &StoreRoot,
    expected: &[Expected],
    options: &VerifyOptions,
    progress: &dyn Progress,
) -> FileTotals {
    progress.set_total(expected.len() as u64);
    let checksums = options.checksums;
    let mut results = futures::stream::iter(expected.iter())
        .map(|e| async move { check_file_confirmed(root, e, checksums).await })
        .buffer_unordered(options.concurrency.max(1));
    let mut all = FileTotals::default();
    while let Some(checked) = results.next().await {
        all.problems.extend(checked.problems);
        all.bytes_hashed += checked.bytes_hashed;
        all.rechecked += u64::from(checked.rechecked);
        progress.advance(1);
    }
    all
}

/// What [`check_files`] found over all the objects.
#[derive(Default)]
struct FileTotals {
    problems: Vec<Problem>,
    bytes_hashed: u64,
    /// Files read twice because the first read found damage.
    rechecked: u64,
}

/// The retry units' checks (see the module docs); the key-level check is left out where a file
/// involved already has a problem (`damaged`).
async fn check_retries(
    root: &StoreRoot,
    records: &[CommitRecord],
    damaged: &BTreeSet<&str>,
) -> Result<Vec<Problem>> {
    let by_id: BTreeMap<&str, &CommitRecord> =
        records.iter().map(|r| (r.unit.id.as_str(), r)).collect();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for child in records {
        let Some(retry) = &child.retry else { continue };
        let object = layout::commit_path(&child.unit.id);
        let bad = |detail: String| problem(&object, ProblemKind::BadRetry, detail);
        let Some(of) = by_id.get(retry.of.as_str()) else {
            problems.push(bad(format!(
                "re-tries unit {:?}, which is not committed",
                retry.of
            )));
            continue;
        };
        if let Some(other) = seen.insert(&retry.of, &child.unit.id) {
            problems.push(bad(format!(
                "unit {:?} is also re-tried by {other:?}",
                retry.of
            )));
            continue;
        }
        let files = expected_files(child)
            .into_iter()
            .chain(expected_files(of))
            .map(|e| e.path);
        if files.into_iter().any(|p| damaged.contains(p.as_str())) {
            continue;
        }
        let rejected = crate::retried::rejection_reasons(root, of).await?;
        let mut superseded = BTreeMap::<String, u64>::new();
        let mut strays = Vec::new();
        for key in crate::retried::unit_keys(root, child).await? {
            match rejected.get(&key) {
                Some(reason) => *superseded.entry(reason.clone()).or_insert(0) += 1,
                None => strays.push(key),
            }
        }
        strays.sort();
        if let Some(first) = strays.first() {
            problems.push(bad(format!(
                "{} of its keys were not rejected by {:?} (first: {first:?})",
                strays.len(),
                retry.of
            )));
        } else if superseded != retry.superseded_by_reason {
            problems.push(bad(format!(
                "its keys were rejected by {:?} for {superseded:?}, the record says {:?}",
                retry.of, retry.superseded_by_reason
            )));
        }
    }
    Ok(problems)
}
