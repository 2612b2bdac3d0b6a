"""Independent readers check `flipstream synth` output: webdataset iterates the tars, pyarrow
reads the Parquet layouts, Pillow opens the images (and rejects or converts the dirt as the
sidecar says)."""

import io
import json
import tarfile
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image, ImageOps

from conftest import read_sidecar, run_synth

COUNT = 120


@pytest.fixture(scope="module")
def wds_out(flipstream_bin, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "wds"
    run_synth(flipstream_bin, out, "--count", str(COUNT), "--dirt", "default", "--shard-size", "50", "--seed", "3")
    return out


def tar_members(out: Path) -> dict[str, bytes]:
    members = {}
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
    return members


def test_webdataset_finds_every_clean_sample(wds_out):
    records = read_sidecar(wds_out)
    assert len(records) == COUNT
    shards = [str(p) for p in sorted(wds_out.glob("shard-*.tar"))]
    assert len(shards) == 3
    samples = {s["__key__"]: s for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False)}
    assert len(samples) == COUNT
    clean = [r for r in records if r["dirt"] is None]
    assert len(clean) > COUNT * 0.7
    for r in clean:
        s = samples[r["key"]]
        ext = r["member"].split(".", 1)[1]
        assert len(s[ext]) == r["bytes"]
        assert s["txt"].decode("utf-8") == r["caption"]
        meta = json.loads(s["json"])
        assert meta["key"] == r["key"]
        for label in ("label_shape", "label_color", "label_size", "label_position", "num_objects", "background"):
            assert meta[label] == r[label]


def test_pillow_opens_clean_images_at_the_sidecar_size(wds_out):
    members = tar_members(wds_out)
    formats = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
    for r in read_sidecar(wds_out):
        if r["dirt"] is not None:
            continue
        with Image.open(io.BytesIO(members[r["member"]])) as im:
            im.load()
            assert im.size == (r["width"], r["height"]), r["key"]
            assert im.format == formats[r["format"]]
            assert im.mode in ("RGB", "P"), (r["key"], im.mode)


def open_dirt(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_pillow_sees_the_dirt_the_sidecar_states(wds_out):
    members = tar_members(wds_out)
    seen = set()
    for r in read_sidecar(wds_out):
        kind = r["dirt"]
        if kind is None:
            continue
        seen.add(kind)
        data = members[r["member"]]
        if kind in ("truncated", "corrupt", "not_image", "zero_byte"):
            with pytest.raises((OSError, SyntaxError, Image.UnidentifiedImageError)):
                open_dirt(data)
        elif kind == "decompression_bomb":
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning, OSError)):
                    open_dirt(data)
        elif kind == "exif_rotated":
            im = open_dirt(data)
            assert im.getexif().get(0x0112) in (6, 8)
            assert im.size == (r["height"], r["width"])
            assert ImageOps.exif_transpose(im).size == (r["width"], r["height"])
        elif kind == "cmyk":
            assert open_dirt(data).mode == "CMYK"
        elif kind == "gray16":
            assert open_dirt(data).mode.startswith("I")
        elif kind == "grayscale":
            assert open_dirt(data).mode == "L"
        elif kind == "palette_alpha":
            im = open_dirt(data)
            assert im.mode == "P" and "transparency" in im.info
        elif kind == "animated":
            im = open_dirt(data)
            assert im.format == "GIF" and im.n_frames >= 3
            assert im.size == (r["width"], r["height"])
        elif kind == "tiny":
            assert min(open_dirt(data).size) <= 40
        elif kind == "extreme_aspect":
            w, h = open_dirt(data).size
            assert max(w, h) >= 8 * min(w, h)
        elif kind == "duplicate_exact":
            src = next(x for x in read_sidecar(wds_out) if x["key"] == r["dup_of"])
            assert members[src["member"]] == data
        elif kind == "caption_invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                members[f"{r['key']}.txt"].decode("utf-8")
    # ⌈fraction·120⌉ ≥ 1 for every kind of the preset that WebDataset can carry.
    assert len(seen) == 20, sorted(seen)


def test_parquet_layout_has_the_hugging_face_image_struct(flipstream_bin, out_dir):
    out = out_dir / "pq"
    summary = run_synth(flipstream_bin, out, "--count", "30", "--layout", "parquet", "--shard-size", "20")
    assert summary["data_files"] == ["part-00000.parquet", "part-00001.parquet"]
    records = {r["key"]: r for r in read_sidecar(out)}
    parts = [str(p) for p in sorted(out.glob("*.parquet"))]  # what `datasets` globs
    table = pq.ParquetDataset(parts).read()
    assert table.num_rows == 30
    schema = pq.read_schema(out / "part-00000.parquet")
    assert schema.names[:4] == ["key", "image", "caption", "url"]
    image_type = schema.field("image").type
    assert image_type.num_fields == 2
    assert [image_type.field(i).name for i in range(2)] == ["bytes", "path"]
    assert str(image_type.field(0).type) == "binary"
    assert json.loads(schema.metadata[b"huggingface"])["info"]["features"]["image"] == {"_type": "Image"}
    for row in table.to_pylist():
        r = records[row["key"]]
        assert row["url"] is None
        assert row["caption"] == r["caption"]
        assert row["label_color"] == r["label_color"] and row["num_objects"] == r["num_objects"]
        assert row["image"]["path"] == f"{row['key']}.{row['image']['path'].split('.')[-1]}"
        with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
            assert im.size == (r["width"], r["height"])


def test_url_list_points_at_the_written_files(flipstream_bin, out_dir):
    out = out_dir / "urls"
    base = "http://127.0.0.1:8123/"
    run_synth(flipstream_bin, out, "--count", "40", "--layout", "urls", "--url-base", base,
              "--dirt", "missing_file=0.1,zero_byte=0.05")
    table = pq.read_table(out / "urls.parquet")
    assert table.column_names[:3] == ["url", "caption", "uid"]
    assert "label_shape" in table.column_names
    records = {r["key"]: r for r in read_sidecar(out)}
    missing = 0
    for row in table.to_pylist():
        r = records[row["uid"]]
        assert row["url"] == r["url"] and row["url"].startswith(base + "files/")
        path = out / row["url"][len(base):]
        if r["dirt"] == "missing_file":
            missing += 1
            assert not path.exists()
        else:
            assert path.is_file() and path.stat().st_size == r["bytes"]
    assert missing == 4


def test_folder_layout_pairs_files(flipstream_bin, out_dir):
    out = out_dir / "folder"
    run_synth(flipstream_bin, out, "--count", "15", "--layout", "folder")
    for r in read_sidecar(out):
        image = out / r["file"]
        with Image.open(image) as im:
            assert im.size == (r["width"], r["height"])
        assert image.with_suffix(".txt").read_text(encoding="utf-8") == r["caption"]
        assert json.loads(image.with_suffix(".json").read_text())["label_shape"] == r["label_shape"]
