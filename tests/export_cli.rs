//! Export through the real binary: a run trained here is exported with `flipstream export
//! --format open_clip` and `--format hf`, then loaded by open_clip and transformers from PyPI
//! (tests/python/export_interop.py in scripts/modeltools-env.sh's venv), which must reproduce
//! flipstream's CLIP score of every row within 1e-4, agree with each other on every embedding
//! (cosine ≥ 0.9999) and on zero-shot predictions. Models the targets cannot express exactly
//! are refused with exit 2, every reason named, nothing written.

#![cfg(feature = "train")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::path::Path;

use support::train::{CONFIG, ONE_CPU_THREAD};
use support::{Run, run};

/// The micro model of the other tests, made exportable: a CLS token and `ln_pre`.
fn exportable_config() -> String {
    CONFIG.replace(
        "[model]\n",
        "[model]\nvision_pool = \"cls\"\nvision_ln_pre = true\n",
    )
}

/// 96 synthetic pairs stored as PNG at the model's 32 px (every library decodes the same pixels).
fn dataset(dir: &Path) -> String {
    let raw = dir.join("raw");
    let data = dir.join("data");
    let (raw_s, data_s) = (raw.to_str().unwrap(), data.to_str().unwrap());
    run(&[
        "-q",
        "synth",
        "--out",
        raw_s,
        "--count",
        "96",
        "--seed",
        "4",
        "--layout",
        "webdataset",
    ])
    .expect_code(0);
    run(&[
        "-q",
        "ingest",
        raw_s,
        "--out",
        data_s,
        "--size",
        "32",
        "--resize-mode",
        "center-crop",
        "--format",
        "png",
    ])
    .expect_code(0);
    data_s.to_string()
}

/// A run of `config` trained 8 steps on every row of `data` into `dir/name`.
fn train(dir: &Path, data: &str, name: &str, config: &str) -> String {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let run_dir = dir.join(name);
    let mut args = vec![
        "-q",
        "train",
        data,
        "--run",
        run_dir.to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
        "--all-data",
        "--eval-every",
        "0",
    ];
    args.extend_from_slice(&ONE_CPU_THREAD);
    run(&args).expect_code(0);
    run_dir.to_str().unwrap().to_string()
}

fn export(run_dir: &str, format: &str, out: &Path) -> Run {
    run(&[
        "--json",
        "export",
        "--run",
        run_dir,
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Entries of `dir` (names), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn open_clip_and_transformers_load_the_export_with_flipstreams_embeddings() {
    let python = std::env::var("FLIPSTREAM_MODEL_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FLIPSTREAM_MODEL_PYTHON is not set: this test loads the exports with open_clip and \
             transformers; run it through `make test` or `source scripts/modeltools-env.sh`"
        )
    });
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run_dir = train(tmp.path(), &data, "run", &exportable_config());
    let mut score = vec!["-q", "score", &data, "--run", &run_dir];
    score.extend_from_slice(&ONE_CPU_THREAD);
    run(&score).expect_code(0);

    let oc = tmp.path().join("export-open-clip");
    let summary = export(&run_dir, "open_clip", &oc).expect_code(0).json();
    assert_eq!(summary["format"], "open_clip", "{summary}");
    assert_eq!(summary["source"]["step"], 8, "{summary}");
    assert!(summary["swapped_token_ids"].is_null(), "{summary}");
    assert!(oc.join("open_clip_model.safetensors").is_file());
    let hf = tmp.path().join("export-hf");
    let summary = export(&run_dir, "hf", &hf).expect_code(0).json();
    // flipstream's trained tokenizers end captions with id 2, which transformers would pool by
    // its legacy argmax: the export moves it to the last id
    assert_eq!(summary["swapped_token_ids"][0], 2, "{summary}");
    assert_eq!(summary["token_ids"]["end"], summary["swapped_token_ids"][1]);
    assert_eq!(
        entries(&hf),
        [
            "config.json",
            "flipstream_export.json",
            "model.safetensors",
            "preprocessor_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(
        entries(tmp.path())
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "no staging folder is left behind"
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/export_interop.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--data", &data, "--scores", &format!("{data}/scores/clip")])
        .args([
            "--open-clip",
            oc.to_str().unwrap(),
            "--hf",
            hf.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["rows"].as_u64().unwrap() > 50, "{report}");
    assert!(
        report["open_clip_max_score_diff"].as_f64().unwrap() <= 1e-4,
        "{report}"
    );
    assert!(
        report["hf_max_score_diff"].as_f64().unwrap() <= 1e-4,
        "{report}"
    );
}

#[test]
fn models_the_targets_cannot_express_are_refused_with_every_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // the default micro model: average pooling without a CLS token, no ln_pre
    let run_dir = train(tmp.path(), &data, "avg", CONFIG);
    let out = tmp.path().join("out");
    let refused = export(&run_dir, "hf", &out).expect_code(2);
    assert!(
        refused.stderr.contains("vision_pool = \"avg\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("vision_ln_pre"),
        "{}",
        refused.stderr
    );
    let refused = export(&run_dir, "open_clip", &out).expect_code(2);
    assert!(refused.stderr.contains("vision_pool"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("vision_ln_pre"),
        "{}",
        refused.stderr
    );
    assert!(!out.exists());
    assert_eq!(
        entries(tmp.path())
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "no staging folder is left behind"
    );

    // an exportable run into a folder that already holds something: refused, left alone
    let good = train(tmp.path(), &data, "cls", &exportable_config());
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let refused = export(&good, "open_clip", &out).expect_code(2);
    assert!(
        refused.stderr.contains("not an empty folder"),
        "{}",
        refused.stderr
    );
    assert_eq!(entries(&out), ["notes.txt"]);
    // an empty folder is fine
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    export(&good, "open_clip", &out).expect_code(0);
    assert!(out.join("open_clip_config.json").is_file());

    let missing = tmp.path().join("no-run");
    export(missing.to_str().unwrap(), "hf", &tmp.path().join("x")).expect_code(2);
}
