//! The demo's small variant, end to end through `scripts/demo.sh` with the test binary: synth →
//! ingest → stats → split with held-out combinations → train with the demo recipe → eval → score
//! and the report with the score distribution. The model must score above chance by more than
//! three binomial standard deviations on shape, not only on colour, and the compositional row
//! must exist (README's promise, at a smaller size).

#![cfg(feature = "train")]

use std::path::Path;
use std::process::Command;

/// Chance plus three standard deviations of a binomial proportion over `n` samples.
fn bound(chance: f64, n: u64) -> f64 {
    chance + 3.0 * (chance * (1.0 - chance) / n as f64).sqrt()
}

#[test]
fn the_demo_learns_shape_not_only_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .arg(env!("CARGO_BIN_EXE_flipstream"))
        .arg(&out)
        // The demo's data (10,000 pairs), 400 of its 800 steps: shape 23.3 % against a bound of 13.3 %
        // (16.6 % at 300 steps; 4,000 pairs over-fit before shape shows).
        .env("DEMO_COUNT", "10000")
        .env("DEMO_TRAIN_STEPS", "400")
        .env("DEMO_EVAL_EVERY", "400")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("compositional: label combinations held out of training"),
        "{stdout}"
    );
    // the last step scores every row and the report shows the distribution
    assert!(stdout.contains("scores    clip: clip_score"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(report.contains("## CLIP scores"), "{report}");

    let metrics = std::fs::read_to_string(out.join("run/metrics.jsonl")).unwrap();
    let eval: serde_json::Value = metrics
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "eval")
        .expect("an evaluation record");
    let seen = &eval["zero_shot"];
    let n = seen["samples"].as_u64().unwrap();
    assert!(n >= 200, "{eval}");
    for column in seen["columns"].as_array().unwrap() {
        let (acc, chance) = (
            column["accuracy"].as_f64().unwrap(),
            column["chance"].as_f64().unwrap(),
        );
        assert!(
            acc > bound(chance, n),
            "{}: {acc:.3} is not above chance {chance:.3} + 3 sd over {n} samples ({:.3})",
            column["column"],
            bound(chance, n)
        );
    }
    let held_out = &eval["compositional"];
    assert!(held_out["samples"].as_u64().unwrap() > 0, "{eval}");
}
