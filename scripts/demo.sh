#!/usr/bin/env bash
# The whole job, end to end, on this machine: two loopback registries stand in
# for registry.altlinux.org (the connected side) and registry.local (the
# isolated side). Fixture images named as the c10f v1.26.9 set are generated and
# seeded; then, exactly as an administrator would:
#
#   keygen (builder + imagemaker) → build (signed) → verify → inspect
#   → load (push, sign, policy.json, registries.d) → skopeo pulls every image
#     with the written policy, as CRI-O would.
#
# Everything lives under .demo/ (trust files included; nothing in /etc is
# touched). Usage: scripts/demo.sh [--keep] [--binary PATH]
#   --keep         leave the registries up
#   --binary PATH  run this u7s-bundle instead of building one (the release
#                  binary, as scripts/check-release.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
keep= ub=
while (($#)); do
    case $1 in
    --keep) keep=--keep; shift ;;
    --binary) ub=$(realpath "$2"); shift 2 ;;
    *) echo "demo.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "installing build and test dependencies (apt, only what is missing)"
scripts/install-deps.sh
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"

if [[ -z $ub ]]; then
    step "building u7s-bundle (release)"
    cargo build --release --locked
    ub=$root/target/release/u7s-bundle
fi
step "using $ub ($("$ub" --version))"

cleanup() {
    if [[ $keep != --keep ]]; then
        scripts/registry.sh stop "$demo/source" >/dev/null 2>&1 || true
        scripts/registry.sh stop "$demo/target" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
scripts/registry.sh stop "$demo/source" >/dev/null 2>&1 || true
scripts/registry.sh stop "$demo/target" >/dev/null 2>&1 || true
rm -rf "$demo"
mkdir -p "$demo"

step "starting two loopback registries"
src=$(scripts/registry.sh start "$demo/source")
dst=$(scripts/registry.sh start "$demo/target")
echo "source (stands in for registry.altlinux.org): $src"
echo "target (stands in for registry.local):        $dst"

step "u7s-bundle plan: the c10f v1.26.9 image set"
"$ub" plan --platform k8s-c10f2 --kube-version v1.26.9 --arch amd64 --source "$src"
mapfile -t names < <("$ub" plan --platform k8s-c10f2 --kube-version v1.26.9 --arch amd64 --json |
    python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)["images"]]')

step "seeding fixture images (multi-arch amd64+arm64, gzip layers) with skopeo"
python3 tests/fixtures/make_images.py --out "$demo/fixtures" --seed "$src" --size-kib 2048 "${names[@]}"

step "u7s-bundle keygen: the builder's key (signs bundles) and the imagemaker's (signs images)"
"$ub" keygen --uid 'Image Builder <builder@example.org>' --output "$demo/keys/builder"
"$ub" keygen --uid 'Image Maker <imagemaker@example.org>' --output "$demo/keys/imagemaker"

step "u7s-bundle build (connected side)"
"$ub" build --platform k8s-c10f2 --kube-version v1.26.9 --arch amd64 \
    --source "$src" --plain-http --sign-key "$demo/keys/builder.key" \
    --output "$demo/bundles" --cache-dir "$demo/cache"
archive=$demo/bundles/c10f-v1.26.9-amd64.u7s.tar.xz

step "u7s-bundle verify and inspect (isolated side, offline)"
"$ub" verify "$archive" --keyring "$demo/keys/builder.pgp"
"$ub" inspect "$archive"

step "u7s-bundle load: verify, push, sign, write policy.json / registries.d / lookaside"
trust=(--sigstore-dir "$demo/sigstore" --keys-dir "$demo/trust/keys"
    --policy "$demo/trust/policy.json" --registries-d "$demo/trust/registries.d"
    --lookaside-url "file://$demo/sigstore")
"$ub" load "$archive" --registry "$dst" --plain-http \
    --keyring "$demo/keys/builder.pgp" --sign-key "$demo/keys/imagemaker.key" "${trust[@]}"

step "the cluster's view: skopeo pulls every image with the written policy (signatures enforced)"
for n in "${names[@]}"; do
    for name in "$n" "${n/#c10f\//k8s-c10f2/}"; do
        skopeo --policy "$demo/trust/policy.json" --registries.d "$demo/trust/registries.d" \
            copy -q --src-tls-verify=false "docker://$dst/$name" "dir:$demo/pulled" >/dev/null
        rm -rf "$demo/pulled"
        echo "accepted: $dst/$name"
    done
done

step "and refuses an image whose signature is gone"
victim=${names[0]}
digest=$(skopeo inspect --raw --tls-verify=false "docker://$dst/$victim" | sha256sum | cut -d' ' -f1)
sigdir="$demo/sigstore/${victim%%:*}@sha256=$digest"
mv "$sigdir" "$sigdir.moved"
if skopeo --policy "$demo/trust/policy.json" --registries.d "$demo/trust/registries.d" \
    copy -q --src-tls-verify=false "docker://$dst/$victim" "dir:$demo/pulled" 2>/dev/null; then
    echo "ERROR: an unsigned image was accepted" >&2
    exit 1
fi
echo "refused: $dst/$victim (no signature)"
mv "$sigdir.moved" "$sigdir"

step "a second load is idempotent: nothing uploaded, no new signatures"
"$ub" load "$archive" --registry "$dst" --plain-http \
    --keyring "$demo/keys/builder.pgp" --sign-key "$demo/keys/imagemaker.key" "${trust[@]}"

step "done: everything is under .demo/ (policy: .demo/trust/policy.json)"
