# shellcheck shell=bash
# Source this file: it makes libtorch (PyTorch 2.11.0, the version tch 0.24 is built for) available
# to cargo, installing it once per machine if needed.
#
# Order of preference:
#   1. LIBTORCH is set            → used as is (a libtorch folder of your own).
#   2. VIRTUAL_ENV is active and its python has torch 2.11.0 → used via LIBTORCH_USE_PYTORCH=1.
#   3. otherwise a cached venv    → $FLIPSTREAM_CACHE/torch-2.11.0 (default ~/.cache/flipstream),
#                                   created with `pip install torch==2.11.0` on first use (~1 min,
#                                   ~4.6 GB; no pip download cache is kept beside it), then used via
#                                   LIBTORCH_USE_PYTORCH=1. With a CUDA torch,
#                                   two header wheels (nvidia-cuda-crt, -cccl) for the NCCL shim.
# The binaries get libtorch's folder as an rpath (see build.rs), so they run without this file.

FLIPSTREAM_TORCH_VERSION=2.11.0
: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"
export FLIPSTREAM_CACHE

_fs_torch_version() { "$1" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null; }

if [ -n "${LIBTORCH:-}" ]; then
    echo "libtorch: using LIBTORCH=$LIBTORCH" >&2
elif [ -n "${VIRTUAL_ENV:-}" ] && [ "$(_fs_torch_version "$VIRTUAL_ENV/bin/python")" = "$FLIPSTREAM_TORCH_VERSION" ]; then
    export LIBTORCH_USE_PYTORCH=1
    echo "libtorch: using torch from the active venv $VIRTUAL_ENV" >&2
else
    _fs_venv="$FLIPSTREAM_CACHE/torch-$FLIPSTREAM_TORCH_VERSION"
    if [ "$(_fs_torch_version "$_fs_venv/bin/python")" != "$FLIPSTREAM_TORCH_VERSION" ]; then
        echo "libtorch: installing torch==$FLIPSTREAM_TORCH_VERSION into $_fs_venv (once per machine)" >&2
        mkdir -p "$FLIPSTREAM_CACHE"
        python3 -m venv "$_fs_venv" \
            && "$_fs_venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "torch==$FLIPSTREAM_TORCH_VERSION" \
            || { echo "libtorch: installing torch failed; set LIBTORCH or activate a venv with torch $FLIPSTREAM_TORCH_VERSION" >&2; return 1 2>/dev/null || exit 1; }
    fi
    # The CUDA headers that the c10d shim needs to compile NCCL in (train/build.rs); a CUDA torch
    # ships NCCL's headers and most of CUDA's but not these two header-only wheels.
    _fs_site="$("$_fs_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if [ -f "$_fs_site/torch/lib/libtorch_cuda.so" ] && [ ! -f "$_fs_site/nvidia/cu13/include/crt/host_config.h" ]; then
        echo "libtorch: installing the CUDA header wheels for NCCL (once per machine)" >&2
        "$_fs_venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" \
            || echo "libtorch: the CUDA header wheels did not install; distributed training will offer Gloo only" >&2
    fi
    export VIRTUAL_ENV="$_fs_venv"
    export PATH="$_fs_venv/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
    unset _fs_venv _fs_site
fi
unset -f _fs_torch_version
