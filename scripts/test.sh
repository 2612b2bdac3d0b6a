#!/usr/bin/env bash
# The whole test suite; run through `make test`, which provides libtorch, FLIPSTREAM_PYTHON (the
# Python test tools) and FLIPSTREAM_MODEL_PYTHON (open_clip and transformers, for the export test).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FLIPSTREAM_PYTHON:?run through make test (it provides the Python test tools)}"
: "${FLIPSTREAM_MODEL_PYTHON:?run through make test (it provides open_clip and transformers)}"
export FLIPSTREAM_PYTHON FLIPSTREAM_MODEL_PYTHON

step() { printf '\n== %s\n' "$*" >&2; }

step "build (all crates, all targets)"
cargo build --workspace --all-targets --locked

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "data tools: no libtorch in their dependency tree"
if cargo tree -p flipstream --no-default-features -e normal --prefix none | grep -E '^(tch|torch-sys) '; then
    echo "the data-only build pulls in libtorch" >&2
    exit 1
fi
# That it also compiles is checked by `make lint` (clippy on the data-only CLI): a second feature set
# would re-check every dependency, minutes of CI for what the dependency tree above already proves.

step "python interop tests"
# test_interop_readers.py checks a dataset of exactly known composition written through the
# library (make_interop_dataset); test_ingest_interop.py makes its own with synth + ingest.
interop_dir="$(mktemp -d)"
trap 'rm -rf "$interop_dir"' EXIT
# The example as built by the workspace build above: `cargo run -p flipstream-testkit` would resolve
# features for that one package and compile it again.
target/debug/examples/make_interop_dataset "$interop_dir/ds"
export FLIPSTREAM_INTEROP_DATASET="$interop_dir/ds"
export FLIPSTREAM_BIN="$PWD/target/debug/flipstream"
"$FLIPSTREAM_PYTHON" -m pytest -q tests/python

step "all tests passed"
