#!/usr/bin/env bash
# The whole test suite; run through `make test`, which provides libtorch and FLIPSTREAM_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FLIPSTREAM_PYTHON:?run through make test (it provides the Python test tools)}"
export FLIPSTREAM_PYTHON

step() { printf '\n== %s\n' "$*" >&2; }

step "build (all crates, all targets)"
cargo build --workspace --all-targets --locked

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "data tools build without libtorch"
if cargo tree -p flipstream --no-default-features -e normal --prefix none | grep -E '^(tch|torch-sys) '; then
    echo "the data-only build pulls in libtorch" >&2
    exit 1
fi
# `cargo check` proves the data-only CLI compiles without libtorch at a fraction of a second build
# (different feature sets would rebuild tokio, arrow, parquet… and overwrite the test binary).
cargo check --bin flipstream --no-default-features --locked

step "python interop tests"
# test_interop_readers.py checks a dataset of exactly known composition written through the
# library (make_interop_dataset); test_ingest_interop.py makes its own with synth + ingest.
interop_dir="$(mktemp -d)"
trap 'rm -rf "$interop_dir"' EXIT
cargo run -q --locked -p flipstream-shard --example make_interop_dataset -- "$interop_dir/ds"
export FLIPSTREAM_INTEROP_DATASET="$interop_dir/ds"
export FLIPSTREAM_BIN="$PWD/target/debug/flipstream"
"$FLIPSTREAM_PYTHON" -m pytest -q tests/python

step "all tests passed"
