//! The commit protocol end to end on in-memory and local stores: what readers see, what a crash
//! leaves, how a re-run cleans up, and what the written files contain.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Float64Type, UInt32Type};
use flipstream_schemas::{
    DatasetManifest, FileKind, RejectReason, UnitSpec, WorkerInfo, layout,
    shard_schema_with_extras, validate_parquet_file,
};
use flipstream_shard::dataset::unreferenced_objects;
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::{
    Dataset, DatasetWriter, Rejection, ShardError, ShardReader, StoreRoot, WriterSettings,
};

fn unit(id: &str) -> UnitSpec {
    UnitSpec {
        id: id.into(),
        source: format!("file:///in/{id}.tar"),
        kind: "webdataset".into(),
        start: None,
        end: None,
    }
}

fn manifest(fingerprint: &str) -> DatasetManifest {
    DatasetManifest::new(fingerprint.into(), serde_json::json!({"test": true}))
}

fn settings() -> WriterSettings {
    WriterSettings {
        row_group_rows: 2,
        shard_rows: 5,
        ..Default::default()
    }
}

fn schema() -> arrow::datatypes::SchemaRef {
    shard_schema_with_extras(&[Field::new("similarity", DataType::Float64, true)])
}

fn rows(unit: &str, n: usize) -> arrow::array::RecordBatch {
    let mut b = ShardBatchBuilder::new(schema());
    for i in 0..n {
        b.push(ShardRow {
            key: format!("{unit}/{i:04}"),
            image: vec![i as u8; 10 + i],
            image_format: "jpeg",
            width: 256,
            height: 256 + i as u32,
            orig_width: 640,
            orig_height: 480,
            caption: format!("caption {i}"),
            url: None,
            source: format!("{unit}.tar"),
            content_hash: [i as u8; 32],
            phash: i as u64,
            extras: vec![Some(Scalar::Float(i as f64 / 10.0))],
        })
        .unwrap();
    }
    b.finish().unwrap()
}

fn rejection(unit: &str, i: usize, reason: RejectReason) -> Rejection {
    Rejection {
        key: format!("{unit}/r{i}"),
        source: format!("{unit}.tar"),
        url: None,
        reason,
        detail: format!("detail {i}"),
    }
}

async fn write_unit(w: &DatasetWriter, id: &str, accepted: usize, rejected: usize) {
    let mut u = w
        .begin_unit(unit(id), schema(), WorkerInfo::default())
        .await
        .unwrap();
    u.write(&rows(id, accepted)).await.unwrap();
    for i in 0..rejected {
        u.reject(&rejection(id, i, RejectReason::TooSmall));
    }
    u.commit((accepted + rejected) as u64, 1000).await.unwrap();
}

#[tokio::test]
async fn readers_see_committed_units_in_canonical_order() {
    let root = StoreRoot::parse("memory://commit-order/ds").unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "b", 12, 1).await;
    write_unit(&w, "a", 3, 0).await;

    let ds = Dataset::open_root(root).await.unwrap();
    let ids: Vec<&str> = ds.commits().iter().map(|c| c.unit.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(ds.rows(), 15);
    let b = &ds.commits()[1];
    let shard_rows: Vec<u64> = b.shards.iter().map(|s| s.rows).collect();
    assert_eq!(shard_rows, [5, 5, 2], "rotation every shard_rows");
    assert_eq!(b.shards[0].row_groups, [2, 2, 1]);
    assert_eq!(b.shards[0].path, layout::shard_path("b", 0));
    assert_eq!(b.counts.rejected_by_reason.get("too_small"), Some(&1));
    assert!(
        ds.commits()[0].rejections.is_none(),
        "no rejection file when nothing was rejected"
    );
    let rgs = ds.row_groups();
    assert_eq!(rgs.len(), 2 + 3 + 3 + 1);
    assert_eq!(rgs.iter().map(|r| r.rows).sum::<u64>(), 15);
    let totals = ds.totals();
    assert_eq!((totals.read, totals.accepted, totals.rejected), (16, 15, 1));
}

