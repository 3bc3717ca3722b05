#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine it first installs what the
# build and the tests need (scripts/install-deps.sh: only missing packages, apt
# only then; root needed only when something is missing), then runs the whole
# suite exactly as CI does. Extra arguments go to `cargo test` (a test file, a
# filter): scripts/test.sh --test load
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"

printf '\n==> %s\n' "cargo test --release --locked $*"
exec cargo test --release --locked "$@"
