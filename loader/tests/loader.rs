//! The streaming loader end to end on small real datasets: 32×32 solid-colour JPEGs whose colour
//! encodes the row index, so every batch's pixels can be checked against its keys. Rows carry
//! label columns too, for the split view's compositional hold-out (`shard split` and the loader's
//! sides).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Int64Type};
use bytes::Bytes;
use flipstream_loader::TextTokenizer;
use flipstream_loader::tokenize::{BpeOptions, save_tokenizer, train_bpe};
use flipstream_loader::{
    Batch, Loader, LoaderConfig, LoaderError, LoaderState, Mode, Rank, SplitSelection, Start,
};
use flipstream_schemas::records::SPLIT_FORMAT;
use flipstream_schemas::{
    DatasetManifest, Holdout, SCHEMA_VERSION, Split, SplitManifest, SplitRowGroup, UnitSpec,
    WorkerInfo, choose_holdout, layout, shard_schema_with_extras, split_of,
};
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::split::{
    HoldoutOptions, SplitOptions, SplitOutcome, SplitResult, compute_split,
    write_split as store_split,
};
use flipstream_shard::{
    Dataset, DatasetWriter, ShardError, ShardReader, StoreRoot, WriterSettings,
};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const ROWS_PER_UNIT: [usize; 3] = [40, 33, 27];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A colour per row index, 32 levels apart in some channel from every other index's.
fn color(i: usize) -> [u8; 3] {
    [
        (i % 8 * 32 + 16) as u8,
        (i / 8 % 8 * 32 + 16) as u8,
        (i / 64 % 8 * 32 + 16) as u8,
    ]
}

fn key(i: usize) -> String {
    format!("k{i:04}")
}

fn index_of(key: &str) -> usize {
    key[1..].parse().unwrap()
}

fn caption(i: usize) -> String {
    format!("a photo of thing number {i}")
}

const LABEL_COLORS: [&str; 5] = ["red", "green", "blue", "grey", "gold"];

/// Row `i`'s `label_color` (null every 23rd row) and `label_shape`: 20 combinations, 5 rows each.
fn labels(i: usize) -> (Option<&'static str>, i64) {
    (
        (!i.is_multiple_of(23)).then(|| LABEL_COLORS[i % 5]),
        (i / 5 % 4) as i64,
    )
}

/// True when row `i`'s labels are a held-out combination.
fn held_out(holdout: &Holdout, i: usize) -> bool {
    let (color, shape) = labels(i);
    color.is_some_and(|c| holdout.contains(&[c, &shape.to_string()]))
}

