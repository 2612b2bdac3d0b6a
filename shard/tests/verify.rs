//! The shard tools: `verify` catching every kind of damage at once, the `split` view, and `ls`.

// Helpers outside #[test] functions unwrap too: in tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use flipstream_schemas::{FileKind, Split, layout, metadata, split_of};
use flipstream_shard::listing::list_dataset;
use flipstream_shard::split::{SplitOptions, SplitOutcome, compute_split, write_split};
use flipstream_shard::verify::{ProblemKind, VerifyOptions, VerifyReport, verify_dataset};
use flipstream_shard::{Dataset, ShardReader, StoreRoot, WriterSettings};
use flipstream_testkit::synthetic::{SyntheticSpec, write_synthetic};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// Eight units of 30 rows (shards of 20 + 10 rows, row groups of 8), 4 rejections each.
fn spec() -> SyntheticSpec {
    SyntheticSpec {
        units: 8,
        rows_per_unit: 30,
        rejections_per_unit: 4,
        mean_image_bytes: 2_000,
        settings: WriterSettings {
            row_group_rows: 8,
            shard_rows: 20,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn dataset(dir: &std::path::Path) -> StoreRoot {
    let root = StoreRoot::parse(dir.join("ds").to_str().unwrap()).unwrap();
    write_synthetic(&root, &spec()).await.unwrap();
    root
}

async fn verify(root: &StoreRoot, checksums: bool) -> VerifyReport {
    verify_dataset(
        root,
        &VerifyOptions {
            checksums,
            concurrency: 4,
            check_keys: true,
        },
        &(),
    )
    .await
    .unwrap()
}

fn problems(r: &VerifyReport) -> BTreeSet<(String, ProblemKind)> {
    r.problems
        .iter()
        .map(|p| (p.object.clone(), p.kind))
        .collect()
}

/// A flipstream-tagged Parquet file whose columns are not schema v1.
fn wrong_schema_file(unit: &str, rows: usize) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("img", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("{unit}/{i}")),
        )),
        Arc::new(StringArray::from_iter_values((0..rows).map(|_| "x"))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(metadata::file_metadata(FileKind::Shard, unit, "{}")))
        .set_max_row_group_row_count(Some(8))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

#[tokio::test]
async fn a_clean_dataset_verifies_with_and_without_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path()).await;
    let r = verify(&root, true).await;
    assert!(r.is_clean(), "{:#?}", r.problems);
    assert_eq!((r.units, r.files), (8, 8 * 3));
    let total: u64 = std::fs::read_dir(dir.path().join("ds/shards"))
        .unwrap()
        .chain(std::fs::read_dir(dir.path().join("ds/rejections")).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(r.bytes_hashed, total, "every byte of every file was hashed");
    let fast = verify(&root, false).await;
    assert!(fast.is_clean());
    assert_eq!(fast.bytes_hashed, 0);
}

