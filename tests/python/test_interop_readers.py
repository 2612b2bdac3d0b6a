"""Independent readers check a dataset written by flipstream: pyarrow and DuckDB read every shard
and rejection file without flipstream code, and what they find (row counts, column names and types,
values, images that decode with Pillow) must match `flipstream shard ls --json` and the commit
records.

The dataset comes from `FLIPSTREAM_INTEROP_DATASET`, which `scripts/test.sh` (run by `make test`)
writes with `cargo run -p flipstream-testkit --example make_interop_dataset -- DIR`. The binary is
`FLIPSTREAM_BIN`, or `target/debug/flipstream` of this checkout.
"""

import collections
import io
import json
import os
import pathlib
import subprocess

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]

SHARD_TYPES = {
    "key": pa.string(),
    "image": pa.binary(),
    "image_format": pa.dictionary(pa.int32(), pa.string()),
    "image_bytes": pa.uint32(),
    "width": pa.uint32(),
    "height": pa.uint32(),
    "orig_width": pa.uint32(),
    "orig_height": pa.uint32(),
    "caption": pa.string(),
    "url": pa.string(),
    "source": pa.dictionary(pa.int32(), pa.string()),
    "content_hash": pa.binary(32),
    "phash": pa.uint64(),
    # passthrough columns of the interop dataset
    "similarity": pa.float32(),
    "label_shape": pa.string(),
}
REJECTION_TYPES = {
    "key": pa.string(),
    "source": pa.dictionary(pa.int32(), pa.string()),
    "url": pa.string(),
    "reason": pa.dictionary(pa.int32(), pa.string()),
    "detail": pa.string(),
}


@pytest.fixture(scope="module")
def dataset():
    path = os.environ.get("FLIPSTREAM_INTEROP_DATASET")
    if not path:
        pytest.fail(
            "FLIPSTREAM_INTEROP_DATASET is not set: run the tests with `make test` (scripts/test.sh "
            "writes the dataset with `cargo run -p flipstream-testkit --example make_interop_dataset -- DIR` "
            "and exports its folder)"
        )
    root = pathlib.Path(path)
    if not (root / "_flipstream" / "manifest.json").is_file():
        pytest.fail(f"{root} holds no flipstream dataset (no _flipstream/manifest.json)")
    return root


