"""A dataset written by `flipstream ingest` (from `flipstream synth` Parquet with planted dirt),
read back by independent readers: pyarrow, DuckDB and Pillow see every committed row, the
documented columns, the passthrough label columns, decodable images of the stated size, and
rejection files whose reasons match the dirt the synth sidecar planted.
"""

import collections
import json
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from PIL import Image
import io

EXPECTED = {
    "truncated": "decode_error",
    "corrupt": "decode_error",
    "zero_byte": "empty_file",
    "not_image": "not_an_image",
    "tiny": "too_small",
    "duplicate_exact": "duplicate_exact",
    "caption_empty": "caption_missing",
    "caption_one_word": "caption_too_short",
    "decompression_bomb": "too_many_pixels",
}


def run(binary: Path, *args: str) -> str:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ingested_dataset_reads_in_pyarrow_duckdb_and_pillow(flipstream_bin, out_dir):
    raw, ds = out_dir / "raw", out_dir / "ds"
    dirt = ",".join(f"{k}=0.03" for k in EXPECTED)
    run(flipstream_bin, "-q", "synth", "--out", str(raw), "--count", "200", "--layout", "parquet",
        "--shard-size", "100", "--dirt", dirt, "--seed", "3")
    summary = json.loads(run(flipstream_bin, "--json", "-q", "ingest", str(raw), "--out", str(ds),
                             "--min-side", "48", "--size", "128", "--unit-rows", "100"))
    assert summary["counts"]["read"] == 200
    truth = {r["key"]: r for r in map(json.loads, (raw / "synth.jsonl").read_text().splitlines())}

    commits = [json.loads(p.read_text()) for p in sorted((ds / "_flipstream" / "commits").glob("*.json"))]
    assert len(commits) == summary["units_committed"] == 2
    shard_paths = [ds / s["path"] for c in commits for s in c["shards"]]
    rows = [r for p in shard_paths for r in pq.read_table(p).to_pylist()]
    assert len(rows) == summary["counts"]["accepted"] == sum(c["counts"]["accepted"] for c in commits)
    for row in rows:
        t = truth[row["key"]]
        assert t["dirt"] not in EXPECTED, (row["key"], t["dirt"])
        # labels pass through from the input columns
        assert row["label_shape"] == t["label_shape"] and row["label_color"] == t["label_color"]
        img = Image.open(io.BytesIO(row["image"]))
        img.load()
        assert img.size == (row["width"], row["height"])
        assert min(img.size) <= 128
        assert row["image_bytes"] == len(row["image"])

    rejected = {}
    for c in commits:
        table = pq.read_table(ds / c["rejections"]["path"])
        assert table.num_rows == c["counts"]["rejected"]
        for r in table.to_pylist():
            rejected[r["key"]] = str(r["reason"])
        reasons = collections.Counter(str(v) for v in table.column("reason").to_pylist())
        assert dict(reasons) == c["counts"]["rejected_by_reason"]
    for key, t in truth.items():
        if t["dirt"] in EXPECTED:
            assert rejected.get(key) == EXPECTED[t["dirt"]], (key, t["dirt"], rejected.get(key))

    con = duckdb.connect()
    glob = str(ds / "shards" / "*.parquet")
    count, distinct, shapes = con.execute(
        f"SELECT count(*), count(DISTINCT key), count(DISTINCT label_shape) FROM read_parquet('{glob}')"
    ).fetchone()
    assert count == distinct == len(rows)
    assert shapes > 1
