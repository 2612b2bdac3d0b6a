//! Test data for the training-run tests: a small labelled dataset made from the synth library,
//! processed like ingest would (`process_for_shard`, shortest side 64 px) and written through
//! `DatasetWriter` with the passthrough columns `label_color` and `label_shape`, plus a split view.
//! (Test code only: `flipstream ingest` produces such datasets for real.)

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use arrow::datatypes::{DataType, Field};
use flipstream_imaging::{ProcessSpec, ResizeSpec, process_for_shard};
use flipstream_schemas::{DatasetManifest, UnitSpec, WorkerInfo, shard_schema_with_extras};
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::split::{SplitOptions, write_split};
use flipstream_shard::{Dataset, DatasetWriter, StoreRoot, WriterSettings};
use flipstream_synth::{SynthConfig, SynthPlan};
use flipstream_train::run::{RunSpec, Session};
use flipstream_train::{Preset, RunConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `count` clean synthetic pairs (seed `seed`) into a dataset at `dir`, in units of 100
/// rows (row groups of 50), and, when `val_fraction` is given, its split view.
pub(crate) fn write_synth_dataset(
    dir: &Path,
    count: u64,
    seed: u64,
    val_fraction: Option<f64>,
) -> String {
    let url = dir.display().to_string();
    let plan = SynthPlan::new(&SynthConfig {
        count,
        seed,
        ..Default::default()
    })
    .unwrap();
    // every synthetic image is kept (no DataComp size filters): the labels need all of them
    let spec = ProcessSpec {
        min_side: None,
        max_aspect_ratio: None,
        resize: ResizeSpec {
            size: 64,
            ..Default::default()
        },
        ..Default::default()
    };
    rt().block_on(async {
        let root = StoreRoot::parse(&url).unwrap();
        let manifest = DatasetManifest::new("train-test".into(), serde_json::json!({"test": true}));
        let settings = WriterSettings {
            row_group_rows: 50,
            shard_rows: 100,
            ..Default::default()
        };
        let writer = DatasetWriter::open(root, manifest, settings).await.unwrap();
        let schema = shard_schema_with_extras(&[
            Field::new("label_color", DataType::Utf8, true),
            Field::new("label_shape", DataType::Utf8, true),
        ]);
        let mut start = 0u64;
        while start < count {
            let end = (start + 100).min(count);
            let unit_spec = UnitSpec {
                id: format!("u{start:06}"),
                source: "synth".into(),
                kind: "test".into(),
                start: None,
                end: None,
            };
            let mut unit = writer
                .begin_unit(unit_spec, schema.clone(), WorkerInfo::default())
                .await
                .unwrap();
            let mut rows = ShardBatchBuilder::new(schema.clone());
            for i in start..end {
                let pair = plan.render_pair(i).unwrap();
                let p = process_for_shard(&pair.image, &spec).unwrap();
                rows.push(ShardRow {
                    key: pair.key.clone(),
                    image: p.bytes,
                    image_format: p.format.as_str(),
                    width: p.width,
                    height: p.height,
                    orig_width: p.orig_width,
                    orig_height: p.orig_height,
                    caption: String::from_utf8(pair.caption.clone()).unwrap(),
                    url: None,
                    source: "synth".into(),
                    content_hash: [0; 32],
                    phash: p.phash,
                    extras: vec![
                        Some(Scalar::Str(pair.labels.color.to_string())),
                        Some(Scalar::Str(pair.labels.shape.to_string())),
                    ],
                })
                .unwrap();
            }
            unit.write(&rows.finish().unwrap()).await.unwrap();
            unit.commit(end - start, 0).await.unwrap();
            start = end;
        }
        if let Some(val_fraction) = val_fraction {
            let ds = Dataset::open(&url).await.unwrap();
            write_split(
                &ds,
                &SplitOptions {
                    val_fraction,
                    seed: 0,
                    concurrency: 4,
                    holdout: None,
                },
                &(),
            )
            .await
            .unwrap();
        }
    });
    url
}

/// The shared labelled dataset of 1600 pairs with a 20 % validation split (written once per test
/// binary).
pub(crate) fn dataset() -> &'static str {
    static DATASET: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    &DATASET
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let url = write_synth_dataset(&dir.path().join("ds"), 1600, 11, Some(0.2));
            (dir, url)
        })
        .1
}

/// A model far below the tiny preset: 32 px, patch 8, ViT 64 × 2, text 64 × 1 (ctx 24), embed 64;
/// batch 32, mask 0.5, no periodic eval or checkpoints.
pub(crate) fn micro_spec(dataset: &str, steps: u64) -> RunSpec {
    let base = Preset::Tiny.config();
    let mut spec = RunSpec::preset(Preset::Tiny);
    spec.config = RunConfig {
        model: flipstream_train::ModelConfig {
            image_size: 32,
            patch_size: 8,
            vision_width: 64,
            vision_depth: 2,
            vision_heads: 2,
            context_length: 24,
            text_width: 64,
            text_depth: 1,
            text_heads: 2,
            embed_dim: 64,
            ..base.model
        },
        train: flipstream_train::TrainConfig {
            batch_size: 32,
            base_lr: 2e-3 * 256.0 / 32.0,
            warmup_steps: 5.min(steps),
            total_steps: steps,
            mask_ratio: 0.5,
            seed: 3,
            ..base.train
        },
        objective: base.objective,
    };
    spec.run.dataset = dataset.to_string();
    spec.run.tokenizer_vocab_size = 600;
    spec.run.lanes = Some(4);
    spec.run.shuffle_block = 64;
    spec.run.prefetch_row_groups = 2;
    spec.run.eval.batch_size = 64;
    spec
}

/// One CPU thread for the loader, the whole schedule.
pub(crate) fn cpu_session() -> Session {
    Session {
        device: tch::Device::Cpu,
        decode_threads: 1,
        stop_after: None,
        dist: flipstream_train::dist::DistSetup::single(),
        keep_checkpoints: None,
    }
}
