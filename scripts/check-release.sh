#!/usr/bin/env bash
# Check a portable release binary (scripts/release.sh) before it ships:
#   1. its highest GLIBC_ symbol version (objdump -T) is at most 2.17, so it
#      starts on ALT p10 / c10f (glibc 2.32) and anything since CentOS 7;
#   2. its dynamic dependencies (objdump -p, NEEDED) are only glibc's own
#      libraries: libc, libm, libpthread, libdl, librt and the dynamic loader;
#   3. it does the real job: scripts/demo.sh --binary runs keygen, build,
#      verify, load against two loopback registries with it, and skopeo pulls
#      every image with the policy it wrote (and refuses an unsigned one).
# Checks 1 and 2 need only binutils; with --no-demo the demo is skipped (an
# aarch64 binary cannot run here).
#
# Usage: scripts/check-release.sh [--no-demo] dist/u7s-bundle-<version>-<arch>
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_GLIBC=2.17
demo=1
if [[ ${1:-} == --no-demo ]]; then demo=0; shift; fi
bin=${1:?usage: scripts/check-release.sh [--no-demo] BINARY}
[[ -x $bin ]] || { echo "check-release.sh: $bin is not an executable file" >&2; exit 1; }
bin=$(realpath "$bin")
fail=0

# 1. The newest glibc symbol version the binary asks for.
highest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
[[ -n $highest ]] || { echo "FAIL: no GLIBC_ symbol versions in $bin (not a glibc binary?)" >&2; exit 1; }
if [[ $(printf '%s\n%s\n' "$highest" "$MAX_GLIBC" | sort -V | tail -n1) == "$MAX_GLIBC" ]]; then
    echo "ok: highest GLIBC_ version $highest (<= $MAX_GLIBC)"
else
    echo "FAIL: needs GLIBC_$highest, more than $MAX_GLIBC:" >&2
    objdump -T "$bin" | grep -F "GLIBC_$highest" | sed 's/^/    /' >&2
    fail=1
fi

# 2. Dynamic dependencies: glibc's libraries only.
mapfile -t needed < <(objdump -p "$bin" | awk '$1 == "NEEDED" {print $2}')
bad=()
for lib in "${needed[@]}"; do
    case $lib in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*.so.* | ld-linux.so.*) ;;
    *) bad+=("$lib") ;;
    esac
done
if ((${#bad[@]})); then
    echo "FAIL: needs libraries beyond glibc: ${bad[*]}" >&2
    fail=1
else
    echo "ok: NEEDED ${needed[*]}"
fi
((fail == 0)) || exit 1

# 3. The demo's load and skopeo check, with this binary.
if ((demo)); then
    "$bin" --version
    scripts/demo.sh --binary "$bin"
    echo "ok: $bin built, verified and loaded a bundle that skopeo accepts"
fi
