//! End-to-end tests of `flipstream synth`, running the real binary: determinism across seeds and
//! thread counts, exact dirt counts, output rules and usage errors.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flipstream"))
}

fn synth(out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = bin();
    cmd.arg("synth")
        .arg("--out")
        .arg(out)
        .args(args)
        .arg("--quiet");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run flipstream")
}

fn ok(out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let o = synth(out, args, env);
    assert!(
        o.status.success(),
        "synth {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// Relative path → BLAKE3 of every file.
fn digest(dir: &Path) -> BTreeMap<String, String> {
    files(dir)
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .expect("inside dir")
                .to_string_lossy()
                .into_owned();
            (
                rel,
                blake3::hash(&std::fs::read(&p).expect("read file"))
                    .to_hex()
                    .to_string(),
            )
        })
        .collect()
}

fn sidecar(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("synth.jsonl"))
        .expect("read synth.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("sidecar line is JSON"))
        .collect()
}

#[test]
fn same_seed_gives_identical_bytes_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--count",
        "36",
        "--dirt",
        "default",
        "--shard-size",
        "16",
        "--seed",
        "5",
    ];
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    ok(&a, &args, &[("RAYON_NUM_THREADS", "1")]);
    ok(&b, &args, &[("RAYON_NUM_THREADS", "2")]);
    let (da, db) = (digest(&a), digest(&b));
    assert_eq!(
        da.keys().cloned().collect::<Vec<_>>(),
        [
            "shard-00000.tar",
            "shard-00001.tar",
            "shard-00002.tar",
            "synth.json",
            "synth.jsonl"
        ]
    );
    assert_eq!(da, db);
    let mut other_seed = args.to_vec();
    other_seed[7] = "6";
    ok(&c, &other_seed, &[]);
    let dc = digest(&c);
    for (name, hash) in &da {
        assert_ne!(
            Some(hash),
            dc.get(name),
            "{name} is the same for seeds 5 and 6"
        );
    }
}

#[test]
fn every_dirt_kind_gets_exactly_the_asked_count() {
    let tmp = tempfile::tempdir().unwrap();
    let kinds: Vec<String> = [
        "truncated",
        "corrupt",
        "zero_byte",
        "not_image",
        "tiny",
        "extreme_aspect",
        "duplicate_exact",
        "near_duplicate",
        "caption_empty",
        "caption_one_word",
        "caption_overlong",
        "caption_html",
        "caption_invalid_utf8",
        "exif_rotated",
        "cmyk",
        "gray16",
        "grayscale",
        "palette_alpha",
        "animated",
        "decompression_bomb",
        "missing_file",
    ]
    .iter()
    .map(|k| format!("{k}=0.04"))
    .collect();
    let spec = kinds.join(",");
    for (layout, skipped) in [("urls", "caption_invalid_utf8"), ("folder", "missing_file")] {
        let out = tmp.path().join(layout);
        ok(
            &out,
            &["--count", "50", "--layout", layout, "--dirt", &spec],
            &[],
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("synth.json")).unwrap()).unwrap();
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for rec in sidecar(&out) {
            if let Some(k) = rec["dirt"].as_str() {
                *counted.entry(k.to_string()).or_default() += 1;
            }
            if let Some(k) = rec["dirt_skipped"].as_str() {
                assert_eq!(k, skipped);
            }
        }
        // ⌈0.04·50⌉ = 2 per kind, except the one the layout cannot carry.
        assert_eq!(counted.len(), 20, "{layout}: {counted:?}");
        assert!(counted.values().all(|&n| n == 2), "{layout}: {counted:?}");
        assert!(!counted.contains_key(skipped));
        assert_eq!(summary["dirt_skipped"][skipped], 2);
        assert_eq!(summary["clean"], 50 - 40);
        assert_eq!(serde_json::to_value(&counted).unwrap(), summary["dirt"]);
    }
    let clean = tmp.path().join("clean");
    ok(&clean, &["--count", "12", "--layout", "parquet"], &[]);
    assert!(sidecar(&clean).iter().all(|r| r["dirt"].is_null()));
}

