//! Helpers for the end-to-end tests: running the real `flipstream` binary, writing datasets of
//! known composition through the library, and a real S3-compatible server ([`s3::MotoServer`]).
//!
//! Each test file includes this module (`mod support;`) and uses a part of it.
#![allow(dead_code)]

pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flipstream_schemas::CommitRecord;
use flipstream_shard::StoreRoot;
use flipstream_shard::stats::synthetic::{SyntheticSpec, write_synthetic};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flipstream"))
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
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
    pub fn expect_code(self, code: i32) -> Self {
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
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the binary with `args` in `cwd` with extra environment variables.
pub fn run_in(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running the flipstream binary");
    Run::from_output(out)
}

/// Runs the binary with `args`.
pub fn run(args: &[&str]) -> Run {
    run_in(&std::env::temp_dir(), args, &[])
}

/// Writes a synthetic dataset at `url` (any store URL the library accepts) and returns its commit
/// records.
pub fn write_dataset(url: &str, spec: &SyntheticSpec) -> Vec<CommitRecord> {
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
