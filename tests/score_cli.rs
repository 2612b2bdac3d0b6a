//! CLIP-score filtering through the real binary: `flipstream score` writes a sidecar of one score
//! per accepted row (readable by DuckDB with a join on `key`), resumes unit by unit, refuses
//! another model under the same name; `shard filter --clip-score-top / --min-clip-score` keeps
//! the rows at or above the threshold and records the others as `low_clip_score`; `stats` shows
//! the distribution; bad requests exit 2.

#![cfg(feature = "train")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use support::dataset::read_dataset;
use support::train::{CONFIG, ONE_CPU_THREAD, train_micro};
use support::{Run, run, synth_and_ingest};

/// 160 synthetic pairs, a quarter of them with another scene's caption, ingested at 32 px.
fn dataset(dir: &Path) -> String {
    synth_and_ingest(
        dir,
        &[
            "--count",
            "160",
            "--seed",
            "4",
            "--layout",
            "webdataset",
            "--shard-size",
            "40",
            "--dirt",
            "caption_mismatched=0.25",
            "--object-sizes",
            "large=1",
        ],
        &["--size", "32"],
    )
}

/// A micro run trained 8 steps on every row of `data`, with checkpoints at steps 4 and 8.
fn train(dir: &Path, data: &str) -> String {
    let (run_dir, run) = train_micro(dir, data, "run", CONFIG, &["--checkpoint-every", "4"]);
    run.expect_code(0);
    run_dir
}

/// `flipstream score DATA --run RUN --json` plus `extra`.
fn score(data: &str, run_dir: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--json", "-q", "score", data, "--run", run_dir];
    args.extend_from_slice(&ONE_CPU_THREAD);
    args.extend_from_slice(extra);
    run(&args)
}

