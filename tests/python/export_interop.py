"""Loads flipstream exports with open_clip and transformers from PyPI and checks that they compute
flipstream's model. Run by tests/export_cli.rs with the venv of scripts/modeltools-env.sh (not a
pytest module: the other tests' venv has no torch).

    export_interop.py --data DATA --scores DATA/scores/NAME --open-clip DIR [--hf DIR]

For every accepted row of DATA (PNG images stored at the model's size, so that every library sees
the same pixels): the image and the caption go through both exported models, each with its own
tokenizer loader (open_clip.get_tokenizer, AutoTokenizer). Checked:

- the per-row image-caption cosine of each export equals flipstream's CLIP score (`flipstream
  score`, written in the sidecar) within 1e-4 (also used for an open_clip folder a run was
  initialised from with `train --init`, without --hf);
- with --hf: open_clip's and transformers' embeddings of every image and caption agree (cosine >= 0.9999);
- zero-shot: each image's best caption among all captions is the same under both;
- the tokenizers give the same ids up to the swap recorded in flipstream_export.json.

Prints one JSON line with the figures; exits non-zero with the reason on any mismatch.
"""

import argparse
import glob
import io
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def read_rows(data, scores_dir):
    rows = []
    for path in sorted(glob.glob(os.path.join(data, "shards", "*.parquet"))):
        t = pq.read_table(path, columns=["key", "image", "caption"]).to_pylist()
        rows.extend(t)
    scores = {}
    for path in glob.glob(os.path.join(scores_dir, "*.parquet")):
        for r in pq.read_table(path).to_pylist():
            scores[r["key"]] = r["clip_score"]
    rows = [r for r in rows if r["key"] in scores]
    if not rows:
        fail("no scored rows")
    return rows, scores


def pixels(rows, size):
    images = []
    for r in rows:
        img = Image.open(io.BytesIO(r["image"])).convert("RGB")
        if img.size != (size, size):
            fail(f"{r['key']}: stored at {img.size}, the test needs {size}x{size} images")
        images.append(np.asarray(img, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def open_clip_embeddings(folder, px, captions):
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    ids = tokenizer(captions)
    with torch.no_grad():
        return normalize(model.encode_image(px)), normalize(model.encode_text(ids)), ids


def hf_embeddings(folder, px, captions, context_length):
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(
        captions,
        padding="max_length",
        max_length=context_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        image = model.get_image_features(pixel_values=px)
        text = model.get_text_features(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    # transformers 5 returns model outputs whose pooler_output is the projected embedding
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    return normalize(image), normalize(text), enc.input_ids


def check_token_ids(hf_dir, oc_ids, hf_ids, captions):
    """Both tokenizers give the same ids, up to the swap the transformers export records."""
    with open(os.path.join(hf_dir, "flipstream_export.json")) as f:
        swap = json.load(f)["swapped_token_ids"]
    mapped = oc_ids.clone()
    if swap:
        a, b = swap
        mapped[oc_ids == a] = b
        mapped[oc_ids == b] = a
    if not torch.equal(mapped, hf_ids):
        bad = (mapped != hf_ids).any(dim=1).nonzero().flatten().tolist()
        fail(f"token ids differ for captions {[captions[i] for i in bad[:3]]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--scores", required=True)
    ap.add_argument("--open-clip", required=True)
    ap.add_argument("--hf")
    args = ap.parse_args()
    torch.manual_seed(0)

    with open(os.path.join(args.open_clip, "open_clip_config.json")) as f:
        oc_cfg = json.load(f)["model_cfg"]
    size = oc_cfg["vision_cfg"]["image_size"]
    context_length = oc_cfg["text_cfg"]["context_length"]
    rows, scores = read_rows(args.data, args.scores)
    captions = [r["caption"] for r in rows]
    px = pixels(rows, size)

    oc_img, oc_txt, oc_ids = open_clip_embeddings(args.open_clip, px, captions)
    want = torch.tensor([scores[r["key"]] for r in rows])
    report = {"rows": len(rows)}
    models = [("open_clip", oc_img, oc_txt)]
    if args.hf:
        hf_img, hf_txt, hf_ids = hf_embeddings(args.hf, px, captions, context_length)
        check_token_ids(args.hf, oc_ids, hf_ids, captions)
        models.append(("hf", hf_img, hf_txt))
    for name, img, txt in models:
        got = (img * txt).sum(dim=-1)
        diff = (got - want).abs().max().item()
        report[f"{name}_max_score_diff"] = diff
        if diff > 1e-4:
            i = int((got - want).abs().argmax())
            fail(f"{name}: score of {rows[i]['key']} is {got[i]:.6f}, flipstream's {want[i]:.6f}")
    if args.hf:
        for what, a, b in (("image", oc_img, hf_img), ("text", oc_txt, hf_txt)):
            cos = (a * b).sum(dim=-1).min().item()
            report[f"min_{what}_cosine_open_clip_vs_hf"] = cos
            if cos < 0.9999:
                fail(f"{what} embeddings of open_clip and transformers differ: cosine {cos:.6f}")
        oc_pred = (oc_img @ oc_txt.T).argmax(dim=-1)
        hf_pred = (hf_img @ hf_txt.T).argmax(dim=-1)
        if not torch.equal(oc_pred, hf_pred):
            fail("zero-shot caption predictions differ between open_clip and transformers")
        report["zero_shot_top1"] = (oc_pred == torch.arange(len(rows))).float().mean().item()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
