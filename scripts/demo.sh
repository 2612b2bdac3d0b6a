#!/usr/bin/env bash
# The flipstream demo, end to end on generated data:  scripts/demo.sh BINARY OUT_DIR
#
# Runs in steps; every command is printed before it runs (prefixed with `$`), so it can be copied.
# Step 1 makes synthetic web image-text pairs with planted dirt. Later steps (ingest, stats,
# train, eval) are added as those commands land.
#
# Environment: DEMO_COUNT (default 2000) pairs, DEMO_SEED (default 0).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: scripts/demo.sh BINARY OUT_DIR" >&2
    exit 2
fi
BIN=$1
OUT=$2
COUNT=${DEMO_COUNT:-2000}
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

# Step 1: synthetic web pairs in WebDataset shards, with the web-like dirt preset.
step_synth() {
    step "1. synthetic web image-text pairs → $OUT/raw"
    run "$BIN" synth --out "$OUT/raw" --count "$COUNT" --seed "$SEED" \
        --layout webdataset --shard-size 500 --dirt default --force
    run ls -l "$OUT/raw"
    echo "first records of the ground truth (synth.jsonl), cut to 240 characters:"
    head -n 3 "$OUT/raw/synth.jsonl" | cut -c1-240
}

main() {
    mkdir -p "$OUT"
    step_synth
    step "done: outputs are under $OUT"
}

main
