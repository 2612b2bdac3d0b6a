#!/usr/bin/env bash
# CLIP-score filtering measured (docs/filtering.md):
#
#   scripts/bench-filtering.sh BINARY WORK_DIR
#
# 1. synthetic pairs with the web-like dirt preset plus semantic caption dirt that no rule filter
#    sees (20 % captions of another scene, 10 % boilerplate), ingested and split like the demo;
# 2. the demo's recipe trained on that noisy dataset, one run per seed (the "unfiltered" arm);
# 3. the seed-0 run scores every row (`flipstream score`): bootstrapping, the scorer has seen only
#    the noisy data it filters; precision/recall of the score against synth's ground truth;
# 4. `shard filter --clip-score-top KEEP` into a new dataset, split with the same settings, and the
#    same recipe and steps trained on it per seed (the "filtered" arm);
# 5. both arms evaluated on the noisy dataset's validation split (zero-shot on the labels, which
#    no caption dirt touches).
#
# Environment: FILTER_COUNT (10000 pairs), FILTER_STEPS (800), FILTER_KEEP (0.7), FILTER_SEEDS
# ("0 1 2"), FILTER_JOBS (2 trainings at a time, one thread each). Finished steps are kept, so an
# interrupted run continues. About 50 minutes on 2 CPU cores with the defaults.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: scripts/bench-filtering.sh BINARY WORK_DIR" >&2
    exit 2
fi
BIN=$(realpath "$1")
WORK=$2
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COUNT=${FILTER_COUNT:-10000}
STEPS=${FILTER_STEPS:-800}
KEEP=${FILTER_KEEP:-0.7}
SEEDS=${FILTER_SEEDS:-0 1 2}
JOBS=${FILTER_JOBS:-2}
# shellcheck source=scripts/pytools-env.sh
source "$HERE/pytools-env.sh"
mkdir -p "$WORK/eval"

# Prints a command (shell-quoted, on stderr: some outputs are redirected) and runs it.
run() {
    {
        printf '$'
        printf ' %q' "$@"
        printf '\n'
    } >&2
    "$@"
}

split() {
    run "$BIN" -q shard split "$1" --val-fraction 0.1 \
        --holdout-columns label_color,label_shape --holdout-fraction 0.1
}

# train DATASET RUN SEED: the demo recipe, no evaluation while training (done once at the end).
train() {
    if [ -f "$2/checkpoints/latest.json" ]; then
        echo "kept: $2"
        return
    fi
    rm -rf "$2"
    run "$BIN" -q train "$1" --run "$2" --config "$HERE/demo-train.toml" --steps "$STEPS" \
        --eval-every 0 --checkpoint-every "$STEPS" --device cpu --seed "$3" \
        --threads 1 --decode-threads 1 >"$2.log" 2>&1
}

# train_arm ARM DATASET: every seed, FILTER_JOBS at a time.
train_arm() {
    local pids=() seed
    for seed in $SEEDS; do
        train "$2" "$WORK/$1-seed$seed" "$seed" &
        pids+=($!)
        if [ "${#pids[@]}" -ge "$JOBS" ]; then
            wait "${pids[0]}"
            pids=("${pids[@]:1}")
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
}

if [ ! -f "$WORK/noisy/_flipstream/split.json" ]; then
    run "$BIN" -q synth --out "$WORK/raw" --count "$COUNT" --seed 0 --layout webdataset \
        --shard-size 1000 --object-sizes large=1 --force \
        --dirt default,caption_mismatched=0.2,caption_boilerplate=0.1
    rm -rf "$WORK/noisy"
    run "$BIN" -q ingest "$WORK/raw" --out "$WORK/noisy" --size 64 --resize-mode border
    split "$WORK/noisy"
fi
train_arm unfiltered "$WORK/noisy"

run "$BIN" score "$WORK/noisy" --run "$WORK/unfiltered-seed0" --device cpu
"$FLIPSTREAM_PYTHON" "$ROOT/bench/filtering_eval.py" scores "$WORK/raw" "$WORK/noisy" clip \
    "$WORK" | tee "$WORK/scores.md"

if [ ! -f "$WORK/filtered/_flipstream/split.json" ]; then
    rm -rf "$WORK/filtered"
    run "$BIN" shard filter "$WORK/noisy" --out "$WORK/filtered" --clip-score-top "$KEEP"
    split "$WORK/filtered"
fi
"$FLIPSTREAM_PYTHON" - "$WORK/noisy" "$WORK/filtered" <<'EOF'
import json, sys
h = [json.load(open(f"{d}/_flipstream/split.json"))["holdout"] for d in sys.argv[1:]]
same = all(h[0][k] == h[1][k] for k in ("columns", "combos"))
print("held-out combinations:", "the same in both datasets" if same else "DIFFERENT")
EOF
train_arm filtered "$WORK/filtered"

for arm in unfiltered filtered; do
    for seed in $SEEDS; do
        out="$WORK/eval/$arm-seed$seed.json"
        [ -f "$out" ] || run "$BIN" --json -q eval "$WORK/noisy" --run "$WORK/$arm-seed$seed" \
            --device cpu >"$out"
    done
done
"$FLIPSTREAM_PYTHON" "$ROOT/bench/filtering_eval.py" training "$WORK"/eval/unfiltered-seed*.json \
    "$WORK"/eval/filtered-seed*.json | tee "$WORK/training.md"
echo "tables: $WORK/scores.md, $WORK/training.md; plot: $WORK/filtering-scores.svg"
