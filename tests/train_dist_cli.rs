//! Data-parallel `flipstream train` as processes, on c10d Gloo over 127.0.0.1: `--nproc 2` logs
//! the losses of a one-process run, resuming across world sizes (2 → 1, 1 → 2) continues them, a
//! killed rank is named and stops the others, and bad setups exit 2 with a message.

#![cfg(feature = "train")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::train::{CONFIG, ONE_CPU_THREAD, assert_same_losses, losses};
use support::{Run, bin, run};

/// The dataset (256 synthetic pairs, ingested at 32 px) and the config file, made once.
fn fixture() -> &'static (tempfile::TempDir, String, PathBuf) {
    static FIXTURE: OnceLock<(tempfile::TempDir, String, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let data = dir.path().join("data");
        let (raw_s, data_s) = (raw.to_str().unwrap(), data.to_str().unwrap());
        run(&[
            "--quiet",
            "synth",
            "--out",
            raw_s,
            "--count",
            "256",
            "--seed",
            "3",
            "--layout",
            "webdataset",
            "--object-sizes",
            "large=1",
        ])
        .expect_code(0);
        run(&["--quiet", "ingest", raw_s, "--out", data_s, "--size", "32"]).expect_code(0);
        run(&[
            "--quiet",
            "shard",
            "split",
            data_s,
            "--val-fraction",
            "0.25",
        ])
        .expect_code(0);
        let config = dir.path().join("micro.toml");
        std::fs::write(&config, CONFIG).unwrap();
        (dir, data_s.to_string(), config)
    })
}

/// Training on every row without evaluation.
const ALL_DATA: [&str; 3] = ["--all-data", "--eval-every", "0"];

/// `flipstream train` on the fixture into `run_dir` with the micro config on the CPU, then
/// `extra`; one libtorch and one decode thread and a 60 s distributed timeout unless `extra` says
/// otherwise.
fn train_command(run_dir: &Path, extra: &[&str]) -> Command {
    let (_, data, config) = fixture();
    let mut cmd = Command::new(bin());
    cmd.args(["--quiet", "train", data.as_str(), "--run"])
        .arg(run_dir)
        .arg("--config")
        .arg(config)
        .args(["--device", "cpu"]);
    for (flag, value) in [
        ("--threads", "1"),
        ("--decode-threads", "1"),
        ("--dist-timeout", "60"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    cmd
}

/// Runs `cmd` to the end.
fn finish(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`train_command`] on every row without evaluation, with `extra` arguments and environment.
fn train(run_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    finish(train_command(run_dir, &[&ALL_DATA[..], extra].concat()).envs(env.iter().copied()))
}

/// `resume` variant of [`train`]: the run's own config.
fn resume(run_dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--quiet",
        "train",
        "--run",
        run_dir.to_str().unwrap(),
        "--resume",
    ];
    args.extend_from_slice(&ONE_CPU_THREAD);
    args.extend_from_slice(extra);
    run(&args)
}

/// The single-process reference run (8 steps), made once.
fn reference() -> &'static Vec<(u64, f64)> {
    static REFERENCE: OnceLock<Vec<(u64, f64)>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = fixture().0.path().join("single");
        train(&dir, &[], &[]).expect_code(0);
        losses(&dir)
    })
}

#[test]
fn two_ranks_log_the_losses_of_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("two");
    let out = train(&dir, &["--nproc", "2", "--json"], &[]).expect_code(0);
    assert_eq!(out.json()["samples_seen"], 8 * 16, "{}", out.stdout);
    assert_same_losses(reference(), &losses(&dir));
    assert!(dir.join("checkpoints/step-00000008").is_dir());
    // rank 0 alone wrote the run: one line per step
    assert_eq!(losses(&dir).len(), 8);
}

#[test]
fn resuming_on_another_number_of_ranks_continues_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 ranks, then 1
    let a = tmp.path().join("two-then-one");
    train(&a, &["--nproc", "2", "--stop-after", "4"], &[]).expect_code(0);
    resume(&a, &[]).expect_code(0);
    assert_same_losses(reference(), &losses(&a));
    // 1 rank, then 2
    let b = tmp.path().join("one-then-two");
    train(&b, &["--stop-after", "4"], &[]).expect_code(0);
    resume(&b, &["--nproc", "2", "--dist-timeout", "60"]).expect_code(0);
    assert_same_losses(reference(), &losses(&b));
}

