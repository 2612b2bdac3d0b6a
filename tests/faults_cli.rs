//! Riding out a flaky object store: `scripts/fault-proxy.py` in front of a real S3 server (moto on
//! 127.0.0.1) gives 10 % of the requests a fault (503 SlowDown, 500, a reset connection before or
//! after the request took effect, a body cut short). Ingest, verify, stats, the loader and a
//! short training run with its run directory on s3:// each complete in one run through it, with
//! results identical to the fault-free run. A training run killed (-9) in the middle of a
//! checkpoint upload resumes from the last complete checkpoint with the uninterrupted losses. An
//! outage fails with a clear message after the retry budget and the re-run completes the same
//! dataset.
//!
//! One test function: the in-process reads take their S3 settings from the process environment,
//! which may only be set while no other thread runs.
#![cfg(feature = "train")]
// Helpers outside #[test] functions unwrap too: in tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flipstream_shard::StoreRoot;
use support::dataset::fingerprint;
use support::faults::FaultProxy;
use support::s3::{MotoServer, set_process_env};
use support::train::{CONFIG, ONE_CPU_THREAD, assert_same_losses, losses};
use support::{Run, run_in};

/// `env` with the S3 endpoint replaced by `endpoint`.
fn through(env: &[(String, String)], endpoint: &str) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| {
            let v = if k == "AWS_ENDPOINT_URL" {
                endpoint.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// The retries a command's `--json` summary reports.
fn retries(run: &Run) -> u64 {
    run.json()["store_retries"]["retries"].as_u64().unwrap()
}

/// An object's bytes, read in-process (the process environment points at the server directly).
fn read_object(url: &str, rel: &str) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(StoreRoot::parse(url).unwrap().get(rel))
        .unwrap_or_else(|e| panic!("reading {url}/{rel}: {e}"))
        .to_vec()
}

/// The losses a run directory on s3:// logged.
fn s3_losses(run_url: &str, scratch: &Path) -> Vec<(u64, f64)> {
    std::fs::create_dir_all(scratch).unwrap();
    std::fs::write(
        scratch.join("metrics.jsonl"),
        read_object(run_url, "metrics.jsonl"),
    )
    .unwrap();
    losses(scratch)
}

/// `train DATA --run RUN` with the micro config on every row, one CPU thread, no evaluation,
/// then `extra`.
fn train_args<'a>(data: &'a str, run: &'a str, config: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        data,
        "--run",
        run,
        "--config",
        config,
        "--all-data",
        "--eval-every",
        "0",
    ];
    args.extend_from_slice(&ONE_CPU_THREAD);
    args.extend_from_slice(extra);
    args
}

/// The `--json` output of `args` run with `env` and `cwd`, which must exit 0.
fn json_of(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let mut all = vec!["--json", "-q"];
    all.extend_from_slice(args);
    run_in(cwd, &all, env).expect_code(0)
}

/// Requests and faults the proxy saw per command, with the retries the command reported: the
/// table of docs/reliability.md.
struct Ledger {
    rows: Vec<String>,
    seen: serde_json::Value,
    retries: u64,
}

fn faults_of(stats: &serde_json::Value) -> [u64; 4] {
    ["503", "500", "reset", "cut"].map(|k| stats["faults"][k].as_u64().unwrap())
}

impl Ledger {
    fn new(proxy: &FaultProxy) -> Self {
        Self {
            rows: Vec::new(),
            seen: proxy.stats(),
            retries: 0,
        }
    }

    /// Records the proxy's counts since the last record for `command`, which reported `retries`.
    fn record(&mut self, proxy: &FaultProxy, command: &str, retries: u64) {
        let now = proxy.stats();
        let requests = now["requests"].as_u64().unwrap() - self.seen["requests"].as_u64().unwrap();
        let (a, b) = (faults_of(&now), faults_of(&self.seen));
        let f: Vec<u64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        self.rows.push(format!(
            "| {command} | {requests} | {} | {} | {} | {} | {} | {retries} | 0 |",
            f.iter().sum::<u64>(),
            f[0],
            f[1],
            f[2],
            f[3]
        ));
        self.seen = now;
        self.retries += retries;
    }
}

