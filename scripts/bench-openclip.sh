#!/usr/bin/env bash
# The open_clip peer of `flipstream bench train-step`: runs bench/openclip_step.py in the cached venv
# of scripts/modeltools-env.sh (versions pinned in scripts/requirements-models.txt: torch 2.11.0,
# open-clip-torch 3.3.0).
#
#   scripts/bench-openclip.sh --preset small --batch 32 --mask 0,0.5,0.75 --steps 5 --threads 2
#
# JSON goes to stdout, progress to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/modeltools-env.sh
source "$root/scripts/modeltools-env.sh"
exec "$FLIPSTREAM_MODEL_PYTHON" "$root/bench/openclip_step.py" "$@"