/// The evaluation records of metrics.jsonl.
fn evals(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "eval")
        .collect()
}

#[test]
fn sharded_evaluation_reports_what_one_process_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let train_split = |dir: &Path, extra: &[&str]| {
        finish(&mut train_command(
            dir,
            &[&["--eval-every", "4"][..], extra].concat(),
        ))
        .expect_code(0);
        evals(dir)
    };
    let one = train_split(&tmp.path().join("one"), &[]);
    let two = train_split(&tmp.path().join("two"), &["--nproc", "2"]);
    assert_eq!(one.len(), 2, "{one:?}");
    assert_eq!(two.len(), 2, "{two:?}");
    for (a, b) in one.iter().zip(&two) {
        let samples = a["samples"].as_u64().unwrap();
        assert!(samples > 20, "{a}");
        assert_eq!(a["samples"], b["samples"]);
        // The weights agree to float precision, not bit for bit: allow one sample's difference.
        let near = |x: &serde_json::Value, y: &serde_json::Value| {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1.0 / samples as f64 + 1e-9
        };
        assert!(
            near(&a["zero_shot"]["top1"], &b["zero_shot"]["top1"]),
            "{a}\n{b}"
        );
        assert!(
            near(
                &a["retrieval"]["image_to_text"]["r1"],
                &b["retrieval"]["image_to_text"]["r1"]
            ),
            "{a}\n{b}"
        );
        assert_eq!(a["zero_shot"]["samples"], b["zero_shot"]["samples"]);
    }
}

/// The children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the fields after the last ')'
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn rank_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("RANK=").map(str::to_string))
}

#[test]
fn a_killed_rank_is_named_and_the_survivor_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("killed");
    let extra = [
        &ALL_DATA[..],
        &["--steps", "100000", "--nproc", "2", "--dist-timeout", "30"],
    ]
    .concat();
    let launcher = train_command(&dir, &extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the ranks train (steps in metrics.jsonl), then kill rank 1.
    let started = Instant::now();
    while !dir.join("metrics.jsonl").exists() || losses(&dir).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the ranks did not start training"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let victim = children(launcher.id())
        .into_iter()
        .find(|&p| rank_of(p).as_deref() == Some("1"))
        .expect("rank 1's process");
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    // The launcher ends once the survivor has stopped (it would kill it after 30 + 10 s).
    let out = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rank 1 was killed by signal 9"), "{stderr}");
    assert!(
        stderr.contains("distributed training"),
        "rank 0 did not report the failure:\n{stderr}"
    );
    assert!(
        !stderr.contains("did not stop; killing it"),
        "rank 0 hung:\n{stderr}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(40),
        "{:?}",
        killed.elapsed()
    );
}

#[test]
fn bad_setups_exit_2_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    // A world size that does not divide the batch (16) or the lanes (4): refused before the run
    // directory is created.
    let dir = tmp.path().join("three");
    let out = train(&dir, &["--nproc", "3"], &[]).expect_code(2);
    assert!(
        out.stderr
            .contains("3 ranks cannot share train.batch_size 16"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("config.toml").exists());
    // Nobody serves the rendezvous.
    let port = support::s3::free_port().to_string();
    let env = [
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", port.as_str()),
    ];
    let out = train(&tmp.path().join("alone"), &["--dist-timeout", "3"], &env).expect_code(2);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    // --nproc under a launcher.
    let out = train(&tmp.path().join("nested"), &["--nproc", "2"], &env).expect_code(2);
    assert!(out.stderr.contains("leave out --nproc"), "{}", out.stderr);
    // A preset from the command line and another from the config file: not silently one of them.
    let out = train(&tmp.path().join("both"), &["--preset", "small"], &[]).expect_code(2);
    assert!(
        out.stderr.contains("both choose the preset"),
        "{}",
        out.stderr
    );
}

#[test]
fn ranks_started_with_other_settings_all_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mismatch");
    let port = support::s3::free_port().to_string();
    let spawn = |rank: &str, steps: &str| {
        let extra = [&ALL_DATA[..], &["--steps", steps, "--dist-timeout", "30"]].concat();
        train_command(&dir, &extra)
            .envs([
                ("WORLD_SIZE", "2"),
                ("RANK", rank),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", port.as_str()),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0", "8"), spawn("1", "9"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("other settings than rank 0"), "{stderr}");
    }
    assert!(!dir.join("config.toml").exists());
}
