#!/usr/bin/env bash
# Build the binary RPM of u7s-bundle from a portable release binary with
# `rpmbuild -bb` (Debian's `rpm` package has it): stages the Source0 tarball
# packaging/rpm/u7s-bundle.spec expects (the binary, README.md, docs/en,
# docs/ru) in a private %_topdir and prints the path of the .rpm written.
#
# Usage: packaging/rpm/build.sh [--binary PATH] [--out DIR]
#   --binary  the u7s-bundle to package (default: dist/u7s-bundle-<version>-<arch>
#             for this machine's arch, as scripts/release.sh writes it)
#   --out     where the .rpm goes (default: dist/)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
spec=$root/packaging/rpm/u7s-bundle.spec
version=$(sed -n 's/^Version: *//p' "$spec")
arch=$(uname -m)
bin=$root/dist/u7s-bundle-$version-$arch
out=$root/dist
while (($#)); do
    case $1 in
    --binary) bin=$(realpath "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ -x $bin ]] || { echo "build.sh: no binary at $bin (run scripts/release.sh, or give --binary)" >&2; exit 1; }
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ $cargo_version == "$version" ]] ||
    { echo "build.sh: the spec says $version, Cargo.toml $cargo_version" >&2; exit 1; }

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,stage/u7s-bundle-$version/docs}
src=$top/stage/u7s-bundle-$version
install -m0755 "$bin" "$src/u7s-bundle"
cp README.md "$src/"
cp -r docs/en docs/ru "$src/docs/"
tar -C "$top/stage" -cf "$top/SOURCES/u7s-bundle-$version.tar" "u7s-bundle-$version"

rpmbuild -bb --quiet --define "_topdir $top" --target "$arch" "$spec" >&2
mkdir -p "$out"
for rpm in "$top"/RPMS/*/*.rpm; do
    cp "$rpm" "$out/"
    echo "$out/$(basename "$rpm")"
done
