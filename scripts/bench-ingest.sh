#!/usr/bin/env bash
# Ingest benchmark: flipstream against its floor and against img2dataset 1.47 (PyPI) on the same
# photo corpus (bench/make_photo_corpus.py, 2,000 images by default) served over HTTP on
# 127.0.0.1, with equivalent settings (shortest side 256 if bigger, JPEG q90, Parquet out).
#
#   scripts/bench-ingest.sh [OUT]        OUT defaults to bench-out/ingest
#   env: REPEATS (3), IMAGES (2000), PORT (8765)
#
# Python tools live in a cached venv ($FLIPSTREAM_CACHE/bench-ingest-<hash of the requirements>).
# The release binary is built first (make build). Results: OUT/result.json and a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out/ingest}
REPEATS=${REPEATS:-3}
IMAGES=${IMAGES:-2000}
PORT=${PORT:-8765}
: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"

req=bench/requirements-ingest.txt
venv="$FLIPSTREAM_CACHE/bench-ingest-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
    echo "bench-ingest: installing img2dataset and the corpus tools into $venv (once)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$venv/.complete"
fi
PY="$venv/bin/python"

make build >&2
mkdir -p "$OUT"
if [ ! -f "$OUT/corpus/.complete-$IMAGES-$PORT" ]; then
    echo "== corpus: $IMAGES photos → $OUT/corpus" >&2
    rm -rf "$OUT/corpus"
    "$PY" bench/make_photo_corpus.py "$OUT/corpus" "$PORT" "$IMAGES" >&2
    touch "$OUT/corpus/.complete-$IMAGES-$PORT"
fi
"$PY" bench/ingest_compare.py target/release/flipstream "$OUT/corpus" "$OUT/urls.parquet" "$PORT" "$OUT/runs" "$REPEATS"