#[tokio::test]
async fn every_kind_of_damage_is_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path()).await;
    let ds_dir = dir.path().join("ds");
    let file = |rel: &str| ds_dir.join(rel);

    // unit-0000: a shard deleted
    std::fs::remove_file(file("shards/unit-0000-00001.parquet")).unwrap();
    // unit-0001: a shard grew (bytes appended after the footer, which then is not at the end)
    let mut grown = std::fs::read(file("shards/unit-0001-00000.parquet")).unwrap();
    grown.extend_from_slice(b"trailing junk");
    std::fs::write(file("shards/unit-0001-00000.parquet"), grown).unwrap();
    // unit-0002: one byte flipped in the middle of the data pages
    let mut flipped = std::fs::read(file("shards/unit-0002-00000.parquet")).unwrap();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(file("shards/unit-0002-00000.parquet"), flipped).unwrap();
    // unit-0003: a shard truncated
    let whole = std::fs::read(file("shards/unit-0003-00000.parquet")).unwrap();
    std::fs::write(
        file("shards/unit-0003-00000.parquet"),
        &whole[..whole.len() - 100],
    )
    .unwrap();
    // unit-0004: a shard replaced by a file of another schema; the record is updated to match its
    // size and checksum, so only the schema is wrong
    let other = wrong_schema_file("unit-0004", 20);
    std::fs::write(file("shards/unit-0004-00000.parquet"), &other).unwrap();
    let record_path = file(&layout::commit_path("unit-0004"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["shards"][0]["bytes"] = serde_json::json!(other.len());
    record["shards"][0]["blake3"] = serde_json::json!(blake3::hash(&other).to_hex().to_string());
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    // unit-0005: a corrupt commit record
    std::fs::write(
        file(&layout::commit_path("unit-0005")),
        b"{\"format\": \"flipstream-commit\", ",
    )
    .unwrap();
    // unit-0006: a missing commit record
    std::fs::remove_file(file(&layout::commit_path("unit-0006"))).unwrap();
    // unit-0007: an orphan shard next to its committed ones, and a stray file
    std::fs::write(
        file("shards/unit-0007-00009.parquet"),
        b"left by an earlier attempt",
    )
    .unwrap();
    std::fs::write(file("shards/notes.txt"), b"hello").unwrap();
    // staging files of killed local writes (`<target>#<n>`, hidden by object_store's listing)
    std::fs::write(file("shards/unit-0007-00002.parquet#1"), b"partial").unwrap();
    std::fs::write(file("shards/unit-0006-00002.parquet#3"), b"partial").unwrap();
    // and the manifest is gone
    std::fs::remove_file(file(layout::MANIFEST)).unwrap();

    let r = verify(&root, true).await;
    let found = problems(&r);
    let expect = |path: &str, kind: ProblemKind| {
        assert!(
            found.contains(&(path.to_string(), kind)),
            "missing {kind:?} for {path}; got {:#?}",
            r.problems
        );
    };
    expect(layout::MANIFEST, ProblemKind::MissingManifest);
    expect("shards/unit-0000-00001.parquet", ProblemKind::MissingFile);
    expect("shards/unit-0001-00000.parquet", ProblemKind::SizeMismatch);
    expect("shards/unit-0001-00000.parquet", ProblemKind::NotParquet);
    expect(
        "shards/unit-0002-00000.parquet",
        ProblemKind::ChecksumMismatch,
    );
    expect("shards/unit-0003-00000.parquet", ProblemKind::SizeMismatch);
    expect("shards/unit-0003-00000.parquet", ProblemKind::NotParquet);
    expect("shards/unit-0004-00000.parquet", ProblemKind::WrongSchema);
    expect(
        &layout::commit_path("unit-0005"),
        ProblemKind::BadCommitRecord,
    );
    expect("shards/unit-0005-00000.parquet", ProblemKind::Uncommitted);
    expect("shards/unit-0005-00001.parquet", ProblemKind::Uncommitted);
    expect("rejections/unit-0005.parquet", ProblemKind::Uncommitted);
    expect("shards/unit-0006-00000.parquet", ProblemKind::Uncommitted);
    expect("shards/unit-0006-00001.parquet", ProblemKind::Uncommitted);
    expect("rejections/unit-0006.parquet", ProblemKind::Uncommitted);
    expect("shards/unit-0007-00009.parquet", ProblemKind::Orphan);
    expect("shards/notes.txt", ProblemKind::Stray);
    expect("shards/unit-0007-00002.parquet#1", ProblemKind::Orphan);
    expect("shards/unit-0006-00002.parquet#3", ProblemKind::Uncommitted);
    // nothing else: the damaged files have exactly the problems above
    assert_eq!(found.len(), 19, "{:#?}", r.problems);
    // each damaged file was read twice before being reported
    assert_eq!(r.rechecked, 5, "{:#?}", r.problems);
    let schema = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::WrongSchema)
        .unwrap();
    assert!(
        schema.detail.contains("missing column `image`"),
        "{}",
        schema.detail
    );
    let missing = r
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Uncommitted && p.object.contains("unit-0006"))
        .unwrap();
    assert!(
        missing.detail.contains("no commit record"),
        "{}",
        missing.detail
    );
    assert_eq!(r.units, 6, "two records unusable");

    // without checksums the flipped byte goes unnoticed, everything else is still found
    let fast = problems(&verify(&root, false).await);
    assert!(!fast.contains(&(
        "shards/unit-0002-00000.parquet".to_string(),
        ProblemKind::ChecksumMismatch
    )));
    assert_eq!(fast.len(), 18);
}

