//! `flipstream stats` and `flipstream shard ls|verify|split` end to end: the real binary on local
//! datasets written through the library, its outputs, exit codes and messages.

// Helpers outside #[test] functions unwrap too: in tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use flipstream_shard::WriterSettings;
use flipstream_stats::format;
use flipstream_testkit::synthetic::SyntheticSpec;
use support::{labels_of, run, run_in, write_dataset, write_labelled_dataset};

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        units: 3,
        rows_per_unit: 60,
        rejections_per_unit: 8,
        mean_image_bytes: 4_000,
        settings: WriterSettings {
            row_group_rows: 16,
            shard_rows: 40,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A fresh dataset in a temporary folder: (folder, dataset path).
fn fresh() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds").to_string_lossy().into_owned();
    write_dataset(&ds, &spec());
    (dir, ds)
}

#[test]
fn stats_writes_three_reports_that_agree_and_json_on_stdout() {
    let (dir, ds) = fresh();
    let out = dir.path().join("report");
    let out_s = out.to_string_lossy().into_owned();
    let human = run(&["stats", &ds, "--out", &out_s]).expect_code(0);
    assert!(human.stdout.contains("180 accepted"), "{}", human.stdout);
    assert!(human.stdout.contains("report.html"), "{}", human.stdout);

    let machine = run(&[
        "stats",
        &ds,
        "--out",
        &out_s,
        "--json",
        "--concurrency",
        "3",
    ])
    .expect_code(0);
    let file = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert_eq!(
        machine.stdout.trim_end(),
        file.trim_end(),
        "--json prints report.json"
    );
    let json = machine.json();
    assert_eq!(json["format"], "flipstream-stats");
    assert_eq!(json["report_version"], 1);
    assert_eq!(json["totals"]["read"], 204);
    assert_eq!(json["totals"]["accepted"], 180);
    assert_eq!(json["dataset"]["shards"], 6);
    assert_eq!(json["scan"]["concurrency"], 3);
    let reasons: Vec<(String, u64)> = json["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("caption_too_short".into(), 6),
            ("decode_error".into(), 6),
            ("duplicate_exact".into(), 6),
            ("too_small".into(), 6)
        ]
    );

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for (reason, count) in &reasons {
        assert!(
            md.contains(&format!("| `{reason}` | {} |", format::count(*count))),
            "report.md: {reason}"
        );
        assert!(
            html.contains(&format!(
                r#"<code>{reason}</code></td><td class="n">{}</td>"#,
                format::count(*count)
            )),
            "html: {reason}"
        );
    }
    let stored = format::bytes(json["totals"]["stored_bytes"].as_f64().unwrap());
    assert!(
        md.contains(&stored) && html.contains(&stored),
        "stored size {stored}"
    );
    assert!(
        human.stderr.is_empty() || !human.stderr.contains("error"),
        "{}",
        human.stderr
    );
}

#[test]
fn stats_defaults_to_a_folder_named_after_the_dataset() {
    let (dir, ds) = fresh();
    run_in(dir.path(), &["stats", &ds, "-q"], &[]).expect_code(0);
    for f in ["report.json", "report.md", "report.html"] {
        assert!(dir.path().join("stats-ds").join(f).is_file(), "{f}");
    }
}

#[test]
fn stats_refuses_bad_input_with_a_message_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let r = run(&[
        "stats",
        empty.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ])
    .expect_code(1);
    assert!(
        r.stderr.contains("is not a flipstream dataset") && r.stderr.contains("nothing"),
        "{}",
        r.stderr
    );

    let (dir, ds) = fresh();
    let shard = std::path::Path::new(&ds).join("shards/unit-0001-00000.parquet");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 3]).unwrap();
    let r = run(&[
        "stats",
        &ds,
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ])
    .expect_code(1);
    assert!(
        r.stderr.contains("shards/unit-0001-00000.parquet"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.trim().lines().count(),
        1,
        "one clear line: {}",
        r.stderr
    );

    let commit = std::path::Path::new(&ds).join("_flipstream/commits/unit-0002.json");
    std::fs::write(&commit, b"not json").unwrap();
    let r = run(&[
        "stats",
        &ds,
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ])
    .expect_code(1);
    assert!(
        r.stderr.contains("_flipstream/commits/unit-0002.json"),
        "{}",
        r.stderr
    );

    // usage errors: exit code 2
    run(&["stats", &ds, "--concurrency", "0"]).expect_code(2);
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let r = run(&["stats", &ds, "--out", blocker.join("sub").to_str().unwrap()]).expect_code(2);
    assert!(
        r.stderr.contains("cannot create the output folder"),
        "{}",
        r.stderr
    );
}