#[tokio::test]
async fn a_crashed_unit_is_invisible_and_cleaned_up_by_the_rerun() {
    let root = StoreRoot::parse("memory://commit-crash/ds").unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "done", 4, 0).await;
    // the crash: shards written, no commit record
    let mut u = w
        .begin_unit(unit("crashed"), schema(), WorkerInfo::default())
        .await
        .unwrap();
    u.write(&rows("crashed", 11)).await.unwrap();
    drop(u);
    // a stray shard from an older attempt with more shards than the next one will write
    root.put(
        &layout::shard_path("crashed", 7),
        bytes::Bytes::from_static(b"junk"),
    )
    .await
    .unwrap();

    let ds = Dataset::open_root(root.clone()).await.unwrap();
    assert_eq!(ds.rows(), 4, "uncommitted rows are invisible");
    let orphans = unreferenced_objects(&root, ds.commits()).await.unwrap();
    assert!(
        orphans
            .iter()
            .any(|p| p == &layout::shard_path("crashed", 7)),
        "{orphans:?}"
    );
    assert!(orphans.iter().all(|p| p.contains("crashed")), "{orphans:?}");

    // re-run: a new writer sees the leftovers, the unit restarts from scratch
    let w2 = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    assert!(w2.is_committed("done").await.unwrap().is_some());
    assert!(w2.is_committed("crashed").await.unwrap().is_none());
    assert_eq!(
        w2.committed_units()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["done"]
    );
    write_unit(&w2, "crashed", 3, 2).await;
    let ds = Dataset::open_root(root.clone()).await.unwrap();
    assert_eq!(ds.rows(), 7);
    assert!(
        unreferenced_objects(&root, ds.commits())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn staging_files_of_a_killed_local_write_are_listed_and_removed_by_the_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let root = StoreRoot::parse(dir.path().join("ds").to_str().unwrap()).unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "done", 4, 0).await;
    // a process killed while writing leaves `<target>#<n>`, which object_store never lists
    let staging = format!("{}#1", layout::shard_path("crashed", 0));
    let on_disk = dir.path().join("ds").join(&staging);
    std::fs::write(&on_disk, vec![7u8; 4096]).unwrap();

    let ds = Dataset::open_root(root.clone()).await.unwrap();
    let leftovers = unreferenced_objects(&root, ds.commits()).await.unwrap();
    assert_eq!(leftovers, std::slice::from_ref(&staging));

    let w2 = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w2, "crashed", 3, 0).await;
    assert!(!on_disk.exists(), "the re-run removes the staging file");
    let ds = Dataset::open_root(root.clone()).await.unwrap();
    assert!(
        unreferenced_objects(&root, ds.commits())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn another_configuration_is_refused() {
    let root = StoreRoot::parse("memory://commit-config/ds").unwrap();
    DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    let err = DatasetWriter::open(root.clone(), manifest("f2"), settings())
        .await
        .unwrap_err();
    assert!(matches!(err, ShardError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("different configuration"), "{err}");
}

#[tokio::test]
async fn a_unit_whose_counts_do_not_add_up_is_not_committed() {
    let root = StoreRoot::parse("memory://commit-accounting/ds").unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    let mut u = w
        .begin_unit(unit("u"), schema(), WorkerInfo::default())
        .await
        .unwrap();
    u.write(&rows("u", 3)).await.unwrap();
    u.reject(&rejection("u", 0, RejectReason::DecodeError));
    let err = u.commit(5, 0).await.unwrap_err();
    assert!(matches!(err, ShardError::Accounting { .. }), "{err}");
    assert!(
        root.get_opt(&layout::commit_path("u"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn not_a_dataset_and_corrupt_records_are_named() {
    let root = StoreRoot::parse("memory://commit-bad/ds").unwrap();
    let err = Dataset::open_root(root.clone()).await.unwrap_err();
    assert!(matches!(err, ShardError::NotADataset { .. }), "{err}");
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "a", 2, 0).await;
    root.put(
        &layout::commit_path("b"),
        bytes::Bytes::from_static(b"{not json"),
    )
    .await
    .unwrap();
    let err = Dataset::open_root(root).await.unwrap_err();
    assert!(
        err.to_string().contains("_flipstream/commits/b.json"),
        "{err}"
    );
}

#[tokio::test]
async fn local_files_are_valid_parquet_with_matching_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let root = StoreRoot::parse(dir.path().join("ds").to_str().unwrap()).unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "part-0", 7, 2).await;
    let ds = Dataset::open(root.url()).await.unwrap();
    let record = &ds.commits()[0];
    let mut first_row = 0u64;
    for shard in &record.shards {
        let bytes = std::fs::read(dir.path().join("ds").join(&shard.path)).unwrap();
        assert_eq!(bytes.len() as u64, shard.bytes);
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), shard.blake3);
        let info = validate_parquet_file(bytes::Bytes::from(bytes), Some(FileKind::Shard)).unwrap();
        assert_eq!(info.rows, shard.rows);
        assert_eq!(info.row_groups, shard.row_groups);
        assert_eq!(info.unit.as_deref(), Some("part-0"));
        // row i of the unit carries an image of 10 + i bytes
        let expected: u64 = (first_row..first_row + shard.rows).map(|i| 10 + i).sum();
        assert_eq!(shard.image_bytes, expected);
        first_row += shard.rows;
    }
    let rej = record.rejections.as_ref().unwrap();
    let bytes = std::fs::read(dir.path().join("ds").join(&rej.path)).unwrap();
    let info =
        validate_parquet_file(bytes::Bytes::from(bytes), Some(FileKind::Rejections)).unwrap();
    assert_eq!(info.rows, 2);
}

#[tokio::test]
async fn row_groups_are_read_alone_with_only_the_asked_columns() {
    let root = StoreRoot::parse("memory://commit-read/ds").unwrap();
    let w = DatasetWriter::open(root.clone(), manifest("f1"), settings())
        .await
        .unwrap();
    write_unit(&w, "u", 5, 0).await;
    let ds = Dataset::open_root(root.clone()).await.unwrap();
    let shard = &ds.commits()[0].shards[0];
    let reader = ShardReader::open(&root, &shard.path, Some(shard.bytes))
        .await
        .unwrap();
    assert_eq!(reader.row_group_rows(), [2, 2, 1]);
    let batch = reader
        .read_row_group(1, Some(&["height", "similarity"]))
        .await
        .unwrap();
    assert_eq!(batch.num_columns(), 2);
    let h: Vec<u32> = batch
        .column(0)
        .as_primitive::<UInt32Type>()
        .values()
        .to_vec();
    assert_eq!(h, [258, 259]);
    let s = batch.column(1).as_primitive::<Float64Type>();
    assert!((s.value(1) - 0.3).abs() < 1e-9);
    let err = reader.read_row_group(0, Some(&["nope"])).await.unwrap_err();
    assert!(err.to_string().contains("no column `nope`"), "{err}");
    assert!(reader.read_row_group(9, None).await.is_err());
}
