#!/usr/bin/env bash
# One prepared measurement run for a lent GPU machine (../shared/gpu.md): the binary is built
# elsewhere and carried in .device/, the machine's own PyTorch 2.11 provides libtorch.
#
#   1. bench train-step: ViT-B/16 (preset b16), bf16, images/s and MFU at mask 0 / 0.5 / 0.75;
#   2. the real loader: synthetic pairs → ingest at the preset's resolution → `train` for a few
#      dozen steps, reporting images/s and the share of step time spent waiting for data;
#   3. with two or more GPUs: the same training run on 2 ranks (NCCL) and bench train-step
#      --nproc 2 (time in collectives).
#
# Results (JSON and the logs) go to $OUT (default ./gpu-check-out). Every setting can be changed
# from the environment, so the whole script can be tried on the CPU first:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESET=tiny GPU_CHECK_PRECISION=fp32 GPU_CHECK_BATCH=32 \
#   GPU_CHECK_PAIRS=600 GPU_CHECK_SIZE=64 GPU_CHECK_STEPS=3 GPU_CHECK_TRAIN_STEPS=6 \
#   scripts/gpu-check.sh target/release/flipstream
set -euo pipefail

BIN="${1:-.device/flipstream}"
OUT="${OUT:-./gpu-check-out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PRESET="${GPU_CHECK_PRESET:-b16}"
PRECISION="${GPU_CHECK_PRECISION:-bf16}"
BATCH="${GPU_CHECK_BATCH:-256}"
STEPS="${GPU_CHECK_STEPS:-10}"
PAIRS="${GPU_CHECK_PAIRS:-20000}"
SIZE="${GPU_CHECK_SIZE:-224}"
TRAIN_STEPS="${GPU_CHECK_TRAIN_STEPS:-60}"
mkdir -p "$OUT"
log() { echo "gpu-check: $*" | tee -a "$OUT/gpu-check.log" >&2; }

if [ "$DEVICE" != cpu ]; then
    # The machine's PyTorch holds libtorch (the binary's rpath points at the build machine's).
    TL="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib"
    export LD_LIBRARY_PATH="$TL:${LD_LIBRARY_PATH:-}"
    nvidia-smi -L | tee "$OUT/devices.txt"
    GPUS=$(nvidia-smi -L | grep -c '^GPU')
    NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
    # Dense bf16 peak of one H100 SXM / H200 (989 TFLOP/s); unknown cards get no MFU.
    case "$NAME" in
        *H100* | *H200*) PEAK=989 ;;
        *) PEAK="" ;;
    esac
else
    GPUS=0
    NAME=cpu
    PEAK=""
fi
PEAK_ARG=()
[ -n "$PEAK" ] && PEAK_ARG=(--peak-tflops "$PEAK")
log "device $DEVICE ($NAME), $GPUS GPU(s), preset $PRESET, $PRECISION, batch $BATCH"

log "1. train-step benchmark"
"$BIN" --json bench train-step --preset "$PRESET" --precision "$PRECISION" --device "$DEVICE" \
    --batch "$BATCH" --mask 0,0.5,0.75 --steps "$STEPS" --warmup 3 "${PEAK_ARG[@]}" \
    >"$OUT/train-step.json" 2>>"$OUT/gpu-check.log"
"$BIN" bench train-step --preset "$PRESET" --precision "$PRECISION" --device "$DEVICE" \
    --batch "$BATCH" --mask 0.5 --steps 2 --warmup 1 "${PEAK_ARG[@]}" --quiet | tee -a "$OUT/gpu-check.log"

log "2. the real loader: $PAIRS synthetic pairs at $SIZE px, $TRAIN_STEPS training steps"
DATA="$OUT/work"
rm -rf "$DATA"
"$BIN" --quiet synth --out "$DATA/raw" --count "$PAIRS" --seed 0 --layout webdataset \
    --shard-size 2000 --object-sizes large=1
"$BIN" --quiet ingest "$DATA/raw" --out "$DATA/dataset" --size "$SIZE" --resize-mode border
rm -rf "$DATA/raw"
train() {
    "$BIN" --json train "$DATA/dataset" --preset "$PRESET" --precision "$PRECISION" \
        --device "$DEVICE" --batch-size "$BATCH" --steps "$TRAIN_STEPS" --warmup 5 \
        --all-data --eval-every 0 --checkpoint-every 0 "$@"
}
train --run "$DATA/run-1" >"$OUT/train-1.json" 2>>"$OUT/gpu-check.log"
python3 - "$OUT/train-1.json" <<'EOF' | tee -a "$OUT/gpu-check.log"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"train, 1 rank: {s['images_per_s']:.1f} images/s, data wait {100 * s['data_wait_share']:.1f} % of step time")
EOF

if [ "$GPUS" -ge 2 ]; then
    log "3. two ranks (NCCL)"
    train --run "$DATA/run-2" --nproc 2 >"$OUT/train-2.json" 2>>"$OUT/gpu-check.log"
    "$BIN" --json bench train-step --preset "$PRESET" --precision "$PRECISION" --device "$DEVICE" \
        --batch "$BATCH" --mask 0.5 --steps "$STEPS" --warmup 3 --nproc 2 "${PEAK_ARG[@]}" \
        >"$OUT/train-step-2.json" 2>>"$OUT/gpu-check.log"
else
    log "3. skipped: one GPU"
fi
rm -rf "$DATA"
log "done: results in $OUT"