#[test]
fn commands_ride_out_a_flaky_store_and_an_outage() {
    let server = MotoServer::start();
    let direct = server.env();
    set_process_env(&direct);
    let proxy = FaultProxy::start(&server.endpoint, 0.10, 7);
    let flaky = through(&direct, &proxy.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let raw = cwd.join("raw");
    let raw_s = raw.to_str().unwrap();
    run_in(
        cwd,
        &[
            "-q",
            "synth",
            "--out",
            raw_s,
            "--count",
            "300",
            "--seed",
            "3",
            "--layout",
            "webdataset",
        ],
        &[],
    )
    .expect_code(0);
    let (clean, faulty) = (server.url("clean"), server.url("faulty"));
    let ingest = [
        "ingest",
        raw_s,
        "--size",
        "32",
        "--shard-rows",
        "20",
        "--row-group-rows",
        "10",
        "--out",
    ];

    // ingest: the same dataset, to the row and byte
    let a = json_of(cwd, &[&ingest[..], &[clean.as_str()]].concat(), &direct);
    let mut ledger = Ledger::new(&proxy);
    let b = json_of(cwd, &[&ingest[..], &[faulty.as_str()]].concat(), &flaky);
    assert_eq!(a.json()["counts"], b.json()["counts"]);
    assert!(b.json()["units_failed"].as_array().unwrap().is_empty());
    assert_eq!(fingerprint(&clean), fingerprint(&faulty));
    ledger.record(&proxy, "ingest", retries(&b));

    // verify: no false damage
    let v = json_of(cwd, &["shard", "verify", &faulty], &flaky);
    assert_eq!(v.json()["problems"], serde_json::json!([]), "{}", v.stdout);
    assert_eq!(
        v.json()["files"],
        json_of(cwd, &["shard", "verify", &clean], &direct).json()["files"]
    );
    ledger.record(&proxy, "shard verify", retries(&v));

    // stats: the same totals
    let out = cwd.join("report");
    let stats = ["stats", "--out", out.to_str().unwrap()];
    let s_clean = json_of(cwd, &[&stats[..], &[clean.as_str()]].concat(), &direct).json();
    let s_faulty = json_of(cwd, &[&stats[..], &[faulty.as_str()]].concat(), &flaky).json();
    assert_eq!(s_clean["totals"], s_faulty["totals"]);
    assert_eq!(s_clean["scan"]["rows"], s_faulty["scan"]["rows"]);
    ledger.record(
        &proxy,
        "stats",
        s_faulty["scan"]["store_retries"].as_u64().unwrap(),
    );

    // the loader: the same keys in the same order
    let keys = [
        "loader",
        "--keys",
        "--batch-size",
        "16",
        "--lanes",
        "4",
        "--image-size",
        "32",
    ];
    let k_clean = run_in(cwd, &[&keys[..], &[clean.as_str()]].concat(), &direct).expect_code(0);
    let k_faulty = run_in(cwd, &[&keys[..], &[faulty.as_str()]].concat(), &flaky).expect_code(0);
    let loader_retries = k_faulty
        .stderr
        .split("object store: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map_or(0, |n| n.parse().unwrap());
    ledger.record(&proxy, "loader --keys", loader_retries);
    assert_eq!(k_clean.stdout, k_faulty.stdout);
    assert!(k_clean.stdout.lines().count() >= 256, "{}", k_clean.stdout);

    // a short training run, data and run directory on s3://: the same losses
    let config = cwd.join("micro.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config_s = config.to_str().unwrap();
    let train = |data: &str, run: &str, env: &[(String, String)]| {
        json_of(cwd, &train_args(data, run, config_s, &[]), env)
    };
    let local_run = cwd.join("run-clean");
    train(&clean, local_run.to_str().unwrap(), &direct);
    let s3_run = server.url("runs/flaky");
    let t = train(&faulty, &s3_run, &flaky);
    ledger.record(&proxy, "train (8 steps, run dir on s3://)", retries(&t));
    let scratch = cwd.join("s3-metrics");
    assert_same_losses(&losses(&local_run), &s3_losses(&s3_run, &scratch));

    // kill -9 in the middle of uploading a checkpoint to s3://: the resumed run continues from
    // the last complete checkpoint and repeats the uninterrupted losses
    let killed_run = server.url("runs/killed");
    proxy.stall("/checkpoints/step-00000008/");
    let mut child = Command::new(support::bin())
        .arg("-q")
        .args(train_args(
            &faulty,
            &killed_run,
            config_s,
            &["--checkpoint-every", "4"],
        ))
        .envs(flaky.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while proxy.stats()["stalled"].as_u64().unwrap() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        assert!(Instant::now() < deadline, "no checkpoint upload at step 8");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    proxy.stall("");
    let latest: serde_json::Value =
        serde_json::from_slice(&read_object(&killed_run, "checkpoints/latest.json")).unwrap();
    assert_eq!(latest["step"], 4, "{latest}");
    let resumed = [
        &["train", "--run", &killed_run, "--resume"][..],
        &ONE_CPU_THREAD,
    ]
    .concat();
    json_of(cwd, &resumed, &flaky);
    assert_same_losses(&losses(&local_run), &s3_losses(&killed_run, &scratch));

    eprintln!(
        "| command | requests | faults | 503 | 500 | reset | cut | retries | items lost |\n\
         |---|---|---|---|---|---|---|---|---|\n{}",
        ledger.rows.join("\n")
    );
    let seen = proxy.stats();
    for kind in ["503", "500", "reset", "cut"] {
        assert!(seen["faults"][kind].as_u64().unwrap() > 0, "{seen}");
    }
    // every fault costs at least one retry (a reset after a write can also be seen as done)
    let faults: u64 = faults_of(&seen).iter().sum();
    assert!(
        ledger.retries >= faults / 2,
        "{} retries for {faults} faults",
        ledger.retries
    );

    // an outage: a clear failure after the retry budget, then the re-run completes
    proxy.set_rate(1.0);
    let after_outage = server.url("outage");
    let failed = run_in(
        cwd,
        &[
            &["--store-retries", "2"][..],
            &ingest[..],
            &[after_outage.as_str()],
        ]
        .concat(),
        &flaky,
    )
    .expect_code(1);
    assert!(
        failed.stderr.contains("still failing after 2 retries"),
        "{}",
        failed.stderr
    );
    proxy.set_rate(0.0);
    json_of(
        cwd,
        &[&ingest[..], &[after_outage.as_str()]].concat(),
        &flaky,
    );
    assert_eq!(fingerprint(&clean), fingerprint(&after_outage));
    let v = json_of(cwd, &["shard", "verify", &after_outage], &flaky);
    assert_eq!(v.json()["problems"], serde_json::json!([]), "{}", v.stdout);
    drop(proxy);
    drop(server);
}
