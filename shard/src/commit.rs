//! The commit protocol, write side: how a unit of work becomes part of a dataset.
//!
//! 1. [`DatasetWriter::open`] creates the dataset manifest, or checks that the existing one was
//!    made with the same configuration fingerprint (one dataset, one configuration).
//! 2. [`DatasetWriter::is_committed`] lets the caller skip finished units.
//! 3. [`DatasetWriter::begin_unit`] deletes whatever a crashed attempt of the unit left behind and
//!    returns a [`UnitWriter`].
//! 4. The caller writes accepted rows ([`UnitWriter::write`]) and records rejections
//!    ([`UnitWriter::reject`]).
//! 5. [`UnitWriter::commit`] finishes the shards, writes the rejection file, checks
//!    `accepted + rejected = read`, and writes the [`CommitRecord`] last, atomically.
//!
//! A crash at any moment leaves either a committed unit or an uncommitted one whose files are
//! orphans; re-running rewrites the same deterministic names. Different workers own disjoint units.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, StringDictionaryBuilder};
use arrow::datatypes::{Int32Type, SchemaRef};
use bytes::Bytes;
use flipstream_schemas::records::COMMIT_FORMAT;
use flipstream_schemas::{
    CommitRecord, DatasetManifest, FileKind, RejectReason, RetryInfo, SCHEMA_VERSION, UnitCounts,
    UnitSpec, WorkerInfo, layout, now_rfc3339, rejection_schema,
};

use crate::error::{Result, ShardError};
use crate::store::StoreRoot;
use crate::writer::{ParquetFile, ShardSink, WriterSettings};

/// One rejected input item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The key the item would have had.
    pub key: String,
    /// The input it came from.
    pub source: String,
    /// Its URL, when it has one.
    pub url: Option<String>,
    /// Why.
    pub reason: RejectReason,
    /// What exactly happened.
    pub detail: String,
}

/// Write access to a dataset: checks the manifest once, then hands out [`UnitWriter`]s.
#[derive(Debug, Clone)]
pub struct DatasetWriter {
    root: StoreRoot,
    manifest: DatasetManifest,
    settings: WriterSettings,
    /// Objects under `shards/` and `rejections/` at open time, by unit: candidates for cleanup.
    leftovers: Arc<BTreeMap<String, Vec<String>>>,
}

impl DatasetWriter {
    /// Opens `root` for writing with `manifest`. Creates the manifest if the dataset is new;
    /// otherwise refuses ([`ShardError::ConfigMismatch`]) when the fingerprints differ.
    pub async fn open(
        root: StoreRoot,
        manifest: DatasetManifest,
        settings: WriterSettings,
    ) -> Result<Self> {
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| ShardError::BadRecord {
            path: root.location(layout::MANIFEST),
            detail: e.to_string(),
        })?;
        let manifest = if root
            .put_if_absent(layout::MANIFEST, Bytes::from(body))
            .await?
        {
            manifest
        } else {
            let existing = crate::dataset::read_manifest(&root).await?;
            if existing.config_fingerprint != manifest.config_fingerprint {
                return Err(ShardError::ConfigMismatch {
                    url: root.url().to_string(),
                    existing: existing.config_fingerprint,
                    ours: manifest.config_fingerprint,
                });
            }
            existing
        };
        let mut leftovers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for dir in [layout::SHARDS_DIR, layout::REJECTIONS_DIR] {
            for obj in root.list(dir).await? {
                let path = obj.location.to_string();
                // Local multipart uploads stage as `<target>#<n>`; they belong to the target's unit.
                let target = path.split('#').next().unwrap_or(&path);
                if let Some(unit) = layout::unit_of_data_path(target) {
                    leftovers.entry(unit.to_string()).or_default().push(path);
                }
            }
        }
        Ok(Self {
            root,
            manifest,
            settings,
            leftovers: Arc::new(leftovers),
        })
    }

    /// The dataset root.
    pub fn root(&self) -> &StoreRoot {
        &self.root
    }

    /// The manifest in force.
    pub fn manifest(&self) -> &DatasetManifest {
        &self.manifest
    }

    /// The writer settings.
    pub fn settings(&self) -> &WriterSettings {
        &self.settings
    }

    /// Units that have a commit record (one listing).
    pub async fn committed_units(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .root
            .list(layout::COMMITS_DIR)
            .await?
            .iter()
            .filter_map(|o| layout::unit_of_commit_path(o.location.as_ref()).map(str::to_string))
            .collect())
    }

    /// The unit's commit record, if it has one.
    pub async fn is_committed(&self, unit: &str) -> Result<Option<CommitRecord>> {
        let path = layout::commit_path(unit);
        match self.root.get_opt(&path).await? {
            None => Ok(None),
            Some(bytes) => crate::dataset::parse_commit(&self.root, &path, &bytes).map(Some),
        }
    }

    /// Starts (or restarts) a unit: removes files a previous attempt left, returns its writer.
    /// `schema` is the shard schema (v1 plus the unit's passthrough columns).
    pub async fn begin_unit(
        &self,
        unit: UnitSpec,
        schema: SchemaRef,
        worker: WorkerInfo,
    ) -> Result<UnitWriter> {
        if let Some(paths) = self.leftovers.get(&unit.id) {
            for p in paths {
                self.root.delete(p).await?;
            }
        }
        Ok(UnitWriter {
            root: self.root.clone(),
            shards: ShardSink::new(self.root.clone(), &unit.id, schema, self.settings.clone()),
            settings: self.settings.clone(),
            fingerprint: self.manifest.config_fingerprint.clone(),
            unit,
            worker,
            rejections: RejectionBuffer::default(),
            counts: UnitCounts::default(),
            retry: None,
            started_at: now_rfc3339(),
            started: Instant::now(),
        })
    }
}

