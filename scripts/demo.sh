#!/usr/bin/env bash
# The flipstream demo, end to end on generated data:  scripts/demo.sh BINARY OUT_DIR
#
# Runs in steps; every command is printed before it runs (prefixed with `$`), so it can be copied.
# synth (web-like pairs with planted dirt) → ingest → stats report → split (with colour × shape
# combinations held out) → train a tiny FLIP model on the CPU (scripts/demo-train.toml) →
# zero-shot (seen and held-out combinations) and retrieval evaluation → CLIP score of every row
# with the trained model (a sidecar beside the shards) and the report again, now with the score
# distribution.
#
# Environment: DEMO_COUNT (default 10000) pairs, DEMO_SEED (default 0), DEMO_TRAIN_STEPS
# (default 800), DEMO_EVAL_EVERY (default 400), DEMO_DEVICE (default cpu).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: scripts/demo.sh BINARY OUT_DIR" >&2
    exit 2
fi
BIN=$1
OUT=$2
COUNT=${DEMO_COUNT:-10000}
HERE="$(cd "$(dirname "$0")" && pwd)"
SEED=${DEMO_SEED:-0}
if [ ! -x "$BIN" ]; then
    echo "demo: $BIN is not an executable (build it with: cargo build --release --bin flipstream)" >&2
    exit 2
fi

# Prints a command (shell-quoted) and runs it.
run() {
    printf '$'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}

step() {
    printf '\n== %s\n' "$*"
}

# Step 1: synthetic web pairs in WebDataset shards, with the web-like dirt preset, noisy captions
# and distractor objects; the main objects are large (58–76 % of the shortest side), so that at the
# tiny model's 64 px their outline spans several patches.
step_synth() {
    step "1. synthetic web image-text pairs → $OUT/raw"
    run "$BIN" synth --out "$OUT/raw" --count "$COUNT" --seed "$SEED" \
        --layout webdataset --shard-size 1000 --dirt default --object-sizes large=1 --force
    run ls -l "$OUT/raw"
    echo "first records of the ground truth (synth.jsonl), cut to 240 characters:"
    head -n 3 "$OUT/raw/synth.jsonl" | cut -c1-240
}

# Step 2: ingest the raw pairs into a committed dataset: filters (DataComp basic), dedup, resize
# to fit 64 × 64 with a border (letterbox: a centre crop would cut off objects near the ends of
# wide or tall images while their captions still name them), JPEG re-encode.
step_ingest() {
    step "2. ingest $OUT/raw → $OUT/dataset"
    rm -rf "$OUT/dataset"
    run "$BIN" ingest "$OUT/raw" --out "$OUT/dataset" --size 64 --resize-mode border
    echo "rejections by reason are in $OUT/dataset/rejections/ (Parquet: key, source, url, reason, detail)"
}

# Step 3: the statistics report (JSON, Markdown, self-contained HTML with charts).
step_stats() {
    step "3. statistics report → $OUT/report"
    run "$BIN" stats "$OUT/dataset" --out "$OUT/report" --sample-images 48
    run "$BIN" shard verify "$OUT/dataset"
}

# Step 4: a deterministic train/validation split view, by key hash; 10 % of the colour × shape
# combinations are held out of training entirely (all their rows go to validation), for the
# compositional zero-shot row of the evaluation.
step_split() {
    step "4. train/validation split (10 % validation, 10 % of colour × shape combinations held out)"
    run "$BIN" shard split "$OUT/dataset" --val-fraction 0.1 \
        --holdout-columns label_color,label_shape --holdout-fraction 0.1
}

# Train: the tiny preset with the demo recipe (scripts/demo-train.toml: conv stem, batch 128, mask
# 0.5) on the train side of $OUT/dataset's split view, a few minutes on the CPU, evaluating on the
# validation side every DEMO_EVAL_EVERY steps. DEMO_TRAIN_STEPS (default 800).
step_train() {
    step "5. train: tiny FLIP model on $OUT/dataset → $OUT/run"
    rm -rf "$OUT/run"
    run "$BIN" train "$OUT/dataset" --run "$OUT/run" --config "$HERE/demo-train.toml" \
        --steps "${DEMO_TRAIN_STEPS:-800}" --eval-every "${DEMO_EVAL_EVERY:-400}" \
        --checkpoint-every 400 --device "${DEMO_DEVICE:-cpu}" --seed "$SEED"
    run ls "$OUT/run" "$OUT/run/checkpoints"
    echo "last step record of metrics.jsonl:"
    grep '"kind":"step"' "$OUT/run/metrics.jsonl" | tail -n 1 | cut -c1-400
}

# Eval: zero-shot colour × shape and retrieval of the final checkpoint on the validation split.
step_eval() {
    step "6. eval: zero-shot colour × shape and retrieval on the validation split"
    run "$BIN" eval --run "$OUT/run" --device "${DEMO_DEVICE:-cpu}"
}

# Score: the trained model's image-caption similarity for every row, into $OUT/dataset/scores/clip
# (what `shard filter --clip-score-top` filters on; docs/filtering.md), then the statistics report
# again, which now has a "CLIP scores" section.
step_score() {
    step "7. score: CLIP score of every row with the trained model → $OUT/dataset/scores/clip"
    run "$BIN" score "$OUT/dataset" --run "$OUT/run" --device "${DEMO_DEVICE:-cpu}"
    run "$BIN" stats "$OUT/dataset" --out "$OUT/report" --sample-images 48
}

main() {
    mkdir -p "$OUT"
    step_synth
    step_ingest
    step_stats
    step_split
    step_train
    step_eval
    step_score
    step "done: outputs are under $OUT"
    cat <<EOF
  dataset      $OUT/dataset      (flipstream shard ls $OUT/dataset)
  report       $OUT/report/report.html (open in a browser), report.md, report.json
  scores       $OUT/dataset/scores/clip/ (key, clip_score; flipstream shard filter --clip-score-top)
  run          $OUT/run: config.toml, tokenizer.json, metrics.jsonl
  checkpoint   $OUT/run/checkpoints/ (latest.json names the last one)
EOF
}

main
