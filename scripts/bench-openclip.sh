#!/usr/bin/env bash
# The open_clip peer of `flipstream bench train-step`: runs bench/openclip_step.py in a cached venv
# with the versions pinned in bench/requirements-openclip.txt (torch 2.11.0, open-clip-torch 3.3.0).
#
#   scripts/bench-openclip.sh --preset small --batch 32 --mask 0,0.5,0.75 --steps 5 --threads 2
#
# The venv lives in $FLIPSTREAM_CACHE/openclip-<hash of the requirements> (default
# ~/.cache/flipstream) and is made once per machine. When scripts/libtorch-env.sh has already cached
# torch 2.11.0 there, the venv reuses it through a .pth file instead of downloading a second copy.
# JSON goes to stdout, progress to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"
req="$root/bench/requirements-openclip.txt"
venv="$FLIPSTREAM_CACHE/openclip-$(sha256sum "$req" | cut -c1-12)"
torch_venv="$FLIPSTREAM_CACHE/torch-2.11.0"

if [ ! -f "$venv/.complete" ]; then
    echo "bench-openclip: installing open_clip into $venv (once per machine)" >&2
    rm -rf "$venv"
    mkdir -p "$FLIPSTREAM_CACHE"
    python3 -m venv "$venv"
    if [ "$("$torch_venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "2.11.0" ]; then
        torch_site="$("$torch_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        own_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        echo "$torch_site" > "$own_site/zz-flipstream-torch.pth"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" \
        || { echo "bench-openclip: installing the requirements failed" >&2; exit 1; }
    touch "$venv/.complete"
fi
exec "$venv/bin/python" "$root/bench/openclip_step.py" "$@"