fn jpeg(rgb: [u8; 3]) -> Vec<u8> {
    let pixels: Vec<u8> = (0..32 * 32).flat_map(|_| rgb).collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 95)
        .encode(&pixels, 32, 32, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// Writes units `u0..` with `ROWS_PER_UNIT` rows (row groups of 7, shards of 20 rows); rows in
/// `corrupt` get bytes that are not an image. Returns the keys in canonical order.
fn write_dataset(url: &str, corrupt: &[usize]) -> Vec<String> {
    rt().block_on(async {
        let root = StoreRoot::parse(url).unwrap();
        let manifest =
            DatasetManifest::new("loader-test".into(), serde_json::json!({"test": true}));
        let settings = WriterSettings {
            row_group_rows: 7,
            shard_rows: 20,
            ..Default::default()
        };
        let w = DatasetWriter::open(root, manifest, settings).await.unwrap();
        let schema = shard_schema_with_extras(&[
            Field::new("label", DataType::Int64, true),
            Field::new("label_color", DataType::Utf8, true),
            Field::new("label_shape", DataType::Int64, true),
        ]);
        let mut next = 0usize;
        let mut keys = Vec::new();
        for (u, &n) in ROWS_PER_UNIT.iter().enumerate() {
            let spec = UnitSpec {
                id: format!("u{u}"),
                source: format!("test://{u}"),
                kind: "test".into(),
                start: None,
                end: None,
            };
            let mut unit = w
                .begin_unit(spec, schema.clone(), WorkerInfo::default())
                .await
                .unwrap();
            let mut b = ShardBatchBuilder::new(schema.clone());
            for i in next..next + n {
                let image = if corrupt.contains(&i) {
                    b"\xff\xd8 definitely not a jpeg".to_vec()
                } else {
                    jpeg(color(i))
                };
                b.push(ShardRow {
                    key: key(i),
                    image,
                    image_format: "jpeg",
                    width: 32,
                    height: 32,
                    orig_width: 32,
                    orig_height: 32,
                    caption: caption(i),
                    url: None,
                    source: format!("unit {u}"),
                    content_hash: [0; 32],
                    phash: 0,
                    extras: vec![
                        Some(Scalar::Int(i as i64)),
                        labels(i).0.map(|c| Scalar::Str(c.into())),
                        Some(Scalar::Int(labels(i).1)),
                    ],
                })
                .unwrap();
                keys.push(key(i));
            }
            unit.write(&b.finish().unwrap()).await.unwrap();
            unit.commit(n as u64, 0).await.unwrap();
            next += n;
        }
        keys
    })
}

fn config() -> LoaderConfig {
    LoaderConfig {
        batch_size: 8,
        lanes: 4,
        shuffle_block: 10,
        epochs: Some(1),
        image_size: 8,
        decode_threads: 2,
        io_threads: 1,
        prefetch_row_groups: 2,
        retry_backoff_ms: 1,
        ..Default::default()
    }
}

fn start(resume: Option<LoaderState>) -> Start {
    resume.map_or(Start::Epoch(0), Start::State)
}

fn run(url: &str, config: LoaderConfig, rank: Rank, resume: Option<LoaderState>) -> Vec<Batch> {
    Loader::open(url, config, rank, start(resume))
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn keys_of(batches: &[Batch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| b.keys.iter().cloned())
        .collect()
}

/// Every image is the solid colour of its key's row (crop and resize keep a solid colour).
fn assert_pixels_match_keys(batch: &Batch) {
    for (i, k) in batch.keys.iter().enumerate() {
        let want = color(index_of(k));
        let img = batch.image(i).unwrap();
        assert_eq!(img.len(), 8 * 8 * 3);
        for px in img.chunks(3) {
            for c in 0..3 {
                assert!(
                    px[c].abs_diff(want[c]) <= 8,
                    "{k}: pixel {px:?} vs {want:?}"
                );
            }
        }
    }
}

fn rank(rank: usize, world_size: usize) -> Rank {
    Rank { rank, world_size }
}

#[test]
fn same_seed_same_batches_other_seed_other_order() {
    let url = "memory://loader-determinism/ds";
    write_dataset(url, &[]);
    let a = run(
        url,
        LoaderConfig {
            seed: 1,
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    let b = run(
        url,
        LoaderConfig {
            seed: 1,
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    let c = run(
        url,
        LoaderConfig {
            seed: 2,
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    assert_eq!(a.len(), 100 / 8);
    assert_eq!(keys_of(&a), keys_of(&b));
    assert!(a.iter().zip(&b).all(|(x, y)| x.images == y.images));
    assert_ne!(keys_of(&a), keys_of(&c));
    let mut sorted = keys_of(&a);
    sorted.sort();
    assert_ne!(keys_of(&a), sorted, "shuffled");
    a.iter().for_each(assert_pixels_match_keys);
}

#[test]
fn threads_and_prefetch_change_nothing_but_speed() {
    let url = "memory://loader-threads/ds";
    write_dataset(url, &[]);
    let slow = run(
        url,
        LoaderConfig {
            decode_threads: 1,
            prefetch_row_groups: 0,
            prefetch_batches: 1,
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    let fast = run(
        url,
        LoaderConfig {
            decode_threads: 3,
            prefetch_row_groups: 6,
            prefetch_batches: 4,
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    assert_eq!(keys_of(&slow), keys_of(&fast));
    assert!(slow.iter().zip(&fast).all(|(x, y)| x.images == y.images));
}

#[test]
fn resuming_from_any_state_continues_exactly() {
    let url = "memory://loader-resume/ds";
    write_dataset(url, &[]);
    let c = LoaderConfig {
        epochs: Some(2),
        hflip_prob: 0.5,
        ..config()
    };
    let full = run(url, c.clone(), Rank::SINGLE, None);
    let per_epoch = 100 / 8;
    assert_eq!(full.len(), 2 * per_epoch);
    assert_eq!(
        full[per_epoch - 1].state_after.epoch,
        1,
        "the last batch of an epoch points at the next"
    );
    assert_eq!(full[per_epoch - 1].state_after.batch, 0);
    for k in [0, 3, per_epoch - 1, per_epoch + 2] {
        let saved = full[k].state_after.to_json();
        let state = LoaderState::from_json(&saved).unwrap();
        let rest = run(url, c.clone(), Rank::SINGLE, Some(state));
        assert_eq!(rest.len(), full.len() - k - 1, "resumed after batch {k}");
        for (a, b) in rest.iter().zip(&full[k + 1..]) {
            assert_eq!((a.epoch, a.index), (b.epoch, b.index));
            assert_eq!(a.keys, b.keys);
            assert_eq!(a.images, b.images, "pixels after resuming at {k}");
            assert_eq!(a.state_after, b.state_after);
        }
    }
    // epoch 1 is a different order from epoch 0
    assert_ne!(keys_of(&full[..per_epoch]), keys_of(&full[per_epoch..]));
}

#[test]
fn every_kept_sample_once_per_epoch_with_equal_batches_on_every_rank() {
    let url = "memory://loader-coverage/ds";
    write_dataset(url, &[]);
    for w in [1usize, 2, 4] {
        let per_rank: Vec<Vec<Batch>> = (0..w)
            .map(|r| run(url, config(), rank(r, w), None))
            .collect();
        let counts: Vec<usize> = per_rank.iter().map(Vec::len).collect();
        assert!(counts.iter().all(|&n| n == 100 / 8), "w={w}: {counts:?}");
        let mut seen = BTreeSet::new();
        for batches in &per_rank {
            for b in batches {
                assert_eq!(b.len(), 8 / w);
                assert_pixels_match_keys(b);
                for k in &b.keys {
                    assert!(seen.insert(k.clone()), "w={w}: {k} twice");
                }
            }
        }
        assert_eq!(
            seen.len(),
            96,
            "w={w}: 100 rows, the 4 under one batch dropped"
        );
    }
}

#[test]
fn global_batches_are_the_same_for_any_world_size() {
    let url = "memory://loader-elastic/ds";
    write_dataset(url, &[]);
    // batch index → key → pixels, over all ranks
    let global = |w: usize| -> Vec<BTreeMap<String, Vec<u8>>> {
        let per_rank: Vec<Vec<Batch>> = (0..w)
            .map(|r| run(url, config(), rank(r, w), None))
            .collect();
        (0..per_rank[0].len())
            .map(|t| {
                per_rank
                    .iter()
                    .flat_map(|batches| {
                        let b = &batches[t];
                        (0..b.len()).map(move |i| (b.keys[i].clone(), b.image(i).unwrap().to_vec()))
                    })
                    .collect()
            })
            .collect()
    };
    let one = global(1);
    assert_eq!(one, global(2));
    assert_eq!(one, global(4));
}

#[test]
fn eval_covers_every_sample_once_in_canonical_order() {
    let url = "memory://loader-eval/ds";
    let keys = write_dataset(url, &[]);
    let c = LoaderConfig {
        mode: Mode::Eval,
        batch_size: 9,
        ..config()
    };
    let mut all = Vec::new();
    for r in 0..3 {
        let batches = run(url, c.clone(), rank(r, 3), None);
        let sizes: Vec<usize> = batches.iter().map(Batch::len).collect();
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&s| s == 3),
            "{sizes:?}"
        );
        assert!(*sizes.last().unwrap() <= 3);
        batches.iter().for_each(assert_pixels_match_keys);
        all.extend(keys_of(&batches));
    }
    assert_eq!(all, keys);
}

#[test]
fn a_corrupt_image_is_substituted_and_counted() {
    let url = "memory://loader-corrupt/ds";
    write_dataset(url, &[17]);
    let c = LoaderConfig {
        mode: Mode::Eval,
        ..config()
    };
    let mut loader = Loader::open(url, c, Rank::SINGLE, Start::Epoch(0)).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.substituted).sum::<u32>(), 1);
    let hit = batches.iter().find(|b| b.substituted == 1).unwrap();
    assert_eq!(hit.len(), 8, "the batch keeps its shape");
    assert!(!keys_of(&batches).contains(&key(17)));
    // k0017 sits at slot 1 of batch 2 (rows 16..24); its lane's next good sample (k0018) fills it
    assert_eq!(hit.index, 2);
    assert_eq!(hit.keys[1], key(18));
    assert_eq!(hit.keys[2], key(18));
    assert_pixels_match_keys(hit);
    let stats = loader.stats();
    assert_eq!(
        (stats.substituted, stats.decode_failures, stats.units_lost),
        (1, 1, 0)
    );
}

fn shard_keys(url: &str, shard: &str) -> Vec<String> {
    rt().block_on(async {
        let root = StoreRoot::parse(url).unwrap();
        let reader = ShardReader::open(&root, shard, None).await.unwrap();
        let mut keys = Vec::new();
        for i in 0..reader.num_row_groups() {
            let b = reader.read_row_group(i, Some(&["key"])).await.unwrap();
            keys.extend(
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|k| k.unwrap().to_string()),
            );
        }
        keys
    })
}

fn delete_shards(url: &str, which: impl Fn(usize) -> bool) -> Vec<String> {
    rt().block_on(async {
        let ds = Dataset::open(url).await.unwrap();
        let shards: Vec<String> = ds.shards().map(|s| s.path.clone()).collect();
        let mut deleted = Vec::new();
        for (i, s) in shards.iter().enumerate() {
            if which(i) {
                ds.root().delete(s).await.unwrap();
                deleted.push(s.clone());
            }
        }
        deleted
    })
}

#[test]
fn a_vanished_shard_is_substituted_and_counted() {
    let url = "memory://loader-vanished/ds";
    write_dataset(url, &[]);
    let healthy = keys_of(&run(url, config(), Rank::SINGLE, None));
    let first_shard = rt().block_on(async {
        Dataset::open(url)
            .await
            .unwrap()
            .shards()
            .nth(1)
            .unwrap()
            .path
            .clone()
    });
    let gone = shard_keys(url, &first_shard);
    let expected = healthy.iter().filter(|k| gone.contains(k)).count();
    assert!(expected > 0);
    assert_eq!(delete_shards(url, |i| i == 1), [first_shard]);
    let mut loader = Loader::open(url, config(), Rank::SINGLE, Start::Epoch(0)).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 100 / 8);
    assert!(batches.iter().all(|b| b.len() == 8));
    assert_eq!(
        batches
            .iter()
            .map(|b| b.substituted as usize)
            .sum::<usize>(),
        expected
    );
    assert!(keys_of(&batches).iter().all(|k| !gone.contains(k)));
    batches.iter().for_each(assert_pixels_match_keys);
    let stats = loader.stats();
    assert!(stats.units_lost >= 1 && stats.units_lost <= 3, "{stats:?}");
}

/// Flips one byte inside the image data of `shard`'s row group `rg` such that the file still
/// reads (the flip lands in stored image bytes, which nothing in Parquet checks) but the images
/// differ: damage after commit that only the commit record's checksums can see. Returns the keys
/// of that row group.
fn damage_images_silently(url: &str, shard: &str, rg: usize) -> Vec<String> {
    rt().block_on(async {
        let root = StoreRoot::parse(url).unwrap();
        let original = root.get(shard).await.unwrap();
        let reader = ShardReader::open(&root, shard, None).await.unwrap();
        let images_of = |r: &ShardReader| {
            let r = r.clone();
            async move {
                let b = r.read_row_group(rg, Some(&["key", "image"])).await?;
                let keys: Vec<String> = b
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|k| k.unwrap().to_string())
                    .collect();
                let images: Vec<Vec<u8>> = b
                    .column(1)
                    .as_binary::<i32>()
                    .iter()
                    .map(|v| v.unwrap().to_vec())
                    .collect();
                Ok::<_, ShardError>((keys, images))
            }
        };
        let (keys, images) = images_of(&reader).await.unwrap();
        let column = reader.schema().index_of("image").unwrap();
        let (start, len) = reader.metadata().row_group(rg).column(column).byte_range();
        for pos in (start + len / 2..start + len).chain(start..start + len / 2) {
            let mut bytes = original.to_vec();
            bytes[pos as usize] ^= 0x10;
            root.put(shard, Bytes::from(bytes)).await.unwrap();
            let damaged = ShardReader::open(&root, shard, None).await.unwrap();
            if let Ok((_, now)) = images_of(&damaged).await
                && now != images
            {
                return keys;
            }
        }
        panic!("no byte of the image column chunk flips silently");
    })
}

#[test]
fn damaged_image_bytes_lose_their_row_group_not_the_run() {
    let url = "memory://loader-flipped/ds";
    write_dataset(url, &[]);
    let shard = rt().block_on(async {
        let ds = Dataset::open(url).await.unwrap();
        let s = ds.shards().next().unwrap().clone();
        assert_eq!(s.image_checksums.len(), s.row_groups.len(), "{s:?}");
        s.path
    });
    let damaged = damage_images_silently(url, &shard, 1);
    assert_eq!(damaged.len(), 7);
    let c = LoaderConfig {
        mode: Mode::Eval,
        ..config()
    };
    let mut loader = Loader::open(url, c, Rank::SINGLE, Start::Epoch(0)).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    // the row group's samples are replaced by good ones, never served as they are now
    let served = keys_of(&batches);
    assert!(damaged.iter().all(|k| !served.contains(k)), "{served:?}");
    batches.iter().for_each(assert_pixels_match_keys);
    assert_eq!(batches.iter().map(|b| b.substituted).sum::<u32>(), 7);
    let stats = loader.stats();
    assert_eq!(
        (stats.units_lost, stats.decode_failures),
        (1, 0),
        "{stats:?}"
    );
    // the loader prints nothing: the loss is a notice for the caller, taken once
    let notices = loader.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].starts_with("row group lost"), "{notices:?}");
    assert!(notices[0].contains("checksum"), "{notices:?}");
    assert!(loader.take_notices().is_empty());
}

#[test]
fn a_batch_with_nothing_readable_is_an_error() {
    let url = "memory://loader-all-gone/ds";
    write_dataset(url, &[]);
    delete_shards(url, |_| true);
    let mut loader = Loader::open(url, config(), Rank::SINGLE, Start::Epoch(0)).unwrap();
    let err = loader.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LoaderError::BatchLost {
                epoch: 0,
                batch: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("shards/"),
        "names the object: {err}"
    );
    assert!(loader.next().is_none(), "the iterator ends after an error");
}

/// A store whose first `failures` reads of shard files fail like a dropped connection.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn ObjectStore>,
    failures: AtomicUsize,
}

impl FlakyStore {
    fn fail(&self, location: &Path) -> object_store::Result<()> {
        let is_shard = location.as_ref().starts_with("shards/");
        if is_shard
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "connection reset by peer".into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.fail(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.fail(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn flaky_dataset(url: &str, failures: usize) -> Dataset {
    let inner = StoreRoot::parse(url).unwrap().store().clone();
    let root = StoreRoot::from_store(
        Arc::new(FlakyStore {
            inner,
            failures: AtomicUsize::new(failures),
        }),
        "flaky://ds",
    );
    rt().block_on(Dataset::open_root(root)).unwrap()
}

#[test]
fn transient_store_errors_are_retried_with_backoff() {
    let url = "memory://loader-flaky/ds";
    write_dataset(url, &[]);
    let reference = keys_of(&run(url, config(), Rank::SINGLE, None));
    let ds = flaky_dataset(url, 3);
    let mut loader =
        Loader::from_dataset(&ds, None, config(), Rank::SINGLE, Start::Epoch(0)).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    assert_eq!(keys_of(&batches), reference);
    assert_eq!(batches.iter().map(|b| b.substituted).sum::<u32>(), 0);
    assert!(loader.stats().retries >= 1, "{:?}", loader.stats());
    // without retries, the same failures lose row groups, whose samples are substituted
    let ds = flaky_dataset(url, 3);
    let c = LoaderConfig {
        retries: 0,
        ..config()
    };
    let batches: Vec<Batch> = Loader::from_dataset(&ds, None, c, Rank::SINGLE, Start::Epoch(0))
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert!(batches.iter().map(|b| b.substituted).sum::<u32>() > 0);
}

#[test]
fn impossible_settings_are_refused_with_what_to_change() {
    let url = "memory://loader-settings/ds";
    write_dataset(url, &[]);
    let refuse = |c: LoaderConfig, r: Rank, resume: Option<LoaderState>, needle: &str| {
        let err = Loader::open(url, c, r, start(resume)).unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    };
    refuse(
        LoaderConfig {
            batch_size: 10,
            lanes: 4,
            ..config()
        },
        Rank::SINGLE,
        None,
        "not divisible by lanes 4",
    );
    refuse(
        LoaderConfig {
            batch_size: 12,
            lanes: 4,
            ..config()
        },
        rank(0, 3),
        None,
        "lanes 4 is not divisible by world size 3",
    );
    refuse(
        config(),
        rank(2, 2),
        None,
        "rank 2 is not below world size 2",
    );
    refuse(
        LoaderConfig {
            batch_size: 128,
            ..config()
        },
        Rank::SINGLE,
        None,
        "fewer than one global batch",
    );
    refuse(
        LoaderConfig {
            split: SplitSelection::Train,
            ..config()
        },
        Rank::SINGLE,
        None,
        "flipstream shard split",
    );
    let state = run(url, config(), Rank::SINGLE, None)[2]
        .state_after
        .clone();
    refuse(
        LoaderConfig {
            seed: 99,
            ..config()
        },
        Rank::SINGLE,
        Some(state.clone()),
        "seed was 0",
    );
    refuse(
        config(),
        Rank::SINGLE,
        Some(LoaderState { batch: 99, ..state }),
        "past the end of epoch",
    );
}

/// Writes a split manifest computed from the keys (as `flipstream shard split` does), leaving
/// out the last `skip` row groups.
fn write_split(url: &str, seed: u64, val_fraction: f64, skip: usize) -> (Vec<String>, Vec<String>) {
    rt().block_on(async {
        let ds = Dataset::open(url).await.unwrap();
        let (mut train, mut val) = (Vec::new(), Vec::new());
        let mut row_groups = Vec::new();
        let mut i = 0usize;
        for rg in ds.row_groups() {
            let (mut t, mut v) = (0, 0);
            for _ in 0..rg.rows {
                if split_of(&key(i), seed, val_fraction) == Split::Val {
                    val.push(key(i));
                    v += 1;
                } else {
                    train.push(key(i));
                    t += 1;
                }
                i += 1;
            }
            row_groups.push(SplitRowGroup {
                shard: rg.shard.clone(),
                row_group: rg.index as u32,
                train: t,
                val: v,
            });
        }
        row_groups.truncate(row_groups.len() - skip);
        let m = SplitManifest {
            format: SPLIT_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            val_fraction,
            seed,
            created_at: "2026-01-01T00:00:00Z".into(),
            train_rows: train.len() as u64,
            val_rows: val.len() as u64,
            row_groups,
            holdout: None,
        };
        ds.root()
            .put(layout::SPLIT, Bytes::from(serde_json::to_vec(&m).unwrap()))
            .await
            .unwrap();
        (train, val)
    })
}

#[test]
fn split_selection_streams_only_its_side() {
    let url = "memory://loader-split/ds";
    write_dataset(url, &[]);
    let (train, val) = write_split(url, 3, 0.3, 0);
    assert!(!val.is_empty() && train.len() > val.len());
    let eval = |split| {
        keys_of(&run(
            url,
            LoaderConfig {
                mode: Mode::Eval,
                split,
                ..config()
            },
            Rank::SINGLE,
            None,
        ))
    };
    assert_eq!(eval(SplitSelection::Train), train);
    assert_eq!(eval(SplitSelection::Val), val);
    let shuffled = keys_of(&run(
        url,
        LoaderConfig {
            split: SplitSelection::Train,
            ..config()
        },
        Rank::SINGLE,
        None,
    ));
    assert_eq!(shuffled.len(), train.len() / 8 * 8);
    assert!(shuffled.iter().all(|k| train.contains(k)));
    // a split that misses committed row groups is stale
    write_split(url, 3, 0.3, 1);
    let err = Loader::open(
        url,
        LoaderConfig {
            split: SplitSelection::Val,
            ..config()
        },
        Rank::SINGLE,
        Start::Epoch(0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("out of date"), "{err}");
}

#[test]
fn passthrough_columns_and_tokens_travel_with_their_samples() {
    let url = "memory://loader-extras/ds";
    write_dataset(url, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let options = BpeOptions {
        vocab_size: 300,
        min_frequency: 1,
        max_token_length: None,
    };
    save_tokenizer(&train_bpe((0..100).map(caption), &options).unwrap(), &path).unwrap();
    let c = LoaderConfig {
        extra_columns: vec!["label".into()],
        tokenizer: Some(path.clone()),
        context_length: 48,
        ..config()
    };
    let tok = TextTokenizer::from_file(&path, 48).unwrap();
    let batches = run(url, c, rank(1, 2), None);
    let mut labels: HashMap<String, i64> = HashMap::new();
    for b in &batches {
        let extras = b.extras.as_ref().unwrap();
        let label = extras
            .column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(b.tokens.as_ref().unwrap().len(), b.len() * 48);
        for (i, k) in b.keys.iter().enumerate() {
            labels.insert(k.clone(), label.value(i));
            assert_eq!(b.captions[i], caption(index_of(k)));
            assert_eq!(
                tok.decode(b.tokens_of(i).unwrap()).unwrap(),
                caption(index_of(k))
            );
        }
    }
    assert!(labels.iter().all(|(k, &l)| l as usize == index_of(k)));
}

fn holdout_options(seed: u64, columns: &[&str], fraction: f64) -> SplitOptions {
    SplitOptions {
        val_fraction: 0.2,
        seed,
        concurrency: 3,
        holdout: Some(HoldoutOptions {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            fraction,
        }),
    }
}

/// Writes the split view of `url` with `options` through the library.
fn split_with(url: &str, options: &SplitOptions) -> SplitResult {
    rt().block_on(async {
        let ds = Dataset::open(url).await.unwrap();
        store_split(&ds, options, &()).await.unwrap()
    })
}

#[test]
fn shard_split_holds_out_label_combinations() {
    let url = "memory://split-holdout/ds";
    let n = write_dataset(url, &[]).len();
    let options = holdout_options(5, &["label_color", "label_shape"], 0.25);
    let first = split_with(url, &options);
    assert_eq!(first.outcome, SplitOutcome::Created);
    let m = &first.manifest;
    let h = m.holdout.as_ref().unwrap();
    let combos: Vec<Vec<String>> = (0..n)
        .filter_map(|i| {
            let (c, s) = labels(i);
            Some(vec![c?.to_string(), s.to_string()])
        })
        .collect();
    assert_eq!(h.distinct_combos, 20);
    assert_eq!(h.combos.len(), 5, "round(0.25 × 20)");
    assert_eq!(h.combos, choose_holdout(&combos, 0.25, 5).unwrap());
    assert_eq!(h.columns, ["label_color", "label_shape"]);
    // every held-out row is in val, the other rows are split by key
    let side = |i: usize| {
        if held_out(h, i) || split_of(&key(i), 5, 0.2) == Split::Val {
            Split::Val
        } else {
            Split::Train
        }
    };
    let held = (0..n).filter(|&i| held_out(h, i)).count() as u64;
    assert!(held >= 20, "{held} rows held out");
    assert_eq!(h.rows, held);
    let val = (0..n).filter(|&i| side(i) == Split::Val).count() as u64;
    assert_eq!((m.train_rows, m.val_rows), (n as u64 - val, val));
    let ds = rt().block_on(Dataset::open(url)).unwrap();
    let mut next = 0usize;
    for (counted, rg) in m.row_groups.iter().zip(ds.row_groups()) {
        let rows = next..next + rg.rows as usize;
        let v = rows.clone().filter(|&i| side(i) == Split::Val).count() as u64;
        assert_eq!((counted.train, counted.val), (rg.rows - v, v), "{rows:?}");
        next = rows.end;
    }
    assert_eq!(next, n);
    // re-running: unchanged, byte for byte
    let root = ds.root().clone();
    let before = rt().block_on(root.get(layout::SPLIT)).unwrap();
    assert_eq!(split_with(url, &options).outcome, SplitOutcome::Unchanged);
    assert_eq!(rt().block_on(root.get(layout::SPLIT)).unwrap(), before);
    let json: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(json["holdout"]["combos"].as_array().unwrap().len(), 5);
    // another holdout fraction, or none, replaces it; without one only the key decides
    let more = split_with(
        url,
        &holdout_options(5, &["label_color", "label_shape"], 0.5),
    );
    assert!(matches!(more.outcome, SplitOutcome::Replaced { .. }));
    let plain = split_with(
        url,
        &SplitOptions {
            holdout: None,
            ..options.clone()
        },
    );
    assert!(matches!(plain.outcome, SplitOutcome::Replaced { .. }));
    assert_eq!(plain.manifest.holdout, None);
    let by_key = (0..n)
        .filter(|&i| split_of(&key(i), 5, 0.2) == Split::Val)
        .count() as u64;
    assert_eq!(plain.manifest.val_rows, by_key);
    assert!(plain.manifest.val_rows < m.val_rows);
}

#[test]
fn shard_split_refuses_holdouts_it_cannot_make() {
    let url = "memory://split-holdout-refused/ds";
    write_dataset(url, &[]);
    let ds = rt().block_on(Dataset::open(url)).unwrap();
    let compute = |options: SplitOptions| {
        rt().block_on(compute_split(&ds, &options, &()))
            .unwrap_err()
    };
    let err = compute(holdout_options(0, &["label_color", "label_size"], 0.25));
    let msg = err.to_string();
    assert!(matches!(err, ShardError::SplitRequest { .. }), "{err:?}");
    assert!(
        msg.contains("`label_size`") && msg.contains("label_shape") && msg.contains("caption"),
        "names the missing column and lists the dataset's: {msg}"
    );
    // 18 of 20 would leave a colour or a shape without a training combination
    let err = compute(holdout_options(0, &["label_color", "label_shape"], 0.9));
    assert!(matches!(err, ShardError::SplitRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("of the 18 wanted"), "{err}");
    for (columns, fraction) in [(&["label_color"][..], 0.2), (&["a", "b"][..], 1.0)] {
        let err = compute(holdout_options(0, columns, fraction));
        assert!(matches!(err, ShardError::SplitRequest { .. }), "{err:?}");
    }
}

#[test]
fn a_holdout_keeps_its_combinations_out_of_the_train_side() {
    let url = "memory://loader-holdout/ds";
    let mut keys = write_dataset(url, &[]);
    let m = split_with(
        url,
        &holdout_options(2, &["label_color", "label_shape"], 0.25),
    )
    .manifest;
    let h = m.holdout.as_ref().unwrap();
    let eval = |split| {
        keys_of(&run(
            url,
            LoaderConfig {
                mode: Mode::Eval,
                split,
                ..config()
            },
            Rank::SINGLE,
            None,
        ))
    };
    let (train, val) = (eval(SplitSelection::Train), eval(SplitSelection::Val));
    assert_eq!(
        (train.len() as u64, val.len() as u64),
        (m.train_rows, m.val_rows)
    );
    assert!(train.iter().all(|k| !held_out(h, index_of(k))));
    let held: Vec<String> = (0..keys.len())
        .filter(|&i| held_out(h, i))
        .map(key)
        .collect();
    assert_eq!(held.len() as u64, h.rows);
    assert!(held.iter().all(|k| val.contains(k)));
    // the rows not held out are split by key alone, and every row is on exactly one side
    assert!(
        val.iter()
            .all(|k| held.contains(k) || split_of(k, 2, 0.2) == Split::Val)
    );
    let mut both: Vec<String> = train.iter().chain(&val).cloned().collect();
    both.sort();
    keys.sort();
    assert_eq!(both, keys);
    // training order, with a holdout column also asked for as a passthrough column
    let batches = run(
        url,
        LoaderConfig {
            split: SplitSelection::Train,
            extra_columns: vec!["label_shape".into()],
            ..config()
        },
        Rank::SINGLE,
        None,
    );
    let shuffled = keys_of(&batches);
    assert_eq!(shuffled.len() as u64, m.train_rows / 8 * 8);
    assert!(shuffled.iter().all(|k| train.contains(k)));
    let extras = batches[0].extras.as_ref().unwrap();
    assert_eq!(extras.num_columns(), 1);
    let shapes = extras.column(0).as_primitive::<Int64Type>();
    for (i, k) in batches[0].keys.iter().enumerate() {
        assert_eq!(shapes.value(i), labels(index_of(k)).1);
    }
}
