#!/usr/bin/env python3
"""Ingest side by side: flipstream (floor, local tar, URL list over HTTP) and img2dataset on the
same photos served on 127.0.0.1 by bench/http_server.py (`python -m http.server` with a deep
listen backlog), with equivalent settings (shortest side 256 if bigger, aspect kept, JPEG q90,
every image re-encoded, Parquet out). Runs alternate, REPEATS times; prints medians of wall time,
images/s and images per CPU-second (the tool's own CPU time, children included, from getrusage;
the server's CPU time during each run is reported beside it), and the ratios. Used by
scripts/bench-ingest.sh.

usage: ingest_compare.py FLIPSTREAM_BIN CORPUS_DIR URLS_PARQUET PORT OUT_DIR REPEATS
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN, CORPUS, URLS, PORT, OUT, REPEATS = sys.argv[1:7]
OUT, REPEATS = Path(OUT), int(REPEATS)
N = len(list(Path(CORPUS).glob("*.jpg"))) + len(list(Path(CORPUS).glob("*.png")))


SERVER_PID = None


def server_cpu_s():
    """CPU seconds the HTTP server has used so far (user + system, from /proc)."""
    if SERVER_PID is None:
        return 0.0
    fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd, **kw):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server_cpu_s()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, server_cpu_s() - server_before


def flipstream_urls(threads):
    out = OUT / "flipstream-urls"
    shutil.rmtree(out, ignore_errors=True)
    return timed([BIN, "-q", "ingest", URLS, "--out", str(out), "--allow-private-addresses",
                  "--min-side", "0", "--max-aspect-ratio", "0", "--no-dedup", "--min-words", "0",
                  "--min-chars", "0", "--size", "256", "--quality", "90", "--no-keep-original",
                  "--threads", str(threads), "--concurrency", "64"])


def img2dataset(processes):
    out = OUT / "img2dataset"
    shutil.rmtree(out, ignore_errors=True)
    code = (
        "from img2dataset import download\n"
        f"download(url_list={URLS!r}, input_format='parquet', url_col='url', caption_col='caption',"
        f" output_folder={str(out)!r}, output_format='parquet', processes_count={processes},"
        " thread_count=32, image_size=256, resize_mode='keep_ratio', resize_only_if_bigger=True,"
        " encode_quality=90, encode_format='jpg', number_sample_per_shard=10000, timeout=10,"
        " retries=0, disallowed_header_directives=[], enable_wandb=False, distributor='multiprocessing')\n"
    )
    return timed([sys.executable, "-c", code])


def summarize(name, runs, images):
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    server = statistics.median(r[2] for r in runs)
    return {"name": name, "images": images, "median_wall_s": wall, "median_cpu_s": cpu,
            "images_per_s": images / wall, "images_per_cpu_s": images / cpu if cpu else float("nan"),
            "median_server_cpu_s": server}


def main():
    global SERVER_PID
    OUT.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("http_server.py")), CORPUS, PORT],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    SERVER_PID = server.pid
    try:
        runs = {k: [] for k in ["flipstream URL list, 2 threads", "flipstream URL list, 1 thread",
                                "img2dataset, 2 processes", "img2dataset, 1 process"]}
        floors = []
        for i in range(REPEATS):
            print(f"round {i + 1}/{REPEATS}", file=sys.stderr)
            runs["img2dataset, 2 processes"].append(img2dataset(2))
            runs["flipstream URL list, 2 threads"].append(flipstream_urls(2))
            runs["img2dataset, 1 process"].append(img2dataset(1))
            runs["flipstream URL list, 1 thread"].append(flipstream_urls(1))
        bench = subprocess.run([BIN, "--json", "-q", "bench", "ingest", "--images", CORPUS, "--repeat",
                                str(REPEATS)], check=True, capture_output=True, text=True)
        # `flipstream bench` measurements count "items"; this table counts images
        floors = [{**r, "images": r["items"], "images_per_s": r["items_per_s"],
                   "images_per_cpu_s": r["items_per_cpu_s"]}
                  for r in json.loads(bench.stdout)["results"]]
        results = floors + [summarize(k, v, N) for k, v in runs.items()]
        by = {r["name"]: r for r in results}
        ratios = {
            "flipstream / img2dataset, per CPU-second (1 thread vs 1 process)":
                by["flipstream URL list, 1 thread"]["images_per_cpu_s"] / by["img2dataset, 1 process"]["images_per_cpu_s"],
            "flipstream / img2dataset, images/s on 2 cores":
                by["flipstream URL list, 2 threads"]["images_per_s"] / by["img2dataset, 2 processes"]["images_per_s"],
            "flipstream URL list / floor, images/s on 2 cores":
                by["flipstream URL list, 2 threads"]["images_per_s"] / floors[0]["images_per_s"],
            "2 threads / 1 thread (scaling), flipstream":
                by["flipstream URL list, 2 threads"]["images_per_s"] / by["flipstream URL list, 1 thread"]["images_per_s"],
        }
        print("| run | images | median wall s | images/s | images per CPU-s | HTTP server CPU-s |")
        print("|---|---|---|---|---|---|")
        for r in results:
            srv = f"{r['median_server_cpu_s']:.2f}" if "median_server_cpu_s" in r else "—"
            print(f"| {r['name']} | {r['images']} | {r['median_wall_s']:.2f} | {r['images_per_s']:.0f}"
                  f" | {r['images_per_cpu_s']:.0f} | {srv} |")
        print()
        for k, v in ratios.items():
            print(f"- {k}: **{v:.2f}×**")
        (OUT / "result.json").write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    finally:
        server.terminate()


main()