#[derive(Default)]
struct RejectionBuffer {
    key: StringBuilder,
    source: StringDictionaryBuilder<Int32Type>,
    url: StringBuilder,
    reason: StringDictionaryBuilder<Int32Type>,
    detail: StringBuilder,
    rows: usize,
}

impl RejectionBuffer {
    fn push(&mut self, r: &Rejection) {
        self.key.append_value(&r.key);
        self.source.append_value(&r.source);
        self.url.append_option(r.url.as_deref());
        self.reason.append_value(r.reason.code());
        self.detail.append_value(&r.detail);
        self.rows += 1;
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
        ];
        RecordBatch::try_new(rejection_schema(), cols)
            .map_err(|e| ShardError::arrow("building rejection rows", e))
    }
}

/// A unit being written. Dropping it without [`UnitWriter::commit`] leaves only orphans.
pub struct UnitWriter {
    root: StoreRoot,
    unit: UnitSpec,
    worker: WorkerInfo,
    fingerprint: String,
    settings: WriterSettings,
    shards: ShardSink,
    rejections: RejectionBuffer,
    counts: UnitCounts,
    retry: Option<RetryInfo>,
    started_at: String,
    started: Instant,
}

impl UnitWriter {
    /// The unit.
    pub fn unit(&self) -> &UnitSpec {
        &self.unit
    }

    /// The shard schema batches must have.
    pub fn schema(&self) -> &SchemaRef {
        self.shards.schema()
    }

    /// Appends accepted rows.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.shards.write(batch).await?;
        self.counts.accepted += batch.num_rows() as u64;
        Ok(())
    }

    /// Records a rejected item.
    pub fn reject(&mut self, r: &Rejection) {
        self.rejections.push(r);
        self.counts.reject(r.reason);
    }

    /// Counts so far (`read` and `input_bytes` are set at commit).
    pub fn counts(&self) -> &UnitCounts {
        &self.counts
    }

    /// Marks the unit as a retry unit (`ingest --retry-failed`): its record will carry `info`,
    /// whose superseded rejections must sum to the items read.
    pub fn set_retry(&mut self, info: RetryInfo) {
        self.retry = Some(info);
    }

    /// Finishes every file and writes the commit record. `read` is how many items the source
    /// produced for this unit and `input_bytes` their size: if `accepted + rejected != read` the
    /// unit is not committed ([`ShardError::Accounting`]).
    pub async fn commit(mut self, read: u64, input_bytes: u64) -> Result<CommitRecord> {
        self.counts.read = read;
        self.counts.input_bytes = input_bytes;
        if let Err(detail) = self.counts.check() {
            return Err(ShardError::Accounting {
                unit: self.unit.id.clone(),
                detail,
            });
        }
        let shards = self.shards.finish().await?;
        let rejections = if self.rejections.rows == 0 {
            None
        } else {
            let batch = self.rejections.finish()?;
            let path = layout::rejection_path(&self.unit.id);
            let mut file = ParquetFile::create(
                &self.root,
                &path,
                batch.schema(),
                FileKind::Rejections,
                &self.unit.id,
                &self.settings,
            )?;
            file.write(&batch).await?;
            Some(file.finish_file().await?)
        };
        let record = CommitRecord {
            format: COMMIT_FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            unit: self.unit,
            config_fingerprint: self.fingerprint,
            shards,
            rejections,
            counts: self.counts,
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            worker: self.worker,
            retry: self.retry,
        };
        let path = layout::commit_path(&record.unit.id);
        if let Err(detail) = record.check() {
            return Err(ShardError::Accounting {
                unit: record.unit.id.clone(),
                detail,
            });
        }
        let body = serde_json::to_vec_pretty(&record).map_err(|e| ShardError::BadRecord {
            path: self.root.location(&path),
            detail: e.to_string(),
        })?;
        self.root.put(&path, Bytes::from(body)).await?;
        Ok(record)
    }
}
