#!/usr/bin/env bash
# Loader benchmark: flipstream's streaming loader versus WebDataset + PIL + torchvision in a torch
# DataLoader, on the same 256-px JPEGs, doing the same augmentation (RandomResizedCrop 224,
# scale (0.5, 1), horizontal flip, uint8 batches of 64). Runs alternate between the two pipelines,
# with 1 and with 2 workers/threads, REPEATS times; the report quotes medians.
#
#   scripts/bench-loader.sh [OUT]        OUT defaults to bench-out/loader
#   env: REPEATS (5), IMAGES (2000), EPOCHS (3 per measurement)
#
# Python tools live in a cached venv ($FLIPSTREAM_CACHE/bench-loader-<hash of the requirements>);
# torch 2.11.0 is taken from scripts/libtorch-env.sh's cached venv when present instead of being
# downloaded a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out/loader}
REPEATS=${REPEATS:-5}
IMAGES=${IMAGES:-2000}
EPOCHS=${EPOCHS:-3}
: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"

req=bench/requirements-loader.txt
venv="$FLIPSTREAM_CACHE/bench-loader-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
    echo "bench-loader: installing the WebDataset pipeline into $venv (once)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    torch_venv="$FLIPSTREAM_CACHE/torch-2.11.0"
    if [ -x "$torch_venv/bin/python" ]; then
        purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
        "$torch_venv/bin/python" -c "$purelib" >"$("$venv/bin/python" -c "$purelib")/flipstream-torch.pth"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$venv/.complete"
fi
PY="$venv/bin/python"

mkdir -p "$OUT"
if [ ! -f "$OUT/wds/.complete" ]; then
    echo "== corpus: $IMAGES images → $OUT/wds" >&2
    rm -rf "$OUT/wds" "$OUT/ds"
    "$PY" bench/loader_webdataset.py make "$OUT/wds" --images "$IMAGES"
    touch "$OUT/wds/.complete"
fi

echo "== build (release)" >&2
make build >&2
BIN=target/release/flipstream

results="$OUT/results.jsonl"
: >"$results"
for r in $(seq "$REPEATS"); do
    for w in 1 2; do
        echo "== run $r/$REPEATS, $w worker(s)" >&2
        "$BIN" --quiet --json bench loader --tars "$OUT/wds" --dataset "$OUT/ds" --threads "$w" --epochs "$EPOCHS" >>"$results"
        "$PY" bench/loader_webdataset.py run "$OUT/wds" --workers "$w" --epochs "$EPOCHS" >>"$results"
    done
done
{
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo
    "$PY" bench/loader_webdataset.py report "$results"
} | tee "$OUT/summary.md"
