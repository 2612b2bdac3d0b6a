#!/usr/bin/env bash
# Renders a stats report.html in a real headless Chromium and saves a screenshot, to check by eye
# that the page and its SVG charts read well. Optional and manual: not part of `make test`.
#
#   scripts/check-report-html.sh REPORT_DIR_OR_HTML [OUT.png] [WIDTHxHEIGHT]
#
# Installs Debian's `chromium` package with apt-get when no chromium is on PATH (needs root).
# The page must render with networking disabled: it is self-contained (inline CSS and SVG,
# thumbnails as data URLs, no scripts).
set -euo pipefail

target="${1:?usage: $0 REPORT_DIR_OR_HTML [OUT.png] [WIDTHxHEIGHT]}"
[ -d "$target" ] && target="$target/report.html"
[ -f "$target" ] || { echo "no such report: $target" >&2; exit 2; }
out="${2:-${target%.html}.png}"
size="${3:-1400x3000}"

browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "check-report-html: installing chromium (apt-get)" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is missing and installing it needs root: sudo apt-get install chromium" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    browser="$(command -v chromium)"
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
abs="$(cd "$(dirname "$target")" && pwd)/$(basename "$target")"
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --screenshot="$out" --window-size="${size/x/,}" "file://$abs" 2>/dev/null
[ -s "$out" ] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