@pytest.fixture(scope="module")
def listing(dataset):
    binary = pathlib.Path(os.environ.get("FLIPSTREAM_BIN", REPO / "target" / "debug" / "flipstream"))
    if not binary.is_file():
        pytest.fail(f"no flipstream binary at {binary}: build it (make test does) or set FLIPSTREAM_BIN")
    out = subprocess.run([str(binary), "shard", "ls", str(dataset), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def commits(dataset):
    records = {}
    for p in sorted((dataset / "_flipstream" / "commits").glob("*.json")):
        r = json.loads(p.read_text())
        records[r["unit"]["id"]] = r
    return records


def test_listing_matches_the_commit_records_and_the_files(dataset, listing, commits):
    assert [u["unit"] for u in listing["units"]] == sorted(commits)
    assert listing["totals"]["units"] == len(commits) == 3
    for unit in listing["units"]:
        record = commits[unit["unit"]]
        assert [s["path"] for s in unit["shards"]] == [s["path"] for s in record["shards"]]
        for s, r in zip(unit["shards"], record["shards"]):
            assert s["rows"] == r["rows"]
            assert s["bytes"] == r["bytes"] == (dataset / s["path"]).stat().st_size
            assert s["row_groups"] == len(r["row_groups"])
        assert unit["accepted"] == record["counts"]["accepted"] == sum(s["rows"] for s in unit["shards"])
        assert unit["rejected"] == record["counts"]["rejected"] == unit["rejections"]["rows"]


def test_pyarrow_reads_every_shard_with_the_documented_columns(dataset, listing, commits):
    for unit in listing["units"]:
        record = commits[unit["unit"]]
        for s, r in zip(unit["shards"], record["shards"]):
            path = dataset / s["path"]
            table = pq.read_table(path)
            assert table.num_rows == s["rows"]
            assert table.column_names == list(SHARD_TYPES)
            for name, expected in SHARD_TYPES.items():
                assert table.schema.field(name).type == expected, (s["path"], name, table.schema.field(name).type)
            meta = pq.ParquetFile(path).metadata
            assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == r["row_groups"]
            kv = {k.decode(): v.decode() for k, v in meta.metadata.items()}
            assert kv["flipstream.schema_version"] == "1"
            assert kv["flipstream.kind"] == "shard"
            assert kv["flipstream.unit"] == unit["unit"]
            assert sum(table.column("image_bytes").to_pylist()) == r["image_bytes"]


def test_values_are_consistent_and_images_decode(dataset, listing):
    seen = 0
    for unit in listing["units"]:
        for s in unit["shards"]:
            rows = pq.read_table(dataset / s["path"]).to_pylist()
            for row in rows:
                assert row["key"].startswith(unit["unit"] + "/")
                assert row["image_bytes"] == len(row["image"])
                assert len(row["content_hash"]) == 32
                img = Image.open(io.BytesIO(row["image"]))
                img.load()
                assert img.format == "JPEG" and row["image_format"] == "jpeg"
                assert img.size == (row["width"], row["height"])
                assert row["label_shape"] in row["caption"]
                assert 0.2 <= row["similarity"] < 0.45
                assert row["orig_width"] >= 300 and row["orig_height"] >= 300
            seen += len(rows)
    assert seen == listing["totals"]["rows"] == 120
    keys = [r["key"] for u in listing["units"] for s in u["shards"] for r in pq.read_table(dataset / s["path"], columns=["key"]).to_pylist()]
    assert len(set(keys)) == len(keys), "keys are unique"


def test_rejection_files_hold_every_rejected_item(dataset, commits):
    for unit, record in commits.items():
        table = pq.read_table(dataset / record["rejections"]["path"])
        assert table.column_names == list(REJECTION_TYPES)
        for name, expected in REJECTION_TYPES.items():
            assert table.schema.field(name).type == expected
        assert table.num_rows == record["counts"]["rejected"]
        reasons = collections.Counter(str(v) for v in table.column("reason").to_pylist())
        assert dict(reasons) == record["counts"]["rejected_by_reason"]
        assert record["counts"]["accepted"] + record["counts"]["rejected"] == record["counts"]["read"]


def test_duckdb_reads_the_shards_as_one_table(dataset, listing):
    con = duckdb.connect()
    glob = str(dataset / "shards" / "*.parquet")
    count, distinct, image_bytes, measured = con.execute(
        f"SELECT count(*), count(DISTINCT key), sum(image_bytes), sum(octet_length(image)) FROM read_parquet('{glob}')"
    ).fetchone()
    total_image_bytes = sum(s["image_bytes"] for u in listing["units"] for s in u["shards"])
    assert count == distinct == listing["totals"]["rows"]
    assert image_bytes == measured == total_image_bytes == listing["totals"]["image_bytes"]
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}'))").fetchall())
    assert types["key"] == "VARCHAR" and types["image"] == "BLOB" and types["image_format"] == "VARCHAR"
    assert types["width"] == "UINTEGER" and types["phash"] == "UBIGINT" and types["similarity"] == "FLOAT"
    by_shape = dict(con.execute(f"SELECT label_shape, count(*) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
    arrow_shapes = collections.Counter(
        v for u in listing["units"] for s in u["shards"] for v in pq.read_table(dataset / s["path"], columns=["label_shape"]).column(0).to_pylist()
    )
    assert by_shape == dict(arrow_shapes)
    per_unit = dict(con.execute(f"SELECT split_part(key, '/', 1), count(*) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
    assert per_unit == {u["unit"]: u["accepted"] for u in listing["units"]}
