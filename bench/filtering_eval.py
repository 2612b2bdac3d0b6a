#!/usr/bin/env python3
"""CLIP-score filtering against synth's ground truth, for docs/filtering.md.

    filtering_eval.py scores RAW DATASET SCORES_NAME OUT_DIR
        precision / recall of "reject the lowest scores" against the planted semantic dirt
        (synth.jsonl's `dirt`: caption_mismatched, caption_boilerplate) over the accepted rows
        of DATASET, at several kept fractions; ROC AUC; the score histogram per ground-truth
        class as OUT_DIR/filtering-scores.svg. Markdown on stdout.

    filtering_eval.py training EVAL_JSON...
        the zero-shot table of `flipstream eval --json` outputs named ARM-seedN.json: per arm,
        each seed and the mean. Markdown on stdout.

Reads the sidecar and the shards with pyarrow only (no flipstream code). Run it through
scripts/bench-filtering.sh, which provides the Python test tools' venv.
"""

import json
import pathlib
import statistics
import sys

import pyarrow.dataset as pads

SEMANTIC = ("caption_mismatched", "caption_boilerplate")
KEPT = (0.9, 0.8, 0.7, 0.6, 0.5)


def truth(raw: pathlib.Path) -> dict:
    """key → planted dirt kind (None for a clean row)."""
    out = {}
    with open(raw / "synth.jsonl") as f:
        for line in f:
            r = json.loads(line)
            out[r["key"]] = r.get("dirt")
    return out


def scored_rows(dataset: pathlib.Path, name: str, kinds: dict) -> list:
    """(score, kind) of every accepted row, kind as planted (None: clean)."""
    keys = pads.dataset(dataset / "shards", format="parquet").to_table(columns=["key"])
    accepted = set(keys.column("key").to_pylist())
    t = pads.dataset(dataset / "scores" / name, format="parquet").to_table()
    rows = []
    for key, score in zip(t.column("key").to_pylist(), t.column("clip_score").to_pylist()):
        if key in accepted:
            rows.append((score, kinds.get(key)))
    return rows


def auc(rows: list) -> float:
    """ROC AUC of `-score` as a detector of semantic dirt (ties count half)."""
    ranked = sorted(rows, key=lambda r: r[0])
    pos = sum(1 for _, k in rows if k in SEMANTIC)
    neg = len(rows) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    # Mann-Whitney: for each dirty row, clean rows scoring higher
    total, i = 0.0, 0
    clean_above = neg
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        group = ranked[i:j]
        g_pos = sum(1 for _, k in group if k in SEMANTIC)
        g_neg = len(group) - g_pos
        clean_above -= g_neg
        total += g_pos * (clean_above + 0.5 * g_neg)
        i = j
    return total / (pos * neg)


