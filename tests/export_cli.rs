//! Export through the real binary: a run trained here is exported with `flipstream export
//! --format open_clip` and `--format hf`, then loaded by open_clip and transformers from PyPI
//! (tests/python/export_interop.py in scripts/modeltools-env.sh's venv), which must reproduce
//! flipstream's embeddings of every image and caption (`score --embeddings`; cosine ≥ 0.9999,
//! elements within 1e-4), its CLIP scores and its zero-shot predictions. Models the targets cannot express exactly
//! are refused with exit 2, every reason named, nothing written. `train --init open_clip:DIR`
//! starts a run from an open_clip model made by open_clip itself, with open_clip's embeddings.

#![cfg(feature = "train")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::path::Path;

use support::train::{CONFIG, ONE_CPU_THREAD, train_micro};
use support::{Run, run, synth_and_ingest};

/// The micro model of the other tests, made exportable: a CLS token and `ln_pre`.
fn exportable_config() -> String {
    CONFIG.replace(
        "[model]\n",
        "[model]\nvision_pool = \"cls\"\nvision_ln_pre = true\n",
    )
}

/// 96 synthetic pairs stored as PNG at the model's 32 px (every library decodes the same pixels).
fn dataset(dir: &Path) -> String {
    synth_and_ingest(
        dir,
        &["--count", "96", "--seed", "4", "--layout", "webdataset"],
        &[
            "--size",
            "32",
            "--resize-mode",
            "center-crop",
            "--format",
            "png",
        ],
    )
}

/// A run of `config` trained on every row of `data` into `dir/name`.
fn train(dir: &Path, data: &str, name: &str, config: &str) -> String {
    let (run_dir, run) = train_micro(dir, data, name, config, &[]);
    run.expect_code(0);
    run_dir
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

/// Panics if an export left its hidden staging folder in `dir`.
fn assert_no_staging_folder(dir: &Path) {
    let hidden: Vec<String> = entries(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "an export left {hidden:?} behind");
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

/// The venv with open_clip and transformers.
fn model_python() -> String {
    std::env::var("FLIPSTREAM_MODEL_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FLIPSTREAM_MODEL_PYTHON is not set: this test loads models with open_clip and \
             transformers; run it through `make test` or `source scripts/modeltools-env.sh`"
        )
    })
}

/// Runs tests/python/`script` with `args` in the model venv; its JSON line from stdout.
fn python(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(model_python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// `flipstream score --embeddings` of `data` with `run_dir` into the sidecar `name`.
fn score(data: &str, run_dir: &str, name: &str) {
    let mut args = vec![
        "-q",
        "score",
        data,
        "--run",
        run_dir,
        "--name",
        name,
        "--embeddings",
    ];
    args.extend_from_slice(&ONE_CPU_THREAD);
    run(&args).expect_code(0);
}

#[test]
fn open_clip_and_transformers_load_the_export_with_flipstreams_embeddings() {
    model_python();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run_dir = train(tmp.path(), &data, "run", &exportable_config());
    score(&data, &run_dir, "clip");

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
    assert_no_staging_folder(tmp.path());

    let report = python(
        "export_interop.py",
        &[
            "--data",
            &data,
            "--scores",
            &format!("{data}/scores/clip"),
            "--open-clip",
            oc.to_str().unwrap(),
            "--hf",
            hf.to_str().unwrap(),
        ],
    );
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
fn train_init_starts_from_an_open_clip_model_with_its_embeddings() {
    model_python();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // the tokenizer folder the open_clip model will use: an export's
    let tokenizer_run = train(tmp.path(), &data, "tok", &exportable_config());
    let tokenizer_dir = tmp.path().join("tokenizer-export");
    export(&tokenizer_run, "open_clip", &tokenizer_dir).expect_code(0);
    // a model made and initialised by open_clip itself (other widths and depths, quick GELU)
    let oc = tmp.path().join("open-clip-model");
    let oc_s = oc.to_str().unwrap();
    let made = python(
        "make_open_clip_model.py",
        &[
            "--out",
            oc_s,
            "--tokenizer-from",
            tokenizer_dir.to_str().unwrap(),
            "--quick-gelu",
        ],
    );
    assert!(made["tensors"].as_u64().unwrap() > 50, "{made}");

    // one step at a negligible learning rate: the checkpoint holds the imported weights
    let still = CONFIG
        .replace("base_lr = 0.016", "base_lr = 1e-12")
        .replace("total_steps = 8", "total_steps = 1")
        .replace("warmup_steps = 2", "warmup_steps = 0");
    let init = format!("open_clip:{oc_s}");
    let train_init = |name: &str, init: &str| {
        let (run_dir, run) = train_micro(tmp.path(), &data, name, &still, &["--init", init]);
        (run, std::path::PathBuf::from(run_dir))
    };
    let (trained, run_dir) = train_init("init", &init);
    trained.expect_code(0);
    let stored = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(stored.contains("vision_width = 96"), "{stored}");
    assert!(stored.contains("activation = \"quick_gelu\""), "{stored}");
    assert!(stored.contains(&format!("init = \"{init}\"")), "{stored}");
    let run_s = run_dir.to_str().unwrap();
    score(&data, run_s, "init");
    let report = python(
        "export_interop.py",
        &[
            "--data",
            &data,
            "--scores",
            &format!("{data}/scores/init"),
            "--open-clip",
            oc_s,
        ],
    );
    assert!(
        report["open_clip_max_score_diff"].as_f64().unwrap() <= 1e-4,
        "{report}"
    );

    // the same folder as CAE v2's frozen teacher
    let (cae, trained) = train_micro(
        tmp.path(),
        &data,
        "cae",
        &still,
        &["--objective", "cae_v2", "--teacher", &init],
    );
    trained.expect_code(0);
    let cae = std::path::PathBuf::from(cae);
    let stored = std::fs::read_to_string(cae.join("config.toml")).unwrap();
    assert!(
        stored.contains(&format!("teacher = \"{init}\"")),
        "{stored}"
    );

    // what flipstream cannot express is refused, naming it
    let config_path = oc.join("open_clip_config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        original.replace(
            "\"patch_size\": 8",
            "\"patch_size\": 8, \"pool_type\": \"avg\"",
        ),
    )
    .unwrap();
    let (refused, refused_dir) = train_init("avg", &init);
    let refused = refused.expect_code(2);
    assert!(
        refused.stderr.contains("vision_cfg.pool_type"),
        "{}",
        refused.stderr
    );
    assert!(!refused_dir.join("config.toml").exists());
    std::fs::write(&config_path, original).unwrap();
    std::fs::remove_file(oc.join("tokenizer.json")).unwrap();
    let (refused, _) = train_init("no-tokenizer", &init);
    let refused = refused.expect_code(2);
    assert!(refused.stderr.contains("--tokenizer"), "{}", refused.stderr);
    let (refused, _) = train_init("bad-init", "timm:whatever");
    refused.expect_code(2);
    let missing = format!("open_clip:{}", tmp.path().join("nothing").display());
    let (refused, _) = train_init("missing", &missing);
    let refused = refused.expect_code(2);
    assert!(
        refused.stderr.contains("open_clip_config.json"),
        "{}",
        refused.stderr
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
    assert_no_staging_folder(tmp.path());

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