#[test]
fn json_output_is_the_summary_file_and_force_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = synth(&out, &["--count", "6", "--json"], &[]);
    assert!(o.status.success());
    assert_eq!(o.stdout, std::fs::read(out.join("synth.json")).unwrap());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["items"], 6);
    assert_eq!(summary["config"]["layout"], "webdataset");
    assert_eq!(summary["flipstream_version"], env!("CARGO_PKG_VERSION"));

    // Non-empty output: refused without --force, and left as it was.
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    let o = synth(&out, &["--count", "6"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(out.join("mine.txt").exists());
    let o = ok(
        &out,
        &["--count", "4", "--layout", "folder", "--force"],
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 pairs"));
    assert!(!out.join("mine.txt").exists() && out.join("images").is_dir());
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["o"], "temporary folders left behind");
}

#[test]
fn usage_errors_exit_2_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = tmp.path().join("out");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--dirt".into(), "tiny=0.6,corrupt=0.5".into()],
            "sum to",
        ),
        (
            vec!["--dirt".into(), "rotten=0.1".into()],
            "unknown dirt kind",
        ),
        (
            vec!["--dirt".into(), "tiny=lots".into()],
            "bad dirt fraction",
        ),
        (vec!["--count".into(), "0".into()], "count"),
        (
            vec![
                "--count".into(),
                "5".into(),
                "--dirt".into(),
                "default".into(),
            ],
            "needs",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = synth(&out, &args, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(o.stdout.is_empty());
    }
    // An output that cannot be created: under a regular file.
    let o = synth(&blocker.join("sub"), &["--count", "3"], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write output"), "{stderr}");
    // Unknown flag: clap's error (its first line is the message, then usage hints).
    let o = synth(&out, &["--bogus"], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .starts_with("error: unexpected argument '--bogus'"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );

    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["file"], "something was written");
}

#[test]
fn help_explains_every_flag_and_dirt_kind() {
    let o = bin().args(["synth", "--help"]).output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--out",
        "--count",
        "--seed",
        "--layout",
        "--shard-size",
        "--dirt",
        "--url-base",
        "--force",
        "--json",
        "--quiet",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    for word in [
        "webdataset",
        "parquet",
        "folder",
        "urls",
        "decompression_bomb",
        "missing_file",
        "caption_invalid_utf8",
    ] {
        assert!(help.contains(word), "{word} missing from --help");
    }
}

#[test]
fn bench_synth_reports_stages_formats_and_the_encode_floor() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().unwrap();
    let bench = |extra: &[&str]| -> Output {
        bin()
            .args(["--json", "-q", "bench", "synth", "--dir", scratch])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = bench(&[
        "--count",
        "60",
        "--profile",
        "80",
        "--threads",
        "2",
        "--dirt",
        "default",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["benchmark"], "synth");
    assert_eq!(j["threads"], 2);
    assert_eq!(j["generate"]["items"], 60);
    assert!(j["output_bytes"].as_u64().unwrap() > 60 * 1000, "{j}");
    // the breakdown is capped at --count
    assert_eq!(j["profiled_pairs"], 60);
    let stages = j["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3);
    let share: f64 = stages.iter().map(|s| s["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "{j}");
    let formats = j["formats"].as_array().unwrap();
    let pairs: u64 = formats.iter().map(|f| f["pairs"].as_u64().unwrap()).sum();
    assert_eq!(pairs, 60);
    assert!(formats.iter().any(|f| f["format"] == "jpeg"), "{j}");
    let floor = j["encode_floor_pairs_per_s"].as_f64().unwrap();
    let ratio = j["generate_vs_encode_floor"].as_f64().unwrap();
    assert!(floor > 0.0 && ratio > 0.0 && ratio.is_finite(), "{j}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch output left behind"
    );

    for (flag, value) in [("--count", "0"), ("--dirt", "sparkles=0.1")] {
        let o = bench(&[flag, value]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag.trim_start_matches('-')), "{stderr}");
    }
}
