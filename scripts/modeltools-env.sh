# shellcheck shell=bash
# Source this file: it provides FLIPSTREAM_MODEL_PYTHON, a cached venv with the model libraries
# people load flipstream's exports with (open_clip, transformers; scripts/requirements-models.txt).
# The export test and scripts/bench-openclip.sh use it; flipstream itself never does.
#
# The venv lives in $FLIPSTREAM_CACHE/models-<hash of the requirements> (default ~/.cache/flipstream)
# and is made once per machine. When scripts/libtorch-env.sh has already cached torch 2.11.0 there,
# the venv reuses it through a .pth file instead of downloading a second copy.

: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"
export FLIPSTREAM_CACHE
_fs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_fs_req="$_fs_root/scripts/requirements-models.txt"
_fs_venv="$FLIPSTREAM_CACHE/models-$(sha256sum "$_fs_req" | cut -c1-12)"
_fs_torch="$FLIPSTREAM_CACHE/torch-2.11.0"
if [ ! -f "$_fs_venv/.complete" ]; then
    echo "modeltools: installing open_clip and transformers into $_fs_venv (once per machine)" >&2
    rm -rf "$_fs_venv"
    mkdir -p "$FLIPSTREAM_CACHE"
    if python3 -m venv "$_fs_venv"; then
        if [ "$("$_fs_torch/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "2.11.0" ]; then
            _fs_site="$("$_fs_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
            "$_fs_torch/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
                > "$_fs_site/zz-flipstream-torch.pth"
        fi
        "$_fs_venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$_fs_req" \
            && touch "$_fs_venv/.complete"
    fi
    if [ ! -f "$_fs_venv/.complete" ]; then
        echo "modeltools: installing the requirements failed" >&2
        unset _fs_root _fs_req _fs_venv _fs_torch _fs_site
        return 1 2>/dev/null || exit 1
    fi
fi
export FLIPSTREAM_MODEL_PYTHON="$_fs_venv/bin/python"
unset _fs_root _fs_req _fs_venv _fs_torch _fs_site
