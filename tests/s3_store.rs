//! Real object storage: a dataset written to a real S3-compatible server (moto on 127.0.0.1)
//! through the library, then `stats`, `shard ls` and `shard verify` run by the real binary
//! against the `s3://` URL; the unfinished multipart upload of a killed write reported by
//! `verify` and aborted by the re-run; and an unreachable endpoint failing fast with a clear
//! message.
//!
//! Everything runs in one test function: the in-process part reads its S3 settings from the
//! process environment (as `StoreRoot::parse("s3://…")` does in production), and setting
//! environment variables is only sound while no other thread reads them.

// Helpers outside #[test] functions unwrap too: in tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use flipstream_schemas::{UnitSpec, WorkerInfo, layout, shard_schema};
use flipstream_shard::dataset::unreferenced_objects;
use flipstream_shard::{Dataset, DatasetWriter, StoreRoot, WriterSettings};
use flipstream_testkit::synthetic::SyntheticSpec;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use support::s3::{MotoServer, free_port, set_process_env};
use support::{run_in, write_dataset};

#[test]
fn s3_dataset_end_to_end_and_unreachable_endpoint() {
    let server = MotoServer::start();
    let env = server.env();
    set_process_env(&env);
    let url = server.url("datasets/pets");
    let spec = SyntheticSpec {
        units: 2,
        rows_per_unit: 50,
        rejections_per_unit: 4,
        mean_image_bytes: 6_000,
        settings: WriterSettings {
            row_group_rows: 20,
            shard_rows: 30,
            ..Default::default()
        },
        ..Default::default()
    };
    let records = write_dataset(&url, &spec);
    let shard_bytes: u64 = records
        .iter()
        .flat_map(|r| &r.shards)
        .map(|s| s.bytes)
        .sum();
    let cwd = tempfile::tempdir().unwrap();
    let out = cwd.path().join("report");

    let stats = run_in(
        cwd.path(),
        &[
            "stats",
            &url,
            "--json",
            "-q",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    )
    .expect_code(0);
    let j = stats.json();
    assert_eq!(j["dataset"]["url"], url.as_str());
    assert_eq!(j["totals"]["read"], 108);
    assert_eq!(j["totals"]["accepted"], 100);
    assert_eq!(j["totals"]["rejected"], 8);
    assert_eq!(j["totals"]["shard_bytes"].as_u64(), Some(shard_bytes));
    assert_eq!(j["dataset"]["shards"], 4);
    assert_eq!(j["scan"]["rows"], 100);
    assert_eq!(j["distributions"]["image_bytes"]["count"], 100);
    assert!(
        j["scan"]["fetched_share"].as_f64().unwrap() < 0.2,
        "{}",
        j["scan"]
    );
    assert!(out.join("report.html").is_file());

    let ls = run_in(cwd.path(), &["shard", "ls", &url, "--json"], &env)
        .expect_code(0)
        .json();
    assert_eq!(ls["totals"]["rows"], 100);
    assert_eq!(ls["totals"]["shards"], 4);
    assert_eq!(ls["totals"]["shard_bytes"].as_u64(), Some(shard_bytes));
    let shards: Vec<u64> = ls["units"][1]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(shards, [30, 20]);

    let verify = run_in(cwd.path(), &["shard", "verify", &url, "--json"], &env)
        .expect_code(0)
        .json();
    assert_eq!(
        verify["problems"].as_array().map(Vec::len),
        Some(0),
        "{verify}"
    );
    assert_eq!(verify["files"], 6);
    assert!(verify["bytes_hashed"].as_u64().unwrap() > shard_bytes);

    killed_multipart_upload_is_reported_and_aborted_by_the_rerun(&url, &env, cwd.path());

    // an endpoint where nothing listens: a clear error within seconds, not a hang
    let mut dead = env.clone();
    for (k, v) in dead.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = format!("http://127.0.0.1:{}", free_port());
        }
    }
    let started = Instant::now();
    let r = run_in(
        cwd.path(),
        &["stats", &url, "-q", "--out", out.to_str().unwrap()],
        &dead,
    )
    .expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        r.stderr.contains("error:") && r.stderr.contains(&url),
        "{}",
        r.stderr
    );

    // no credentials: says what to set. The client's last resort, the instance metadata
    // endpoint, is pointed at a dead local port so that nothing but loopback is contacted.
    let out = std::process::Command::new(support::bin())
        .args(["shard", "ls", &url, "--store-retries", "0"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env(
            "AWS_METADATA_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no AWS credentials: set AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    drop(server);
}

/// A process killed while uploading a shard leaves an unfinished multipart upload, which is not
/// an object: `shard verify` must still report it, and the re-run of its unit must abort it.
fn killed_multipart_upload_is_reported_and_aborted_by_the_rerun(
    url: &str,
    env: &[(String, String)],
    cwd: &std::path::Path,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = StoreRoot::parse(url).unwrap();
    let target = layout::shard_path("crashed", 0);
    rt.block_on(async {
        let mut upload = root
            .store()
            .put_multipart(&StorePath::from(target.as_str()))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from(vec![7u8; 5 << 20]))
            .await
            .unwrap();
        // dropped without completing or aborting: what a killed process leaves
    });
    let leftovers = rt.block_on(async {
        let ds = Dataset::open_root(root.clone()).await.unwrap();
        unreferenced_objects(&root, ds.commits()).await.unwrap()
    });
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert!(
        leftovers[0].starts_with(&format!("{target}#upload=")),
        "{leftovers:?}"
    );
    let verify = run_in(cwd, &["shard", "verify", url, "--json"], env)
        .expect_code(1)
        .json();
    assert!(verify.to_string().contains("#upload="), "{verify}");

    // the re-run starts the unit again: the upload is aborted with the unit's other leftovers
    rt.block_on(async {
        let ds = Dataset::open_root(root.clone()).await.unwrap();
        let writer = DatasetWriter::open(
            root.clone(),
            ds.manifest().clone(),
            WriterSettings::default(),
        )
        .await
        .unwrap();
        let unit = UnitSpec {
            id: "crashed".into(),
            source: "test".into(),
            kind: "webdataset".into(),
            start: None,
            end: None,
        };
        drop(
            writer
                .begin_unit(unit, shard_schema(), WorkerInfo::default())
                .await
                .unwrap(),
        );
        assert!(
            unreferenced_objects(&root, ds.commits())
                .await
                .unwrap()
                .is_empty()
        );
    });
    run_in(cwd, &["shard", "verify", url], env).expect_code(0);
}
