#!/usr/bin/env python3
"""open_clip peer of `flipstream bench train-step`: median training-step time per mask ratio.

Builds open_clip's `CLIP` with the same tower sizes as a flipstream preset, FLIP-style patch
dropout (`patch_dropout`, open_clip's implementation of FLIP masking), AdamW (0.9, 0.95), wd 0.2 on
matrices, and times full steps on one random batch: u8 HWC images normalised with CLIP's mean/std
(the same work flipstream's step does on the device), forward, ClipLoss, backward, AdamW, logit
scale clamp, and `loss.item()` (a host sync, as flipstream reads its metrics every step).

Run it through scripts/bench-openclip.sh, which provides a venv with the pinned versions
(scripts/requirements-models.txt).
Prints JSON on stdout, progress on stderr.
"""

import argparse
import json
import math
import statistics
import sys
import time

import open_clip
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

# Mirrors train/src/config.rs (Preset::model): ViT width/depth/heads, patch, image size, text
# width/depth/heads, context length, joint embedding size. Vocabulary 49408 (CLIP's BPE).
PRESETS = {
    "tiny": dict(image_size=64, patch_size=8, vision_width=192, vision_layers=4, vision_heads=3,
                 text_width=128, text_layers=2, text_heads=2, context_length=32, embed_dim=128),
    "small": dict(image_size=224, patch_size=16, vision_width=384, vision_layers=6, vision_heads=6,
                  text_width=256, text_layers=4, text_heads=4, context_length=32, embed_dim=256),
    "b16": dict(image_size=224, patch_size=16, vision_width=768, vision_layers=12, vision_heads=12,
                text_width=512, text_layers=12, text_heads=8, context_length=77, embed_dim=512),
    "l16": dict(image_size=224, patch_size=16, vision_width=1024, vision_layers=24, vision_heads=16,
                text_width=768, text_layers=12, text_heads=12, context_length=77, embed_dim=768),
}
VOCAB = 49408
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_model(p, mask_ratio):
    vision = CLIPVisionCfg(
        layers=p["vision_layers"], width=p["vision_width"],
        head_width=p["vision_width"] // p["vision_heads"], mlp_ratio=4.0,
        patch_size=p["patch_size"], image_size=p["image_size"],
        patch_dropout=mask_ratio, pool_type="avg",
    )
    text = CLIPTextCfg(
        context_length=p["context_length"], vocab_size=VOCAB, width=p["text_width"],
        heads=p["text_heads"], layers=p["text_layers"], mlp_ratio=4.0,
    )
    return CLIP(embed_dim=p["embed_dim"], vision_cfg=vision, text_cfg=text)


def adamw(model, lr):
    # open_clip's training/main.py grouping: no decay for ndim < 2, norms, biases, logit scale.
    def exclude(n, p):
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def random_batch(p, batch, seed):
    g = torch.Generator().manual_seed(seed)
    side, ctx = p["image_size"], p["context_length"]
    images = torch.randint(0, 256, (batch, side, side, 3), dtype=torch.uint8, generator=g)
    tokens = torch.zeros(batch, ctx, dtype=torch.long)
    for row in range(batch):
        length = int(torch.randint(2, ctx + 1, (1,), generator=g))
        tokens[row, :length] = torch.randint(1, VOCAB - 1, (length,), generator=g)
        tokens[row, length - 1] = VOCAB - 1  # end of text: the argmax token
    return images, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mask", default="0,0.5,0.75", help="comma-separated mask ratios in [0, 1)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mask ratio")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per mask ratio")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    masks = [float(m) for m in args.mask.split(",") if m.strip()]
    if not masks or any(not 0.0 <= m < 1.0 for m in masks) or args.steps < 1 or args.batch < 1:
        ap.error("need --steps >= 1, --batch >= 1 and mask ratios in [0, 1)")
    if args.threads:
        torch.set_num_threads(args.threads)

    p = PRESETS[args.preset]
    images_u8, tokens = random_batch(p, args.batch, args.seed)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255.0
    loss_fn = ClipLoss()
    max_log_scale = math.log(100.0)

    results = []
    parameters = 0
    for mask in masks:
        torch.manual_seed(args.seed)
        model = build_model(p, mask).train()
        parameters = sum(t.numel() for t in model.parameters())
        opt = adamw(model, lr=5e-4 * args.batch / 256)
        times, cpu_times, last_loss = [], [], float("nan")
        for i in range(args.warmup + args.steps):
            cpu_start = time.process_time()
            start = time.perf_counter()
            images = (images_u8.permute(0, 3, 1, 2).float() - mean) / std
            image_features, text_features, logit_scale = model(images, tokens)
            loss = loss_fn(image_features, text_features, logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_log_scale)
            last_loss = loss.item()
            seconds = time.perf_counter() - start
            if i >= args.warmup:
                times.append(seconds)
                cpu_times.append(time.process_time() - cpu_start)
            print(f"open_clip mask {mask:.2f} step {i + 1}/{args.warmup + args.steps}: {seconds:.3f} s",
                  file=sys.stderr, flush=True)
        median = statistics.median(times)
        results.append({
            "mask_ratio": mask, "median_s": median, "min_s": min(times), "max_s": max(times),
            "step_times_s": times, "median_cpu_s": statistics.median(cpu_times),
            "images_per_s": args.batch / median, "last_loss": last_loss,
        })
    base = next((r["median_s"] for r in results if r["mask_ratio"] == 0.0), None)
    for r in results:
        r["speedup_vs_unmasked"] = base / r["median_s"] if base else None
    print(json.dumps({
        "peer": "open_clip", "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__, "preset": args.preset, "parameters": parameters,
        "batch": args.batch, "threads": torch.get_num_threads(), "steps": args.steps,
        "warmup": args.warmup, "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
