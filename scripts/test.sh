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
cargo build --bin flipstream --no-default-features --locked --target-dir target/data-only

step "python interop tests"
"$FLIPSTREAM_PYTHON" -m pytest -q tests/python

step "all tests passed"
