# shellcheck shell=bash
# Source this file: it provides FLIPSTREAM_PYTHON, a cached venv with the Python tools that the
# tests use as independent readers and real servers (pyarrow, DuckDB, webdataset, Pillow, moto).
# Installed once per machine from scripts/requirements-tools.txt; re-installed when that changes.

: "${FLIPSTREAM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/flipstream}"
export FLIPSTREAM_CACHE
_fs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_fs_req="$_fs_root/scripts/requirements-tools.txt"
_fs_hash="$(sha256sum "$_fs_req" | cut -c1-12)"
_fs_venv="$FLIPSTREAM_CACHE/pytools-$_fs_hash"
if [ ! -x "$_fs_venv/bin/python" ] || [ ! -f "$_fs_venv/.complete" ]; then
    echo "pytools: installing test tools into $_fs_venv (once per machine)" >&2
    rm -rf "$_fs_venv"
    mkdir -p "$FLIPSTREAM_CACHE"
    python3 -m venv "$_fs_venv" \
        && "$_fs_venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r "$_fs_req" \
        && touch "$_fs_venv/.complete" \
        || { echo "pytools: installing test tools failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export FLIPSTREAM_PYTHON="$_fs_venv/bin/python"
unset _fs_root _fs_req _fs_hash _fs_venv
