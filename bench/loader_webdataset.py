#!/usr/bin/env python3
"""The WebDataset side of the loader benchmark (run through scripts/bench-loader.sh).

  loader_webdataset.py make OUT_DIR [--images 2000] [--per-tar 250]
      Writes a seeded corpus of web-like photos (cut from the real photos that ship with
      scikit-image), resized to 256 px on the shortest side and stored as JPEG (quality 75-95),
      as WebDataset tars OUT_DIR/part-NNNNN.tar with <key>.jpg and <key>.txt members.
      `flipstream bench loader --tars OUT_DIR` turns the same bytes into flipstream shards.

  loader_webdataset.py run TARS_DIR --workers N [--epochs 3] [--batch-size 64]
      Streams the tars with WebDataset 1.0.2 + PIL + torchvision in a torch DataLoader doing
      the benchmark's augmentation (RandomResizedCrop 224, scale (0.5, 1), horizontal flip,
      uint8 tensors, batches of 64) and prints one JSON line: images, wall seconds, CPU seconds
      of the main process and its workers, images/s and images per CPU-second.

  loader_webdataset.py report RESULTS.jsonl
      Medians per pipeline and worker count, as a Markdown table (and JSON with --json).
"""
import argparse
import io
import json
import os
import resource
import statistics
import sys
import tarfile
import time

SEED = 20240601
SOURCES = [
    ("astronaut", "an astronaut posing with a flag", 3),
    ("chelsea", "a tabby cat", 3),
    ("coffee", "a cup of coffee on a saucer", 3),
    ("rocket", "a rocket on the launch pad", 3),
    ("stereo_motorcycle", "a red motorcycle in a garage", 3),
    ("camera", "a man with a camera on a tripod", 1),
    ("coins", "old coins on a table", 1),
    ("clock", "a clock on a wall", 1),
    ("moon", "the surface of the moon", 1),
    ("grass", "a close up of grass", 1),
    ("gravel", "gravel on the ground", 1),
    ("brick", "a brick wall", 1),
]
ASPECTS = [4 / 3, 4 / 3, 4 / 3, 3 / 2, 3 / 2, 1.0, 16 / 9, 5 / 4, 3 / 4, 2 / 3]
ADJ = ["a photo of ", "a close-up photo of ", "a cropped photo of ", "a bright photo of ", "a dark photo of "]


def make(args):
    import numpy as np
    import skimage.data as skd
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(SEED)
    srcs = []
    for name, subject, weight in SOURCES:
        a = getattr(skd, name)()
        if isinstance(a, tuple):  # stereo pairs
            a = a[0]
        im = Image.fromarray(a)
        srcs.append((im.convert("RGB"), subject, weight))
    weights = np.array([s[2] for s in srcs], dtype=float)
    weights /= weights.sum()
    os.makedirs(args.out, exist_ok=True)
    tar = None
    sizes = []
    for i in range(args.images):
        if i % args.per_tar == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(os.path.join(args.out, f"part-{i // args.per_tar:05d}.tar"), "w")
        src, subject, _ = srcs[rng.choice(len(srcs), p=weights)]
        sw, sh = src.size
        ar = float(rng.choice(ASPECTS))
        max_cw = min(sw, sh * ar)
        cw = max(16, int(max_cw * float(rng.uniform(0.35, 1.0))))
        ch = min(sh, max(16, int(cw / ar)))
        x0 = int(rng.integers(0, sw - cw + 1))
        y0 = int(rng.integers(0, sh - ch + 1))
        im = src.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        # 256 px on the shortest side, like ingest's output
        scale = 256 / min(im.size)
        im = im.resize((max(256, round(im.size[0] * scale)), max(256, round(im.size[1] * scale))), Image.LANCZOS)
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.8, 1.2)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(75, 96)))
        data = buf.getvalue()
        caption = (ADJ[int(rng.integers(0, len(ADJ)))] + subject).encode()
        key = f"{i:06d}"
        for ext, payload in (("jpg", data), ("txt", caption)):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(payload)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(payload))
        sizes.append((im.size, len(data)))
    if tar is not None:
        tar.close()
    stats = {
        "images": len(sizes),
        "tars": (args.images + args.per_tar - 1) // args.per_tar,
        "mean_width": round(sum(s[0][0] for s in sizes) / len(sizes), 1),
        "mean_height": round(sum(s[0][1] for s in sizes) / len(sizes), 1),
        "mean_bytes": round(sum(s[1] for s in sizes) / len(sizes), 1),
    }
    print(json.dumps(stats), file=sys.stderr)