#[test]
fn shard_ls_lists_what_the_commit_records_say() {
    let (_dir, ds) = fresh();
    let r = run(&["shard", "ls", &ds, "--json"]).expect_code(0);
    let j = r.json();
    assert_eq!(j["totals"]["units"], 3);
    assert_eq!(j["totals"]["shards"], 6);
    assert_eq!(j["totals"]["rows"], 180);
    assert_eq!(j["totals"]["rejected"], 24);
    // shards of 40 + 20 rows in row groups of 16
    let first = &j["units"][0]["shards"];
    assert_eq!(
        (first[0]["rows"].as_u64(), first[0]["row_groups"].as_u64()),
        (Some(40), Some(3))
    );
    assert_eq!(
        (first[1]["rows"].as_u64(), first[1]["row_groups"].as_u64()),
        (Some(20), Some(2))
    );
    let on_disk =
        std::fs::metadata(std::path::Path::new(&ds).join("shards/unit-0000-00000.parquet"))
            .unwrap()
            .len();
    assert_eq!(first[0]["bytes"].as_u64(), Some(on_disk));
    let human = run(&["shard", "ls", &ds]).expect_code(0);
    assert!(
        human.stdout.contains("shards/unit-0002-00001.parquet"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("total: 3 units, 6 shards, 15 row groups, 180 rows"),
        "{}",
        human.stdout
    );
}

#[test]
fn shard_verify_exits_1_and_names_every_problem() {
    let (_dir, ds) = fresh();
    let r = run(&["shard", "verify", &ds]).expect_code(0);
    assert!(r.stdout.contains("OK"), "{}", r.stdout);
    let root = std::path::Path::new(&ds);
    std::fs::remove_file(root.join("shards/unit-0000-00001.parquet")).unwrap();
    let mut b = std::fs::read(root.join("shards/unit-0002-00000.parquet")).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(root.join("shards/unit-0002-00000.parquet"), b).unwrap();
    std::fs::write(root.join("rejections/stray.bin"), b"?").unwrap();

    let r = run(&["shard", "verify", &ds]).expect_code(1);
    assert!(
        r.stdout
            .contains("shards/unit-0000-00001.parquet: missing_file"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("shards/unit-0002-00000.parquet: checksum_mismatch"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("rejections/stray.bin: stray"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("3 problem(s)"), "{}", r.stdout);
    let j = run(&["shard", "verify", &ds, "--json", "--no-checksums"])
        .expect_code(1)
        .json();
    let kinds: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["stray", "missing_file"],
        "sorted by object; no checksum without checksums"
    );
    assert_eq!(j["checksums"], false);
}

#[test]
fn shard_split_writes_keeps_and_replaces_the_view() {
    let (_dir, ds) = fresh();
    let r = run(&[
        "shard",
        "split",
        &ds,
        "--val-fraction",
        "0.2",
        "--seed",
        "3",
    ])
    .expect_code(0);
    assert!(r.stdout.contains("written"), "{}", r.stdout);
    let path = std::path::Path::new(&ds).join("_flipstream/split.json");
    let first = std::fs::read(&path).unwrap();
    let r = run(&[
        "shard",
        "split",
        &ds,
        "--val-fraction",
        "0.2",
        "--seed",
        "3",
    ])
    .expect_code(0);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), first);
    let j = run(&[
        "shard",
        "split",
        &ds,
        "--val-fraction",
        "0.5",
        "--seed",
        "3",
        "--json",
    ])
    .expect_code(0)
    .json();
    assert_eq!(j["outcome"]["action"], "replaced");
    assert_eq!(j["outcome"]["previous_val_fraction"], 0.2);
    assert_eq!(
        j["manifest"]["train_rows"].as_u64().unwrap() + j["manifest"]["val_rows"].as_u64().unwrap(),
        180
    );
    let r = run(&["shard", "split", &ds, "--val-fraction", "1.5"]).expect_code(2);
    assert!(r.stderr.contains("between 0 and 1"), "{}", r.stderr);
    // the stats report shows the split
    let dir = tempfile::tempdir().unwrap();
    let s = run(&[
        "stats",
        &ds,
        "--json",
        "-q",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .expect_code(0)
    .json();
    assert_eq!(s["dataset"]["split"]["val_fraction"], 0.5);
}

#[test]
fn shard_split_holds_out_label_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("labelled").to_string_lossy().into_owned();
    write_labelled_dataset(&ds, 240);
    let split = |extra: &[&str]| {
        let mut args = vec!["shard", "split", &ds, "--val-fraction", "0.1"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let cols = ["--holdout-columns", "label_color,label_shape"];
    let r = split(&[&cols[..], &["--holdout-fraction", "0.2"]].concat()).expect_code(0);
    assert!(r.stdout.contains("written"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "held out 6 of 30 label_color × label_shape combinations (48 rows, all in validation): "
        ),
        "{}",
        r.stdout
    );
    let j = split(&[&cols[..], &["--holdout-fraction", "0.2", "--json"]].concat())
        .expect_code(0)
        .json();
    assert_eq!(j["outcome"]["action"], "unchanged");
    let m = &j["manifest"];
    let h = &m["holdout"];
    assert_eq!(
        h["columns"],
        serde_json::json!(["label_color", "label_shape"])
    );
    assert_eq!(
        (h["fraction"].as_f64(), h["rows"].as_u64()),
        (Some(0.2), Some(48))
    );
    assert_eq!(h["distinct_combos"], 30);
    let combos: Vec<(String, String)> = h["combos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    assert_eq!(combos.len(), 6);
    for (color, shape) in &combos {
        assert!(
            r.stdout.contains(&format!("{color} {shape}")),
            "{}",
            r.stdout
        );
    }
    // every held-out row is in validation, on top of the key split
    let val = m["val_rows"].as_u64().unwrap();
    assert_eq!(m["train_rows"].as_u64().unwrap() + val, 240);
    assert!(val >= 48, "{val}");
    let held = (0..240)
        .filter(|&i| {
            let (c, s) = labels_of(i);
            combos.contains(&(c.into(), s.into()))
        })
        .count();
    assert_eq!(held, 48);
    // the fraction defaults to 0.1 of the combinations
    let r = split(&cols).expect_code(0);
    assert!(r.stdout.contains("replaced"), "{}", r.stdout);
    assert!(r.stdout.contains("held out 3 of 30 "), "{}", r.stdout);
    // without a holdout, nothing is said about one
    let r = split(&[]).expect_code(0);
    assert!(!r.stdout.contains("held out"), "{}", r.stdout);
}

#[test]
fn shard_split_holdout_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("labelled").to_string_lossy().into_owned();
    write_labelled_dataset(&ds, 120);
    let refused = |extra: &[&str], says: &[&str]| {
        let mut args = vec!["shard", "split", &ds, "--val-fraction", "0.1"];
        args.extend_from_slice(extra);
        let r = run(&args).expect_code(2);
        for s in says {
            assert!(r.stderr.contains(s), "{extra:?}: {}", r.stderr);
        }
    };
    refused(
        &["--holdout-fraction", "0.2"],
        &["--holdout-fraction needs --holdout-columns"],
    );
    refused(&["--holdout-columns", "label_color"], &["at least two"]);
    refused(
        &["--holdout-columns", "label_color,"],
        &["empty column name"],
    );
    refused(
        &[
            "--holdout-columns",
            "label_color,label_shape",
            "--holdout-fraction",
            "1",
        ],
        &["--holdout-fraction", "between 0 and 1"],
    );
    refused(
        &["--holdout-columns", "label_color,label_size"],
        &["`label_size`", "label_shape", "caption"],
    );
    refused(
        &[
            "--holdout-columns",
            "label_color,label_shape",
            "--holdout-fraction",
            "0.95",
        ],
        &["of the 29 wanted", "smaller fraction"],
    );
    assert!(
        !std::path::Path::new(&ds)
            .join("_flipstream/split.json")
            .exists()
    );
    let help = run(&["shard", "split", "--help"]).expect_code(0);
    for flag in [
        "--holdout-columns <COLS>",
        "--holdout-fraction <F>",
        "combinations",
    ] {
        assert!(help.stdout.contains(flag), "{flag}: {}", help.stdout);
    }
}

#[test]
fn bench_stats_reports_rows_per_second_and_fetched_share() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("bench-ds");
    let args = [
        "bench",
        "stats",
        "--dir",
        d.to_str().unwrap(),
        "--rows",
        "300",
        "--units",
        "3",
        "--image-bytes",
        "20000",
        "--repeat",
        "2",
        "-q",
    ];
    let j = run(&args).expect_code(0).json();
    assert_eq!(j["rows"], 300);
    assert_eq!(j["generated"], true);
    assert_eq!(j["runs"].as_array().unwrap().len(), 2);
    assert!(j["median_rows_per_s"].as_f64().unwrap() > 0.0);
    assert!(j["fetched_share"].as_f64().unwrap() < 0.05, "{j}");
    // a second run reuses the dataset
    let again = run(&args).expect_code(0).json();
    assert_eq!(again["generated"], false);
}
