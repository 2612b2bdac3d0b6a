"""Loads flipstream exports with open_clip and transformers from PyPI and checks that they compute
flipstream's model. Run by tests/export_cli.rs with the venv of scripts/modeltools-env.sh (not a
pytest module: the other tests' venv has no torch).

    export_interop.py --data DATA --scores DATA/scores/NAME --open-clip DIR [--hf DIR]

For every accepted row of DATA (PNG images stored at the model's size, so that every library sees
the same pixels): the image and the caption go through both exported models, each with its own
tokenizer loader (open_clip.get_tokenizer, AutoTokenizer). Checked against flipstream's own
embeddings and scores (`flipstream score --embeddings`, read from the sidecar):

- every image and caption embedding of each export equals flipstream's (cosine >= 0.9999, largest
  element difference <= 1e-4);
- the per-row image-caption cosine equals flipstream's CLIP score within 1e-4;
- zero-shot: each image's best caption among all captions is flipstream's under each export
  (also used for an open_clip folder a run was initialised from with `train --init`, without
  --hf);
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
    scored = {}
    for path in glob.glob(os.path.join(scores_dir, "*.parquet")):
        for r in pq.read_table(path).to_pylist():
            scored[r["key"]] = r
    rows = [r for r in rows if r["key"] in scored]
    if not rows:
        fail("no scored rows")
    if "image_embedding" not in scored[rows[0]["key"]]:
        fail(f"{scores_dir} has no embeddings: score with --embeddings")
    return rows, [scored[r["key"]] for r in rows]


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
    rows, flip = read_rows(args.data, args.scores)
    captions = [r["caption"] for r in rows]
    px = pixels(rows, size)
    want_score = torch.tensor([f["clip_score"] for f in flip])
    want_img = torch.tensor([f["image_embedding"] for f in flip])
    want_txt = torch.tensor([f["text_embedding"] for f in flip])
    want_sims = want_img @ want_txt.T
    want_pred = want_sims.argmax(dim=-1)
    # rows whose best caption wins clearly (not a tie of equal captions or within rounding)
    top2 = want_sims.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-5

    oc_img, oc_txt, oc_ids = open_clip_embeddings(args.open_clip, px, captions)
    report = {"rows": len(rows)}
    models = [("open_clip", oc_img, oc_txt)]
    if args.hf:
        hf_img, hf_txt, hf_ids = hf_embeddings(args.hf, px, captions, context_length)
        check_token_ids(args.hf, oc_ids, hf_ids, captions)
        models.append(("hf", hf_img, hf_txt))
    for name, img, txt in models:
        for what, got, want in (("image", img, want_img), ("text", txt, want_txt)):
            cos = (got * want).sum(dim=-1).min().item()
            diff = (got - want).abs().max().item()
            report[f"{name}_min_{what}_cosine"] = cos
            report[f"{name}_max_{what}_diff"] = diff
            if cos < 0.9999 or diff > 1e-4:
                fail(f"{name}: {what} embeddings differ from flipstream's: cosine {cos}, max diff {diff}")
        score = (img * txt).sum(dim=-1)
        diff = (score - want_score).abs().max().item()
        report[f"{name}_max_score_diff"] = diff
        if diff > 1e-4:
            i = int((score - want_score).abs().argmax())
            fail(f"{name}: score of {rows[i]['key']} is {score[i]:.6f}, flipstream's {want_score[i]:.6f}")
        pred = (img @ txt.T).argmax(dim=-1)
        if not torch.equal(pred[clear], want_pred[clear]):
            fail(f"{name}: zero-shot caption predictions differ from flipstream's")
    report["zero_shot_rows_compared"] = int(clear.sum())
    report["zero_shot_top1"] = (want_pred == torch.arange(len(rows))).float().mean().item()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
