#!/usr/bin/env bash
# Install what u7s-bundle's build, tests and demo need on Debian (bookworm):
# apt packages (only those missing; apt-get update only then) and a check that
# the Rust toolchain is recent enough. Used by .ci/run and scripts/demo.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

RUST_MIN=1.85 # Cargo.toml rust-version

# Build: C toolchain and linker (ring, zstd-sys, liblzma-sys), nettle + bindgen
# (sequoia's crypto-nettle backend). Tests: docker-registry, skopeo, gnupg,
# python3 (fixture generator), zstd (zstd fixtures), xz-utils, openssl (a
# throwaway CA for the TLS registry tests), apache2-utils (htpasswd, for the
# basic-auth registry tests), podman + uidmap + iproute2 (the cluster's view:
# tests/common/host.rs pulls with podman inside a network namespace),
# nginx-light (sigstore.local as `services` configures it, in tests/nodes.rs),
# rpm (rpmbuild: packaging/rpm/build.sh, tests/rpm.rs), binutils (objdump:
# scripts/check-release.sh).
PACKAGES=(
    docker-registry skopeo gnupg
    nettle-dev pkg-config libclang-dev gcc libc6-dev
    python3 xz-utils zstd ca-certificates openssl apache2-utils
    podman uidmap iproute2 nginx-light
    rpm binutils
)

log() { printf '\n==> %s\n' "$*"; }

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
        missing+=("$p")
    fi
done

# Rust: the machine's rustup toolchain (cargo on PATH or in ~/.cargo/bin), at
# least RUST_MIN. Debian's own rustc (1.63 in bookworm) is too old, and there is
# nothing to download a toolchain from, so a missing one is a clear failure.
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
rust_ok() {
    local v
    command -v cargo >/dev/null && command -v rustc >/dev/null || return 1
    v=$(rustc --version | awk '{print $2}')
    [[ $(printf '%s\n%s\n' "$RUST_MIN" "${v%%-*}" | sort -V | head -n1) == "$RUST_MIN" ]]
}
if ! rust_ok; then
    echo "error: Rust >= $RUST_MIN (cargo, rustc) is required; install it with rustup" >&2
    exit 1
fi

if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
    log "apt-get install ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
fi

