#!/usr/bin/env bash
# Fuzzes every parser of untrusted input with cargo-fuzz (libFuzzer) for MINUTES minutes each.
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]      default: 2 minutes, every target
#
# Needs nightly Rust for the fuzz crate only (installed with rustup if missing, with cargo-fuzz);
# the project's stable build and `make test` never build it. Seeds are made from synthetic data
# with a data-tools build of flipstream; the corpora grow under fuzz/corpus/<target>/ across runs.
# A crash stops its target and leaves the input under fuzz/artifacts/<target>/: make it a
# regression test of the crate it is about, fix it, and run again. The table of what ran (inputs
# executed, corpus size, crashes) is printed at the end and written to fuzz/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-2}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(tar_source parquet_source text_list caption image url_guard records ingest_config)
fi
secs=$((minutes * 60))

scripts/setup-system.sh
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi

# Seeds: a few valid inputs of each kind, so the fuzzer starts from the formats' structure.
flipstream=target/release/flipstream
[ -x "$flipstream" ] || flipstream=target/debug/flipstream
if [ ! -x "$flipstream" ]; then
    cargo build --release --bin flipstream --no-default-features
    flipstream=target/release/flipstream
fi
seeds=fuzz/seeds
if [ ! -d "$seeds" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    for t in tar_source parquet_source text_list caption image url_guard records ingest_config; do
        mkdir -p "$seeds/$t"
    done
    "$flipstream" -q synth --out "$work/wds" --layout webdataset --count 6 --shard-size 3 --seed 1
    cp "$work"/wds/*.tar "$seeds/tar_source/"
    "$flipstream" -q synth --out "$work/pq" --layout parquet --count 6 --seed 2
    cp "$work"/pq/*.parquet "$seeds/parquet_source/"
    "$flipstream" -q synth --out "$work/img" --layout folder --count 12 --seed 3
    cp "$work"/img/images/*.{jpg,png,webp,gif} "$seeds/image/" 2>/dev/null || true
    head -c 2000 "$work/wds/synth.jsonl" | split -l 1 - "$seeds/caption/line-"
    printf '\000url,caption\nhttp://example.com/a.jpg,a red circle\n' >"$seeds/text_list/csv"
    printf '\001url\tcaption\nhttp://example.com/a.jpg\ta red circle\n' >"$seeds/text_list/tsv"
    printf '\002{"url": "http://example.com/a.jpg", "caption": "a cat"}\n' >"$seeds/text_list/jsonl"
    printf '\003[{"url": "https://example.com/b.png", "text": "a dog"}]' >"$seeds/text_list/json"
    for u in http://example.com/a.jpg https://1.2.3.4:8080/x?y=z 'http://[2001:db8::1]/p' \
        http://169.254.169.254/latest/meta-data/ http://0x7f.1/ 'https://user:pw@host/%2e%2e/'; do
        printf '%s' "$u" >"$seeds/url_guard/$(printf '%s' "$u" | md5sum | cut -c1-8)"
    done
    "$flipstream" -q ingest "$work/wds" --out "$work/ds" --size 32
    { printf '\000'; cat "$work/ds/_flipstream/manifest.json"; } >"$seeds/records/manifest"
    for c in "$work"/ds/_flipstream/commits/*.json; do
        { printf '\001'; cat "$c"; } >"$seeds/records/commit-$(basename "$c")"
    done
    for s in "$work"/ds/shards/*.parquet; do
        { printf '\002'; cat "$s"; } >"$seeds/records/shard-$(basename "$s")"
    done
    "$flipstream" ingest "$work/wds" --out "$work/ds2" --print-config >"$seeds/ingest_config/default.toml"
fi

report=fuzz/last-run.md
{
    echo "| target | seconds | inputs executed | corpus | crashes |"
    echo "|---|---|---|---|---|"
} >"$report"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="$(mktemp)"
    echo "== $t: $secs s" >&2
    if cargo +nightly fuzz run --fuzz-dir fuzz -s none "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
        >"$log" 2>&1; then
        crashes=0
    else
        crashes=1
        failed=1
        tail -40 "$log" >&2
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    corpus="$(find "fuzz/corpus/$t" -type f | wc -l)"
    echo "| $t | $secs | $execs | $corpus | $crashes |" >>"$report"
    rm -f "$log"
done
cat "$report"
exit "$failed"
