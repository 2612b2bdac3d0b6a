//! Helpers for the end-to-end tests: running the real `flipstream` binary, writing datasets of
//! known composition through the library (with label columns: [`write_labelled_dataset`]), and a
//! real S3-compatible server ([`s3::MotoServer`]).
//!
//! Each test file includes this module (`mod support;`) and uses a part of it.
#![allow(dead_code)]

pub(crate) mod dataset;
pub(crate) mod faults;
pub(crate) mod s3;
pub(crate) mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::datatypes::{DataType, Field};
use flipstream_schemas::{
    CommitRecord, DatasetManifest, UnitSpec, WorkerInfo, shard_schema_with_extras,
};
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::{DatasetWriter, StoreRoot, WriterSettings};
use flipstream_testkit::synthetic::{SyntheticSpec, write_synthetic};

/// The binary under test.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flipstream"))
}

/// What a run of the binary gave.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    pub(crate) fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked:\n{}",
            self.stderr
        );
        self
    }

    /// Standard output parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the binary with `args` in `cwd` with extra environment variables.
pub(crate) fn run_in(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running the flipstream binary");
    Run::from_output(out)
}

/// Runs the binary with `args`.
pub(crate) fn run(args: &[&str]) -> Run {
    run_in(&std::env::temp_dir(), args, &[])
}

/// `flipstream -q synth --out DIR/raw` with `synth` (count, seed, layout, dirt…), then
/// `flipstream -q ingest DIR/raw --out DIR/data` with `ingest`; both must succeed. The dataset's
/// path.
pub(crate) fn synth_and_ingest(dir: &Path, synth: &[&str], ingest: &[&str]) -> String {
    let raw = dir.join("raw").to_string_lossy().into_owned();
    let data = dir.join("data").to_string_lossy().into_owned();
    let mut args = vec!["-q", "synth", "--out", &raw];
    args.extend_from_slice(synth);
    run(&args).expect_code(0);
    let mut args = vec!["-q", "ingest", &raw, "--out", &data];
    args.extend_from_slice(ingest);
    run(&args).expect_code(0);
    data
}

/// Writes a synthetic dataset at `url` (any store URL the library accepts) and returns its commit
/// records.
pub(crate) fn write_dataset(url: &str, spec: &SyntheticSpec) -> Vec<CommitRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = StoreRoot::parse(url).expect("store url");
        write_synthetic(&root, spec).await.unwrap_or_else(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            panic!("writing the dataset to {url}: {msg}")
        })
    })
}

/// Colours of [`write_labelled_dataset`]'s `label_color`.
pub(crate) const LABEL_COLORS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "grey"];
/// Shapes of [`write_labelled_dataset`]'s `label_shape`.
pub(crate) const LABEL_SHAPES: [&str; 5] = ["circle", "square", "star", "triangle", "stripe"];

/// Row `i`'s `label_color` and `label_shape`: every one of the 30 combinations once every 30 rows.
pub(crate) fn labels_of(i: usize) -> (&'static str, &'static str) {
    (LABEL_COLORS[i % 6], LABEL_SHAPES[i / 6 % 5])
}

/// Writes `rows` rows (units of 80, row groups of 16; images are placeholder bytes, never
/// decoded) with the passthrough columns `label_color` and `label_shape` ([`labels_of`]) at
/// `url`.
pub(crate) fn write_labelled_dataset(url: &str, rows: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = StoreRoot::parse(url).expect("store url");
        let manifest = DatasetManifest::new("labelled".into(), serde_json::json!({"test": true}));
        let settings = WriterSettings {
            row_group_rows: 16,
            ..Default::default()
        };
        let writer = DatasetWriter::open(root, manifest, settings).await.unwrap();
        let schema = shard_schema_with_extras(&[
            Field::new("label_color", DataType::Utf8, true),
            Field::new("label_shape", DataType::Utf8, true),
        ]);
        for (u, start) in (0..rows).step_by(80).enumerate() {
            let end = (start + 80).min(rows);
            let spec = UnitSpec {
                id: format!("u{u}"),
                source: "labelled".into(),
                kind: "test".into(),
                start: None,
                end: None,
            };
            let mut unit = writer
                .begin_unit(spec, schema.clone(), WorkerInfo::default())
                .await
                .unwrap();
            let mut batch = ShardBatchBuilder::new(schema.clone());
            for i in start..end {
                let (color, shape) = labels_of(i);
                batch
                    .push(ShardRow {
                        key: format!("k{i:05}"),
                        image: vec![0xff, 0xd8, i as u8],
                        image_format: "jpeg",
                        width: 8,
                        height: 8,
                        orig_width: 8,
                        orig_height: 8,
                        caption: format!("a {color} {shape}"),
                        url: None,
                        source: "labelled".into(),
                        content_hash: [0; 32],
                        phash: 0,
                        extras: vec![
                            Some(Scalar::Str(color.into())),
                            Some(Scalar::Str(shape.into())),
                        ],
                    })
                    .unwrap();
            }
            unit.write(&batch.finish().unwrap()).await.unwrap();
            unit.commit((end - start) as u64, 0).await.unwrap();
        }
    })
}
