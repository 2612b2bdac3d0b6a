//! Training fixtures shared by the CLI tests: a micro model config and reading the losses a run
//! logged.

use std::path::Path;

/// A micro model (32 px, ViT 64 × 2, text 64 × 1), global batch 16 over 4 lanes, mask 0.5.
pub(crate) const CONFIG: &str = r#"preset = "tiny"

[model]
image_size = 32
patch_size = 8
vision_width = 64
vision_depth = 2
vision_heads = 2
context_length = 24
text_width = 64
text_depth = 1
text_heads = 2
embed_dim = 64

[train]
batch_size = 16
base_lr = 0.016
warmup_steps = 2
total_steps = 8
mask_ratio = 0.5
seed = 5

[run]
lanes = 4
tokenizer_vocab_size = 400
shuffle_block = 64
"#;

/// The process flags of every test run: the CPU, one libtorch thread, one decode thread.
pub(crate) const ONE_CPU_THREAD: [&str; 6] =
    ["--device", "cpu", "--threads", "1", "--decode-threads", "1"];

/// `flipstream -q train DATA --run DIR/NAME --config DIR/NAME.toml --all-data --eval-every 0`
/// with `config` written to that file, the process flags of [`ONE_CPU_THREAD`] and `extra`: a
/// micro run trained on every row of `data`. The run directory (as a string), and what the
/// binary did (the caller checks the exit code).
pub(crate) fn train_micro(
    dir: &Path,
    data: &str,
    name: &str,
    config: &str,
    extra: &[&str],
) -> (String, super::Run) {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).expect("writing the run config");
    let run_dir = dir.join(name).to_string_lossy().into_owned();
    let config_s = config_path.to_string_lossy().into_owned();
    let mut args = vec![
        "-q",
        "train",
        data,
        "--run",
        &run_dir,
        "--config",
        &config_s,
        "--all-data",
        "--eval-every",
        "0",
    ];
    args.extend_from_slice(&ONE_CPU_THREAD);
    args.extend_from_slice(extra);
    let run = super::run(&args);
    (run_dir, run)
}

/// The losses of metrics.jsonl by step.
pub(crate) fn losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "step")
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect()
}

/// Panics unless `a` and `b` log the same steps with losses within 1e-4 (relative above 1).
pub(crate) fn assert_same_losses(a: &[(u64, f64)], b: &[(u64, f64)]) {
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(b) {
        assert_eq!(sa, sb);
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
            "step {sa}: {la} vs {lb}\n{a:?}\n{b:?}"
        );
    }
}