/// The JSON of `sql`'s rows, run by DuckDB from the Python test tools (no flipstream code).
fn duckdb_json(sql: &str) -> Vec<u8> {
    let python = std::env::var("FLIPSTREAM_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FLIPSTREAM_PYTHON is not set: this test reads the sidecar with DuckDB from the Python \
             test tools; run it through `make test` or `source scripts/pytools-env.sh`"
        )
    });
    let script = "import duckdb, json, sys; print(json.dumps(duckdb.sql(sys.argv[1]).fetchall()))";
    let out = std::process::Command::new(python)
        .args(["-c", script, sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sql`'s rows of numbers, by DuckDB.
fn duckdb_rows(sql: &str) -> Vec<Vec<f64>> {
    serde_json::from_slice(&duckdb_json(sql)).unwrap()
}

/// Every score of the sidecar `name` of `data`, by key, read with DuckDB (no flipstream code),
/// joined with the shards on `key`.
fn scores_by_duckdb(data: &str, name: &str) -> BTreeMap<String, f32> {
    let rows: Vec<(String, f64)> = serde_json::from_slice(&duckdb_json(&format!(
        "SELECT key, c.clip_score FROM '{data}/shards/*.parquet' s \
         JOIN '{data}/scores/{name}/*.parquet' c USING (key)"
    )))
    .unwrap();
    rows.into_iter().map(|(k, v)| (k, v as f32)).collect()
}

#[test]
fn scores_are_a_resumable_sidecar_and_filter_keeps_the_top_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run_dir = train(tmp.path(), &data);
    let source = read_dataset(&data);
    let units = source.dataset.commits().len();

    let first = score(&data, &run_dir, &[]).expect_code(0).json();
    assert_eq!(first["units_scored"], units, "{first}");
    assert_eq!(first["rows_scored"], source.accepted.len(), "{first}");
    assert_eq!(first["model"]["step"], 8, "{first}");
    let scores = scores_by_duckdb(&data, "clip");
    let keys: BTreeSet<&String> = source.accepted.keys().collect();
    assert_eq!(scores.keys().collect::<BTreeSet<_>>(), keys);
    assert!(scores.values().all(|s| (-1.0..=1.0).contains(s)));

    // resumable: nothing to do again; a lost unit file is scored again, to the same values
    let again = score(&data, &run_dir, &[]).expect_code(0).json();
    assert_eq!(
        (
            again["units_scored"].as_u64(),
            again["units_skipped"].as_u64()
        ),
        (Some(0), Some(units as u64))
    );
    let unit = &source.dataset.commits()[1].unit.id;
    std::fs::remove_file(Path::new(&data).join(format!("scores/clip/{unit}.parquet"))).unwrap();
    let resumed = score(&data, &run_dir, &[]).expect_code(0).json();
    assert_eq!(resumed["units_scored"], 1, "{resumed}");
    for (key, s) in scores_by_duckdb(&data, "clip") {
        assert!(
            (s - scores[&key]).abs() < 1e-5,
            "{key}: {s} vs {}",
            scores[&key]
        );
    }

    // other weights under the same name are refused; another name holds them
    let other = score(&data, &run_dir, &["--checkpoint", "4"]).expect_code(2);
    assert!(other.stderr.contains("another model"), "{}", other.stderr);
    score(&data, &run_dir, &["--checkpoint", "4", "--name", "step4"]).expect_code(0);

    // the top half by score, from the sidecar named explicitly (there are two now)
    let out = tmp.path().join("top");
    let out_s = out.to_str().unwrap();
    let top = run(&[
        "--json",
        "-q",
        "shard",
        "filter",
        &data,
        "--out",
        out_s,
        "--clip-score-top",
        "0.5",
        "--scores",
        "clip",
    ])
    .expect_code(0)
    .json();
    let threshold = top["clip_score_threshold"].as_f64().unwrap() as f32;
    let want: BTreeSet<String> = scores
        .iter()
        .filter(|(_, s)| **s >= threshold)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        want.len() * 2 >= scores.len() && want.len() < scores.len(),
        "{top}"
    );
    let filtered = read_dataset(out_s);
    assert_eq!(
        filtered.accepted.keys().cloned().collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(filtered.rejected.len() + want.len(), source.accepted.len());
    assert!(filtered.rejected.values().all(|r| r == "low_clip_score"));
    assert_eq!(top["low_clip_score"], filtered.rejected.len(), "{top}");
    run(&["shard", "verify", out_s]).expect_code(0);

    // the same threshold as --min-clip-score keeps the same rows
    let out2 = tmp.path().join("min");
    // (`=`: the threshold may be negative)
    let min = format!("--min-clip-score={threshold}");
    run(&[
        "-q",
        "shard",
        "filter",
        &data,
        "--out",
        out2.to_str().unwrap(),
        &min,
        "--scores",
        "clip",
    ])
    .expect_code(0);
    let by_min = read_dataset(out2.to_str().unwrap());
    assert_eq!(
        by_min.accepted.keys().cloned().collect::<BTreeSet<_>>(),
        want
    );

    // stats shows both distributions
    let report = tmp.path().join("report");
    run(&["-q", "stats", &data, "--out", report.to_str().unwrap()]).expect_code(0);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let names: Vec<&str> = json["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clip", "step4"]);
    assert_eq!(json["scores"][0]["distribution"]["count"], scores.len());
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## CLIP scores"), "{md}");
    // the sidecars are not orphans to `shard verify`
    run(&["shard", "verify", &data]).expect_code(0);

    // with --embeddings the sidecar also holds each row's unit-norm embeddings, which DuckDB
    // reads; the same name without the flag is refused, and `shard verify` still passes
    let emb = score(&data, &run_dir, &["--name", "emb", "--embeddings"])
        .expect_code(0)
        .json();
    assert_eq!(emb["embedding_dim"], 64, "{emb}");
    let norms = duckdb_rows(&format!(
        "SELECT min(list_dot_product(image_embedding::FLOAT[], image_embedding::FLOAT[])), \
         max(abs(list_dot_product(image_embedding::FLOAT[], text_embedding::FLOAT[]) - clip_score)) \
         FROM '{data}/scores/emb/*.parquet'"
    ));
    assert!((norms[0][0] - 1.0).abs() < 1e-4, "{norms:?}");
    assert!(norms[0][1] < 1e-4, "{norms:?}");
    let refused = score(&data, &run_dir, &["--name", "emb"]).expect_code(2);
    assert!(
        refused.stderr.contains("--embeddings"),
        "{}",
        refused.stderr
    );
    run(&["shard", "verify", &data]).expect_code(0);

    // a unit whose shard cannot be read is not scored (no file: a re-run tries it again), the
    // others are, and the command fails naming it
    let lost = &source.dataset.commits()[2];
    std::fs::remove_file(Path::new(&data).join(format!("scores/clip/{}.parquet", lost.unit.id)))
        .unwrap();
    std::fs::remove_file(Path::new(&data).join(&lost.shards[0].path)).unwrap();
    let failed = score(&data, &run_dir, &[]).expect_code(1);
    assert!(
        failed.stderr.contains("could not be scored"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains(&lost.unit.id), "{}", failed.stderr);
    assert!(
        !Path::new(&data)
            .join(format!("scores/clip/{}.parquet", lost.unit.id))
            .exists()
    );
}

#[test]
fn score_requests_that_cannot_work_exit_2_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("out");
    let out_s = out.to_str().unwrap();
    // no scores yet
    let none = run(&[
        "shard",
        "filter",
        &data,
        "--out",
        out_s,
        "--min-clip-score",
        "0.2",
    ]);
    let none = none.expect_code(2);
    assert!(none.stderr.contains("flipstream score"), "{}", none.stderr);
    assert!(!out.exists(), "nothing is written");
    for (args, says) in [
        (vec!["--clip-score-top", "1.5"], "fraction in (0, 1]"),
        (vec!["--clip-score-top", "0"], "fraction in (0, 1]"),
        (vec![], "nothing to filter by"),
    ] {
        let mut all = vec!["shard", "filter", data.as_str(), "--out", out_s];
        all.extend(args);
        let r = run(&all).expect_code(2);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    let no_run = tmp.path().join("nothing");
    let r = score(&data, no_run.to_str().unwrap(), &[]).expect_code(2);
    assert!(r.stderr.contains("no run there"), "{}", r.stderr);
    let r = score(&data, no_run.to_str().unwrap(), &["--name", "a/b"]).expect_code(2);
    assert!(r.stderr.contains("--name"), "{}", r.stderr);
}