def cpu_seconds():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(args):
    import torch
    import torchvision
    import torchvision.transforms as T
    import webdataset as wds

    torch.set_num_threads(1)
    urls = sorted(os.path.join(args.tars, f) for f in os.listdir(args.tars) if f.endswith(".tar"))
    transform = T.Compose([
        T.RandomResizedCrop(args.image_size, scale=(args.min_scale, 1.0)),  # bilinear, antialiased
        T.RandomHorizontalFlip(),
        T.PILToTensor(),  # uint8, no normalisation (that happens on the device)
    ])
    dataset = (
        wds.WebDataset(urls, shardshuffle=len(urls), workersplitter=wds.split_by_worker, seed=0)
        .shuffle(1000)
        .decode("pil")
        .to_tuple("jpg", "txt")
        .map_tuple(transform, lambda t: t)
        .batched(args.batch_size, partial=False)
    )
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    images = batches = 0
    for _ in range(args.epochs):
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=args.workers)
        for imgs, _captions in loader:
            assert imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, args.image_size, args.image_size)
            images += imgs.shape[0]
            batches += 1
        del loader  # workers exit and are reaped, so their CPU time is counted
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    print(json.dumps({
        "pipeline": "webdataset",
        "threads": args.workers,
        "images": images,
        "batches": batches,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "images_per_s": images / seconds,
        "images_per_cpu_s": images / cpu if cpu > 0 else None,
        "versions": {"webdataset": getattr(wds, "__version__", "?"), "torch": torch.__version__,
                     "torchvision": torchvision.__version__},
    }))


def report(args):
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["pipeline"], r["threads"]), []).append(r)
    summary = []
    for (pipeline, threads), rs in sorted(groups.items()):
        per_cpu = [r["images_per_cpu_s"] for r in rs if r.get("images_per_cpu_s")]
        summary.append({
            "pipeline": pipeline,
            "threads": threads,
            "runs": len(rs),
            "images_per_s": statistics.median(r["images_per_s"] for r in rs),
            "images_per_cpu_s": statistics.median(per_cpu) if per_cpu else None,
        })
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    by = {(s["pipeline"], s["threads"]): s for s in summary}
    print("| workers / threads | WebDataset images/s | flipstream images/s | ratio | WebDataset per CPU-s | flipstream per CPU-s |")
    print("|---|---|---|---|---|---|")
    for threads in sorted({s["threads"] for s in summary}):
        w, f = by.get(("webdataset", threads)), by.get(("flipstream", threads))
        if not (w and f):
            continue
        fmt = lambda v: f"{v:,.0f}" if v else "–"
        print(f"| {threads} | {fmt(w['images_per_s'])} | {fmt(f['images_per_s'])} | "
              f"{f['images_per_s'] / w['images_per_s']:.2f}× | {fmt(w['images_per_cpu_s'])} | "
              f"{fmt(f['images_per_cpu_s'])} |")
    print(f"\nmedians of {min(s['runs'] for s in summary)}+ runs each, from {args.results}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the benchmark corpus as WebDataset tars")
    m.add_argument("out")
    m.add_argument("--images", type=int, default=2000)
    m.add_argument("--per-tar", type=int, default=250)
    r = sub.add_parser("run", help="measure the WebDataset + torchvision pipeline")
    r.add_argument("tars")
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--image-size", type=int, default=224)
    r.add_argument("--min-scale", type=float, default=0.5)
    s = sub.add_parser("report", help="median table of a results file")
    s.add_argument("results")
    s.add_argument("--json", action="store_true")
    args = p.parse_args()
    {"make": make, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
