"""Creates a small open_clip model with open_clip's own constructor and random (seeded) weights,
and saves it as an open_clip `local-dir:` folder, for tests/export_cli.rs (`train --init`).

    make_open_clip_model.py --out DIR --tokenizer-from DIR [--quick-gelu]

The tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) are copied from
--tokenizer-from (a `flipstream export --format open_clip` folder); the text tower's vocabulary,
context length and end id follow its open_clip_config.json, the rest of the architecture is this
script's own (different widths and depths, ln_pre, learned positions, the CLS token).
"""

import argparse
import json
import os
import shutil

import open_clip
import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-from", required=True)
    ap.add_argument("--quick-gelu", action="store_true")
    args = ap.parse_args()

    with open(os.path.join(args.tokenizer_from, "open_clip_config.json")) as f:
        text_from = json.load(f)["model_cfg"]["text_cfg"]
    model_cfg = {
        "embed_dim": 48,
        "quick_gelu": args.quick_gelu,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 8,
            "width": 96,
            "layers": 3,
            "head_width": 32,
            "mlp_ratio": 2.0,
        },
        "text_cfg": {
            "context_length": text_from["context_length"],
            "vocab_size": text_from["vocab_size"],
            "width": 64,
            "heads": 4,
            "layers": 2,
            "pool_type": "eos",
            "eos_id": text_from["eos_id"],
            "pad_id": text_from["pad_id"],
            "hf_tokenizer_name": os.path.abspath(args.out),
        },
    }
    torch.manual_seed(7)
    model = open_clip.CLIP(**model_cfg)
    # open_clip initialises some tensors to constants (zeros, ones); random values everywhere make
    # a wrong mapping visible
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    os.makedirs(args.out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, "open_clip_model.safetensors"))
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
        },
    }
    with open(os.path.join(args.out, "open_clip_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(args.tokenizer_from, name), os.path.join(args.out, name))
    print(json.dumps({"tensors": len(state)}))


if __name__ == "__main__":
    main()
