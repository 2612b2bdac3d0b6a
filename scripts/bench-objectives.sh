#!/usr/bin/env bash
# The objectives comparison (CLIP, FLIP 50 %, MAE+CLIP one-pass and two-view, all linear-probed)
# at two data sizes, as Weers et al. compare MAE+CLIP at 11 M and 1.4 B pairs:
#
#   scripts/bench-objectives.sh BINARY WORK_DIR [extra `bench fidelity` flags…]
#
# Runs scripts/bench-fidelity.sh --suite objectives on 20,000 pairs (WORK_DIR/20k; a WORK_DIR/20k
# left by scripts/bench-fidelity.sh shares its CLIP and FLIP 50 % runs), every arm, and on 2,000
# pairs (WORK_DIR/2k) the arms of Weers et al.'s data-size question (CLIP, FLIP 50 %, MAE+CLIP),
# and writes docs/objectives-20k.md and docs/objectives-2k.md with their plots. About two hours
# on 2 CPU cores; finished arms are kept, so an interrupted run continues.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: scripts/bench-objectives.sh BINARY WORK_DIR [bench fidelity flags…]" >&2
    exit 2
fi
BIN=$1
WORK=$2
shift 2
HERE="$(cd "$(dirname "$0")" && pwd)"
DOCS="$(cd "$HERE/.." && pwd)/docs"
FIDELITY_COUNT=20000 FIDELITY_SUITE=objectives FIDELITY_DOC="$DOCS/objectives-20k.md" \
    "$HERE/bench-fidelity.sh" "$BIN" "$WORK/20k" "$@"
FIDELITY_COUNT=2000 FIDELITY_SUITE=objectives FIDELITY_DOC="$DOCS/objectives-2k.md" \
    "$HERE/bench-fidelity.sh" "$BIN" "$WORK/2k" --arms clip,flip50,mae_clip50,mae_clip50-full "$@"
