#!/usr/bin/env bash
# The learning-fidelity benchmark end to end: synthetic pairs → ingest → split with held-out
# combinations → `flipstream bench fidelity` (CLIP vs FLIP arms × seeds) → docs/fidelity.md.
#
#   scripts/bench-fidelity.sh BINARY WORK_DIR [extra `bench fidelity` flags…]
#
# Environment: FIDELITY_COUNT (default 20000) pairs, FIDELITY_STEPS (default 400) masked steps of
# the equal-epoch arms at batch FIDELITY_BATCH (default 64), FIDELITY_SEEDS (default 0,1,2),
# FIDELITY_SUITE (flip, the default, or objectives) and FIDELITY_DOC (the page to write, default
# docs/fidelity.md).
# The data and the recipe are the demo's (scripts/demo-train.toml). Tens of minutes on 2 CPU
# cores; WORK_DIR keeps finished arms, so an interrupted run continues where it stopped.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: scripts/bench-fidelity.sh BINARY WORK_DIR [bench fidelity flags…]" >&2
    exit 2
fi
BIN=$1
WORK=$2
shift 2
HERE="$(cd "$(dirname "$0")" && pwd)"
COUNT=${FIDELITY_COUNT:-20000}
run() {
    printf '$'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}
mkdir -p "$WORK"
if [ ! -f "$WORK/dataset/_flipstream/split.json" ]; then
    run "$BIN" synth --out "$WORK/raw" --count "$COUNT" --seed 100 --layout webdataset \
        --shard-size 1000 --dirt default --object-sizes large=1 --force
    rm -rf "$WORK/dataset"
    run "$BIN" ingest "$WORK/raw" --out "$WORK/dataset" --size 64 --resize-mode border
    run "$BIN" shard split "$WORK/dataset" --val-fraction 0.1 \
        --holdout-columns label_color,label_shape --holdout-fraction 0.1
fi
run "$BIN" bench fidelity "$WORK/dataset" --out "$WORK/runs" --config "$HERE/demo-train.toml" \
    --batch "${FIDELITY_BATCH:-64}" --steps "${FIDELITY_STEPS:-400}" --tune-steps 40 \
    --seeds "${FIDELITY_SEEDS:-0,1,2}" --suite "${FIDELITY_SUITE:-flip}" \
    --doc "${FIDELITY_DOC:-$(cd "$HERE/.." && pwd)/docs/fidelity.md}" "$@"