#[tokio::test]
async fn row_counts_and_units_are_checked_against_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path()).await;
    let ds = Dataset::open_root(root.clone()).await.unwrap();
    // swap two units' shards of the same size class: the metadata names the other unit
    let a = dir.path().join("ds/shards/unit-0000-00000.parquet");
    let b = dir.path().join("ds/shards/unit-0001-00000.parquet");
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &bb).unwrap();
    std::fs::write(&b, &ba).unwrap();
    // and claim another row split for unit-0002's first shard
    let record_path = dir.path().join("ds").join(layout::commit_path("unit-0002"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["shards"][0]["row_groups"] = serde_json::json!([10, 10]);
    // (a record with two row groups and one image checksum would be refused as a record)
    record["shards"][0]
        .as_object_mut()
        .unwrap()
        .remove("image_checksums");
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let r = verify(&root, false).await;
    let found = problems(&r);
    assert!(
        found.contains(&(
            "shards/unit-0000-00000.parquet".into(),
            ProblemKind::WrongUnit
        )),
        "{:#?}",
        r.problems
    );
    assert!(found.contains(&(
        "shards/unit-0001-00000.parquet".into(),
        ProblemKind::WrongUnit
    )));
    assert!(found.contains(&(
        "shards/unit-0002-00000.parquet".into(),
        ProblemKind::RowGroupMismatch
    )));
    assert_eq!(ds.rows(), 240);
}

#[tokio::test]
async fn split_is_deterministic_follows_the_fraction_and_replaces_other_splits() {
    let root = StoreRoot::parse("memory://split-view/ds").unwrap();
    let spec = SyntheticSpec {
        units: 4,
        rows_per_unit: 500,
        rejections_per_unit: 0,
        mean_image_bytes: 64,
        settings: WriterSettings {
            row_group_rows: 64,
            ..Default::default()
        },
        ..Default::default()
    };
    write_synthetic(&root, &spec).await.unwrap();
    let ds = Dataset::open_root(root.clone()).await.unwrap();
    let opts = SplitOptions {
        val_fraction: 0.1,
        seed: 7,
        concurrency: 3,
        holdout: None,
    };

    let first = write_split(&ds, &opts, &()).await.unwrap();
    assert_eq!(first.outcome, SplitOutcome::Created);
    let m = &first.manifest;
    assert_eq!(m.train_rows + m.val_rows, 2000);
    assert!(
        (m.val_rows as f64 / 2000.0 - 0.1).abs() < 0.025,
        "{} val rows",
        m.val_rows
    );
    // per-row-group counts: aligned with the dataset's row groups and equal to split_of on keys
    let rgs = ds.row_groups();
    assert_eq!(m.row_groups.len(), rgs.len());
    for (s, rg) in m.row_groups.iter().zip(&rgs) {
        assert_eq!(
            (s.shard.as_str(), s.row_group as usize, s.train + s.val),
            (rg.shard.as_str(), rg.index, rg.rows)
        );
    }
    let reader = ShardReader::open(&root, &rgs[3].shard, None).await.unwrap();
    let keys = reader
        .read_row_group(rgs[3].index, Some(&["key"]))
        .await
        .unwrap();
    let keys = keys
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let val = keys
        .iter()
        .flatten()
        .filter(|k| split_of(k, 7, 0.1) == Split::Val)
        .count() as u64;
    assert_eq!(m.row_groups[3].val, val);
    assert!(first.bytes_fetched > 0);

    // same arguments: same file, byte for byte (created_at included)
    let bytes_before = root.get(layout::SPLIT).await.unwrap();
    let again = write_split(&ds, &opts, &()).await.unwrap();
    assert_eq!(again.outcome, SplitOutcome::Unchanged);
    assert_eq!(root.get(layout::SPLIT).await.unwrap(), bytes_before);
    assert_eq!(
        ds.split_manifest().await.unwrap().as_ref(),
        Some(&first.manifest)
    );

    // another fraction replaces it and says what it replaced; counts are monotone in the fraction
    let wider = write_split(
        &ds,
        &SplitOptions {
            val_fraction: 0.3,
            ..opts.clone()
        },
        &(),
    )
    .await
    .unwrap();
    assert_eq!(
        wider.outcome,
        SplitOutcome::Replaced {
            previous_val_fraction: Some(0.1),
            previous_seed: Some(7)
        }
    );
    assert!(wider.manifest.val_rows > first.manifest.val_rows);
    for (narrow, wide) in first
        .manifest
        .row_groups
        .iter()
        .zip(&wider.manifest.row_groups)
    {
        assert!(
            wide.val >= narrow.val,
            "a row in val at 0.1 stays in val at 0.3"
        );
    }
    // the result does not depend on the concurrency
    let (serial, _) = compute_split(
        &ds,
        &SplitOptions {
            concurrency: 1,
            ..opts.clone()
        },
        &(),
    )
    .await
    .unwrap();
    assert_eq!(serial.row_groups, first.manifest.row_groups);
    // extremes and invalid fractions
    let (none, _) = compute_split(
        &ds,
        &SplitOptions {
            val_fraction: 0.0,
            ..opts.clone()
        },
        &(),
    )
    .await
    .unwrap();
    assert_eq!(none.val_rows, 0);
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(
            SplitOptions {
                val_fraction: bad,
                ..opts.clone()
            }
            .validate()
            .is_err(),
            "{bad}"
        );
    }
    // an unreadable split file is replaced too
    root.put(layout::SPLIT, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let fixed = write_split(&ds, &opts, &()).await.unwrap();
    assert_eq!(
        fixed.outcome,
        SplitOutcome::Replaced {
            previous_val_fraction: None,
            previous_seed: None
        }
    );
}

#[tokio::test]
async fn listing_sums_the_commit_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dataset(dir.path()).await;
    let ds = Dataset::open_root(root).await.unwrap();
    let l = list_dataset(&ds);
    assert_eq!(l.units.len(), 8);
    assert_eq!(l.units[0].unit, "unit-0000");
    let shard_rows: Vec<(u64, u64)> = l.units[0]
        .shards
        .iter()
        .map(|s| (s.rows, s.row_groups))
        .collect();
    assert_eq!(shard_rows, [(20, 3), (10, 2)]);
    let t = &l.totals;
    assert_eq!(
        (t.units, t.shards, t.row_groups, t.rows, t.rejected, t.read),
        (8, 16, 40, 240, 32, 272)
    );
    let on_disk: u64 = std::fs::read_dir(dir.path().join("ds/shards"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(t.shard_bytes, on_disk);
}
