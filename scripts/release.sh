#!/usr/bin/env bash
# Portable release binaries: dist/u7s-bundle-<version>-<arch> and its .sha256,
# for x86_64 and aarch64, running on glibc 2.17 or newer (ALT p10 and the
# certified c10f ship 2.32; a plain `cargo build` on Debian bookworm needs 2.34).
#
# How: cargo-zigbuild links against zig's glibc 2.17 symbol stubs
# (`<arch>-unknown-linux-gnu.2.17`), and the one C library with a choice —
# nettle, sequoia-openpgp's constant-time crypto backend, with hogweed and gmp —
# is linked statically from Debian's own .a files, so the binary needs nothing
# beyond libc, libm, libpthread, libdl and the dynamic loader. The build has a
# target directory of its own (target/release-217) and runs niced: it takes
# about 11 minutes of CPU on 2 cores.
#
# Needs: zig 0.14.1 (`pip install ziglang==0.14.1`, run as `python3 -m ziglang`;
# 0.13's glibc stubs give environ and stderr one address, so the copy
# relocation of stderr that Debian's non-PIC libgmp.a needs made environ an
# alias of it, and nettle's constructor crashed in getenv at startup),
# cargo-zigbuild (`cargo install --locked cargo-zigbuild`), the Rust std of each
# target (`rustup target add aarch64-unknown-linux-gnu`), Debian's nettle-dev and
# libgmp-dev for that architecture (their .a files and headers), libclang-dev.
# An architecture that lacks its Rust std or its static libraries is skipped
# with a message saying what is missing; the script fails only if none is built.
#
# Usage: scripts/release.sh [--arch x86_64|aarch64]...   (default: both)
# Then: scripts/check-release.sh dist/u7s-bundle-<version>-x86_64
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"

GLIBC=2.17
arches=()
while (($#)); do
    case $1 in
    --arch) arches+=("$2"); shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
((${#arches[@]})) || arches=(x86_64 aarch64)

log() { printf '\n==> %s\n' "$*"; }
die() { echo "release.sh: $*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || die "no version in Cargo.toml"

ZIG_VERSION=0.14.1
zig=$(python3 -m ziglang version 2>/dev/null) || die "zig is missing: pip install ziglang==$ZIG_VERSION"
[[ $zig == "$ZIG_VERSION" ]] || die "zig $zig found, $ZIG_VERSION needed: pip install ziglang==$ZIG_VERSION"
command -v cargo-zigbuild >/dev/null ||
    die "cargo-zigbuild is missing: cargo install --locked cargo-zigbuild"

# What an architecture lacks, empty when it can be built.
missing_for() {
    local arch=$1 multiarch=$1-linux-gnu lib
    rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-gnu" ||
        { echo "the Rust std for $arch-unknown-linux-gnu (rustup target add $arch-unknown-linux-gnu)"; return; }
    for lib in nettle hogweed gmp; do
        [[ -f /usr/lib/$multiarch/lib$lib.a ]] ||
            { echo "/usr/lib/$multiarch/lib$lib.a (Debian's nettle-dev and libgmp-dev for $arch)"; return; }
    done
}

# A pkg-config directory that offers only the static nettle, hogweed and gmp of
# one architecture: pkg-config-rs links statically only from a directory outside
# /usr, and nothing else (liblzma, zstd) is found there, so those stay bundled.
static_pkgconfig() {
    local arch=$1 dir=$2 lib
    rm -rf "$dir" && mkdir -p "$dir"
    for lib in nettle hogweed gmp; do
        cp "/usr/lib/$arch-linux-gnu/lib$lib.a" "$dir/"
        printf 'Name: %s\nDescription: static %s for the portable build\nVersion: 0\nLibs: -L%s -l%s\nCflags:\n' \
            "$lib" "$lib" "$dir" "$lib" >"$dir/$lib.pc"
    done
}

build_arch() {
    local arch=$1 triple=$1-unknown-linux-gnu
    local tdir=$root/target/release-217 pc=$root/target/release-217/static-$1
    static_pkgconfig "$arch" "$pc"
    log "cargo zigbuild --release --locked --target $triple.$GLIBC (nice -n 15)"
    # nettle-sys: headers come from /usr/include after zig's glibc headers
    # (zigbuild adds -nostdinc for bindgen); its two feature probes would
    # compile a test program with zig cc, which does not see /usr/include, so
    # they are answered here from the headers (Debian 12's nettle 3.8 has
    # Curve448, OCB came with 3.9).
    local cv448=0 ocb=0
    [[ -f /usr/include/nettle/curve448.h ]] && cv448=1
    [[ -f /usr/include/nettle/ocb.h ]] && ocb=1
    env CARGO_TARGET_DIR="$tdir" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
        PKG_CONFIG_LIBDIR="$pc" PKG_CONFIG_PATH= PKG_CONFIG_ALL_STATIC=1 PKG_CONFIG_ALLOW_CROSS=1 \
        NETTLE_HAVE_CV448=$cv448 NETTLE_HAVE_OCB=$ocb LZMA_API_STATIC=1 \
        BINDGEN_EXTRA_CLANG_ARGS="-idirafter /usr/include -idirafter /usr/include/$arch-linux-gnu" \
        nice -n 15 cargo zigbuild --release --locked --target "$triple.$GLIBC"
    local out=dist/u7s-bundle-$version-$arch
    mkdir -p dist
    # The line tables stay in target/; the shipped binary keeps its symbols
    # (a panic's backtrace still names functions) but not the debug info.
    strip --strip-debug -o "$out" "$tdir/$triple/release/u7s-bundle" 2>/dev/null ||
        cp "$tdir/$triple/release/u7s-bundle" "$out"
    (cd dist && sha256sum "${out#dist/}" >"${out#dist/}.sha256")
    log "$out ($(du -h "$out" | cut -f1)), $(cut -d' ' -f1 "$out.sha256")"
}

built=0
for arch in "${arches[@]}"; do
    case $arch in x86_64 | aarch64) ;; *) die "unknown architecture: $arch" ;; esac
    why=$(missing_for "$arch")
    if [[ -n $why ]]; then
        echo "release.sh: skipping $arch: missing $why" >&2
        continue
    fi
    build_arch "$arch"
    built=$((built + 1))
done
((built)) || die "nothing was built"
