"""Shared pytest fixtures: the built `flipstream` binary and scratch folders.

The binary is `target/debug/flipstream` (build it with `cargo build --bin flipstream`, or run
through `make test`); set FLIPSTREAM_BIN to test another build.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def flipstream_bin() -> Path:
    """Path of the built flipstream binary."""
    path = Path(os.environ.get("FLIPSTREAM_BIN", REPO / "target" / "debug" / "flipstream"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `cargo build --bin flipstream` first (make test does)")
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A fresh scratch folder for one test."""
    return tmp_path


def run_synth(binary: Path, out: Path, *args: str) -> dict:
    """Runs `flipstream synth --out OUT ARGS --json --quiet` and returns the summary."""
    proc = subprocess.run(
        [str(binary), "synth", "--out", str(out), *args, "--json", "--quiet"],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def read_sidecar(out: Path) -> list[dict]:
    """The records of synth.jsonl."""
    with open(out / "synth.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
