#!/usr/bin/env bash
# System packages that the build needs, installed once per machine; `make test`, `make demo` and
# the other build targets run this before cargo.
#
#   cmake, nasm   turbojpeg-sys builds libjpeg-turbo 3.x (with its SIMD code) from the source that
#                 ships in the crate; flipstream-imaging decodes and encodes JPEG with it
#                 (docs/imaging.md says why). Debian 12's own libturbojpeg is 2.1, older than the
#                 3.0 API that the `turbojpeg` crate binds, so it cannot be linked instead.
#   libgloo-dev   gloo's headers, for the train crate's c10d shim (data-parallel training); the
#                 gloo code itself is the copy inside libtorch, so only the headers are used.
#
# As root (CI, containers) the missing packages are installed with apt-get; otherwise this prints
# the command to run and fails. Nothing is done when the tools are already there.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
[ -f /usr/include/gloo/config.h ] || [ -n "${GLOO_INCLUDE_DIR:-}" ] || need+=(libgloo-dev)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: installing ${need[*]} with apt-get (once per machine)" >&2
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    if apt-get update -qq >"$log" 2>&1 \
        && apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
        rm -f "$log"
        exit 0
    fi
    cat "$log" >&2
    echo "setup-system: apt-get install ${need[*]} failed (log above)" >&2
    exit 1
fi

{
    echo "setup-system: the build needs these programs, which are missing: ${need[*]}"
    echo "  Debian/Ubuntu: sudo apt-get install -y ${need[*]}"
    echo "  Fedora:        sudo dnf install -y ${need[*]}"
    echo "  macOS:         brew install ${need[*]}"
} >&2
exit 1
