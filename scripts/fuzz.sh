#!/bin/sh
# Run every cargo-fuzz target for a fixed time each (default 60 s).
#
#   scripts/fuzz.sh [-t SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the
# first run builds the targets (`-O`, the same build as `cargo fuzz build -O`,
# so a prior build is reused). New inputs go to fuzz/corpus-run/<target>/ (not
# committed); the seeds in fuzz/corpus/<target>/ are read, never written. A
# crash is saved under fuzz/artifacts/<target>/ and stops the script with a
# non-zero status: add the input to fuzz/corpus/<target>/ with the fix, so
# tests/fuzz_corpus.rs replays it from then on.
set -eu

secs=60
while getopts t:h opt; do
    case $opt in
        t) secs=$OPTARG ;;
        h) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))

cd "$(dirname "$0")/../fuzz"
targets=${*:-"bundle_reader tar_entries reference policy registries_d"}
for t in $targets; do
    mkdir -p "corpus-run/$t"
    echo "== $t: ${secs} s"
    cargo +nightly fuzz run -O "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=20
done