def histogram_svg(rows: list, path: pathlib.Path) -> None:
    """Score histograms of clean, mismatched and boilerplate rows, overlaid, as a small SVG."""
    classes = [("clean", None, "#4c78a8"), ("caption_mismatched", "caption_mismatched", "#e45756"),
               ("caption_boilerplate", "caption_boilerplate", "#f2a33a")]
    # from the 0.5th percentile: a few outliers far below would squeeze the rest into few bins
    ordered = sorted(s for s, _ in rows)
    lo = ordered[int(0.005 * (len(ordered) - 1))]
    hi = ordered[-1]
    bins = 40
    width = (hi - lo) / bins or 1.0
    counts = {}
    for label, kind, _ in classes:
        c = [0] * bins
        for s, k in rows:
            if k == kind or (kind is None and k not in SEMANTIC):
                c[min(max(int((s - lo) / width), 0), bins - 1)] += 1
        counts[label] = c
    top = max(max(c) for c in counts.values()) or 1
    w, h, ml, mb, mt = 640, 300, 50, 40, 30
    pw, ph = w - ml - 20, h - mb - mt
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{ml}" y="18" font-size="13">CLIP score of accepted rows by planted '
             f'caption dirt ({len(rows)} rows; the lowest 0.5 % in the first bin)</text>']
    for label, _, colour in classes:
        pts = []
        for i, c in enumerate(counts[label]):
            x0 = ml + pw * i / bins
            x1 = ml + pw * (i + 1) / bins
            y = mt + ph - ph * c / top
            pts += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
        base = f"{ml + pw:.1f},{mt + ph:.1f} {ml:.1f},{mt + ph:.1f}"
        parts.append(f'<polygon points="{" ".join(pts)} {base}" fill="{colour}" '
                     f'fill-opacity="0.35" stroke="{colour}"/>')
    for t in range(6):
        v = lo + (hi - lo) * t / 5
        x = ml + pw * t / 5
        parts.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle">{v:.2f}</text>')
    parts.append(f'<text x="{ml + pw / 2:.1f}" y="{h - 6}" text-anchor="middle">'
                 f'clip_score (cosine of image and caption embeddings)</text>')
    parts.append(f'<text x="{ml - 6}" y="{mt + 8}" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{ml - 6}" y="{mt + ph}" text-anchor="end">0</text>')
    for i, (label, _, colour) in enumerate(classes):
        y = mt + 14 * i
        parts.append(f'<rect x="{ml + pw - 170}" y="{y}" width="10" height="10" fill="{colour}"/>')
        n = sum(counts[label])
        parts.append(f'<text x="{ml + pw - 155}" y="{y + 9}">{label} ({n})</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def scores_report(raw: str, dataset: str, name: str, out_dir: str) -> None:
    rows = scored_rows(pathlib.Path(dataset), name, truth(pathlib.Path(raw)))
    dirty = sum(1 for _, k in rows if k in SEMANTIC)
    print(f"{len(rows)} accepted rows scored, {dirty} with planted semantic dirt "
          f"({100 * dirty / len(rows):.1f} %); ROC AUC of the score as a dirt detector: "
          f"{auc(rows):.3f}\n")
    print("| kept (top fraction) | threshold | rows left out | precision | recall "
          "| dirt among kept | mismatched left out | boilerplate left out |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    ranked = sorted(rows, key=lambda r: -r[0])
    for kept in KEPT:
        n_keep = -(-int(kept * len(ranked) * 1e6) // 1_000_000)  # ceil without float drift
        threshold = ranked[n_keep - 1][0]
        kept_rows = [r for r in ranked if r[0] >= threshold]
        out = [r for r in ranked if r[0] < threshold]
        tp = sum(1 for _, k in out if k in SEMANTIC)
        per = {k: sum(1 for _, kk in out if kk == k) for k in SEMANTIC}
        tot = {k: sum(1 for _, kk in rows if kk == k) for k in SEMANTIC}
        prec = tp / len(out) if out else float("nan")
        rec = tp / dirty if dirty else float("nan")
        left = sum(1 for _, k in kept_rows if k in SEMANTIC) / len(kept_rows)
        print(f"| {kept:.0%} | {threshold:.4f} | {len(out)} | {prec:.1%} | {rec:.1%} | {left:.1%} "
              f"| {per[SEMANTIC[0]]} of {tot[SEMANTIC[0]]} | {per[SEMANTIC[1]]} of {tot[SEMANTIC[1]]} |")
    histogram_svg(rows, pathlib.Path(out_dir) / "filtering-scores.svg")


def training_report(paths: list) -> None:
    arms: dict = {}
    for p in paths:
        stem = pathlib.Path(p).stem
        arm, seed = stem.rsplit("-seed", 1)
        r = json.loads(pathlib.Path(p).read_text())
        z, c, ret = r["zero_shot"], r.get("compositional"), r.get("retrieval")
        col = {x["column"]: x["accuracy"] for x in z["columns"]}
        ccol = {x["column"]: x["accuracy"] for x in c["columns"]} if c else {}
        arms.setdefault(arm, []).append((int(seed), {
            "top-1": z["top1"], "shape": col.get("label_shape"), "colour": col.get("label_color"),
            "held-out shape": ccol.get("label_shape"),
            "R@1 i→t": ret["image_to_text"]["r1"] if ret else None,
        }))
    cols = ["top-1", "shape", "colour", "held-out shape", "R@1 i→t"]
    print("| arm | seed | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for arm, runs in arms.items():
        for seed, m in sorted(runs):
            cells = " | ".join("–" if m[c] is None else f"{100 * m[c]:.1f}" for c in cols)
            print(f"| {arm} | {seed} | {cells} |")
        means = []
        for c in cols:
            vals = [m[c] for _, m in runs if m[c] is not None]
            means.append(f"**{100 * statistics.mean(vals):.1f}**" if vals else "–")
        print(f"| {arm} | mean | " + " | ".join(means) + " |")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "scores" and len(sys.argv) == 6:
        scores_report(*sys.argv[2:6])
    elif len(sys.argv) >= 3 and sys.argv[1] == "training":
        training_report(sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
