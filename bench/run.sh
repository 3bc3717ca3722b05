#!/usr/bin/env bash
# Benchmark u7s-bundle against the podsec pipeline, side by side, on the same
# images, in one run (issue 5). For each size of the set:
#
#   1. bench/make_set.py builds a kubernetes-like image set named as the c10f
#      v1.26.9 set (9 multi-arch images, amd64 + a small arm64 variant, one
#      shared base layer, an app layer each, gzip layers) from real Go binaries
#      of Debian packages (unpacked, not installed) and the machine's kubectl
#      builds; size 1 ≈ 300 MB uncompressed, size 3 ≈ 3× that;
#   2. seeds it into a loopback docker-registry (scripts/registry.sh);
#   3. podsec, with podsec's tools: save = per image `skopeo copy docker://…
#      containers-storage:…` then `skopeo copy --dest-oci-accept-uncompressed-layers
#      containers-storage:… oci:DIR/amd64:NAME`, then `tar c amd64 | xz -9`;
#      load = `xz -d | tar x`, then per image `skopeo copy --sign-by FPR oci:…
#      docker://…` with a lookaside-staging dir (what `podman push --sign-by`
#      does); reload = the same again;
#   4. u7s-bundle build --compression xz and zstd (each with an EMPTY download
#      cache), load of each into a fresh registry, and reload (same bundle again);
#   5. prints a table (archive size, wall times, peak RSS, ratios ours/podsec)
#      and writes it into docs/benchmarks.md (between the bench markers).
#
# Usage: bench/run.sh [--sizes 1,3] [--work DIR] [--no-doc] [--keep] [--report]
#   --sizes LIST   which set sizes to run (default 1,3)
#   --report       run nothing: render the table again from the results of
#                  earlier runs of these sizes in the work directory
#   --work DIR     scratch directory (default bench/.work/; several GB for size 3)
#   --no-doc       print the table only; leave docs/benchmarks.md alone
#   --keep         keep registries' data and extracted trees after the run
# Environment: U7S_BUNDLE=PATH uses that binary instead of building one with
# `cargo build --release --locked`.
#
# Installs what it needs (apt: only what is missing). Wall times are
# `/usr/bin/time -f %e`; CPU time is user+sys (%U+%S) of the step and all its
# processes; peak RSS is `%M`, i.e. the largest single process of the measured
# step (for podsec's shell pipelines: its largest tool). The 1-minute load
# average before each step is recorded: run nothing else on the machine
# meanwhile, and never two benchmark runs at once.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

sizes=1,3
work=$root/bench/.work
doc=yes
keep=no
report_only=no
while (($#)); do
    case $1 in
    --sizes) sizes=$2; shift 2 ;;
    --sizes=*) sizes=${1#*=}; shift ;;
    --work) work=$2; shift 2 ;;
    --work=*) work=${1#*=}; shift ;;
    --no-doc) doc=no; shift ;;
    --keep) keep=yes; shift ;;
    --report) report_only=yes; shift ;;
    -h | --help) sed -n '2,36s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a size_list <<<"$sizes"
for s in "${size_list[@]}"; do
    [[ $s == 1 || $s == 3 ]] || { echo "bench/run.sh: sizes are 1 and 3, not $s" >&2; exit 2; }
done

# ------------------------------------------------------------------ report
render() {
    local machine versions table=$work/table.md s
    machine="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    versions="$(cat "$work/versions" 2>/dev/null || echo unknown)"
    for s in "${size_list[@]}"; do
        [[ -f $work/run-$s/results.tsv ]] || { echo "bench/run.sh: no results for size $s in $work" >&2; exit 1; }
    done
    python3 bench/report.py --machine "$machine" --versions "$versions" \
        $(for s in "${size_list[@]}"; do echo "$s=$work/run-$s/results.tsv"; done) >"$table"
    cat "$table"
    if [[ $doc == yes ]]; then
        python3 bench/report.py --splice docs/benchmarks.md "$table"
        echo "(written into docs/benchmarks.md)" >&2
    fi
}
if [[ $report_only == yes ]]; then
    render
    exit 0
fi

log() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "bench/run.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------ dependencies
TOOLS=(docker-registry skopeo gnupg xz-utils zstd time python3 tar ca-certificates)
apt_updated=no
apt_update() { [[ $apt_updated == yes ]] || { apt-get update -q >&2; apt_updated=yes; }; }
missing=()
for p in "${TOOLS[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]}"
    log "apt-get install ${missing[*]}"
    apt_update
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >&2
fi

# The image content: Debian packages unpacked under $work/pkgs (apt-get download +
# dpkg-deb -x: nothing is installed, no service starts).
mkdir -p "$work/pkgs" "$work/debs"
read -r -a content_pkgs <<<"$(python3 bench/make_set.py --list-packages)"
for p in "${content_pkgs[@]}"; do
    [[ -f $work/pkgs/$p/.unpacked ]] && continue
    deb=$(ls "$work/debs/${p}_"*.deb 2>/dev/null | head -n1 || true)
    if [[ -z $deb ]]; then
        log "apt-get download $p"
        (cd "$work/debs" && apt-get download -q "$p" >&2) ||
            { apt_update; (cd "$work/debs" && apt-get download -q "$p" >&2); }
        deb=$(ls "$work/debs/${p}_"*.deb | head -n1)
    fi
    rm -rf "$work/pkgs/$p"
    mkdir -p "$work/pkgs/$p"
    dpkg-deb -x "$deb" "$work/pkgs/$p"
    basename "$deb" >"$work/pkgs/$p/.unpacked"
done

# ------------------------------------------------------------------ u7s-bundle
[[ -d $HOME/.cargo/bin ]] && export PATH="$HOME/.cargo/bin:$PATH"
if [[ -n ${U7S_BUNDLE:-} ]]; then
    ub=$U7S_BUNDLE
else
    log "cargo build --release --locked"
    for try in 1 2 3; do
        cargo build --release --locked >&2 && break
        ((try < 3)) || die "cargo build failed"
        echo "build failed (try $try); retrying in 60 s" >&2
        sleep 60
    done
    ub=$root/target/release/u7s-bundle
fi
ub_version=$("$ub" --version 2>/dev/null || echo u7s-bundle)
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || git_rev+="+dirty"

mapfile -t names < <("$ub" plan --platform c10f --kube-version v1.26.9 --arch amd64 --json |
    python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)["images"]]')
((${#names[@]})) || die "u7s-bundle plan gave no images"

# ------------------------------------------------------------------ keys
keys=$work/keys
if [[ ! -f $keys/.done ]]; then
    log "keys: u7s-bundle keygen (builder, imagemaker); a GnuPG key for podsec's skopeo --sign-by"
    rm -rf "$keys"
    mkdir -p "$keys/gnupg"
    chmod 700 "$keys/gnupg"
    "$ub" keygen --uid 'Bench Builder <builder@example.org>' --output "$keys/builder" >&2
    "$ub" keygen --uid 'Bench Imagemaker <imagemaker@example.org>' --output "$keys/imagemaker" >&2
    GNUPGHOME=$keys/gnupg gpg --batch --quiet --passphrase '' \
        --quick-gen-key 'Bench Imagemaker <bench@example.org>' rsa3072 sign,cert never 2>/dev/null
    touch "$keys/.done"
fi
export GNUPGHOME=$keys/gnupg
fpr=$(gpg --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr/{print $10; exit}')
[[ -n $fpr ]] || die "no GnuPG key in $GNUPGHOME"

# ------------------------------------------------------------------ helpers
regs=()
stop_regs() {
    local d
    for d in "${regs[@]}"; do scripts/registry.sh stop "$d" >/dev/null 2>&1 || true; done
    regs=()
}
trap stop_regs EXIT
start_reg() { # DIR: a fresh registry with empty storage; sets $addr to its HOST:PORT
    scripts/registry.sh stop "$1" >/dev/null 2>&1 || true
    rm -rf "$1"
    regs+=("$1")
    addr=$(scripts/registry.sh start "$1")
}

results= # per size: TSV "key value"
put() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }

# measure KEY CMD...: wall seconds and peak RSS (KiB) of CMD; its output in logs/KEY.log
measure() {
    local key=$1 t
    shift
    t=$run/logs/$key.time
    printf '  %-22s ' "$key" >&2
    put "$key.loadavg" "$(cut -d' ' -f1 /proc/loadavg)"
    # The output is kept with each line's elapsed time (per-phase timing).
    local st=0
    /usr/bin/time -f '%e %M %U %S' -o "$t" "$@" 2>&1 </dev/null | python3 -u -c '
import sys, time
t0 = time.monotonic()
for line in sys.stdin:
    for part in line.rstrip("\n").split("\r"):
        if part.strip():
            sys.stdout.write("%8.2f %s\n" % (time.monotonic() - t0, part))' >"$run/logs/$key.log" || st=$?
    if ((st != 0)); then
        echo "FAILED" >&2
        tail -n 30 "$run/logs/$key.log" >&2
        die "$key failed (log: $run/logs/$key.log)"
    fi
    read -r wall rss usr sys <"$t"
    cpu=$(python3 -c "print(round($usr + $sys, 2))")
    printf '%8.1f s wall  %8.1f s CPU  %6.0f MiB peak RSS\n' "$wall" "$cpu" "$((rss / 1024))" >&2
    put "$key.wall" "$wall"
    put "$key.cpu" "$cpu"
    put "$key.rss" "$rss"
}

# ------------------------------------------------------------------ one size
run_size() {
    local s=$1
    run=$work/run-$s
    rm -rf "$run"
    mkdir -p "$run/logs"
    results=$run/results.tsv
    : >"$results"
    date -u '+%Y-%m-%d %H:%M UTC' >"$run/date"

    log "size ${s}x: image set (bench/make_set.py --scale $s)"
    local set=$work/set-$s stamp
    stamp=$( (sha256sum bench/make_set.py; cat "$work"/pkgs/*/.unpacked; ls -l /usr/lib/google-cloud-sdk/bin/ 2>/dev/null; dpkg-query -W libc6) | sha256sum | cut -c1-16)
    if [[ $(cat "$set/.stamp" 2>/dev/null) != "$stamp" ]]; then
        rm -rf "$set"
        python3 bench/make_set.py --out "$set" --pkgs "$work/pkgs" --scale "$s" --json "${names[@]}" >"$set.json.tmp"
        mv "$set.json.tmp" "$set/set.json"
        echo "$stamp" >"$set/.stamp"
    fi
    python3 - "$set/set.json" >&2 <<'EOF'
import json, os, sys
r = json.load(open(sys.argv[1]))
for ref, i in r["images"].items():
    print("  %-42s %7.1f MB  %s" % (ref, i["app_layer_bytes"] / 1e6, " ".join(os.path.basename(f) for f in i["files"])))
print("  amd64: %.1f MB uncompressed (shared base %.1f MB), %.1f MB as gzip layers"
      % (r["amd64_uncompressed_bytes"] / 1e6, r["base_amd64_bytes"] / 1e6, r["amd64_gzip_bytes"] / 1e6))
EOF
    put set.uncompressed "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amd64_uncompressed_bytes"])' "$set/set.json")"
    put set.gzip "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amd64_gzip_bytes"])' "$set/set.json")"

    log "size ${s}x: seeding a loopback registry"
    local src n
    start_reg "$run/reg-source"; src=$addr
    for n in "${names[@]}"; do
        skopeo --insecure-policy copy --quiet --all --preserve-digests --dest-tls-verify=false \
            "oci:$set:$n" "docker://$src/$n" >&2
    done

    # ---------------------------------------------------------- podsec
    log "size ${s}x: podsec pipeline (skopeo, containers-storage, tar, xz -9)"
    local p=$run/podsec
    mkdir -p "$p/save" "$p/rd"
    printf '[storage]\ndriver = "vfs"\n' >"$p/storage.conf"
    export CONTAINERS_STORAGE_CONF=$p/storage.conf
    local store="[vfs@$p/storage/root+$p/storage/run]"
    {
        echo 'set -euo pipefail'
        for n in "${names[@]}"; do
            printf 'skopeo --insecure-policy --override-arch amd64 copy --src-tls-verify=false %q %q\n' \
                "docker://$src/$n" "containers-storage:$store$src/$n"
        done
        echo "mkdir -p $p/save"
        for n in "${names[@]}"; do
            printf 'skopeo --insecure-policy copy --dest-oci-accept-uncompressed-layers %q %q\n' \
                "containers-storage:$store$src/$n" "oci:$p/save/amd64:$n"
        done
        echo "date +%s.%N >$p/compress.start"
        echo "tar -C $p/save -c amd64 | /usr/bin/time -f '%e %M' -o $p/xz.time xz -9 >$p/amd64.tar.xz"
    } >"$p/save.sh"
    measure podsec.build bash "$p/save.sh"
    read -r xzwall xzrss <"$p/xz.time"
    put podsec.xz.wall "$xzwall"
    put podsec.xz.rss "$xzrss"
    put podsec.size "$(stat -c %s "$p/amd64.tar.xz")"
    put podsec.tar "$(du -sb --apparent-size "$p/save/amd64" | cut -f1)"

    local dst
    start_reg "$run/reg-podsec"; dst=$addr
    printf 'default-docker:\n  lookaside-staging: file://%s\n' "$p/sigstore" >"$p/rd/default.yaml"
    {
        echo 'set -euo pipefail'
        echo "rm -rf $p/tmp; mkdir -p $p/tmp"
        echo "xz -d <$p/amd64.tar.xz | tar xf - -C $p/tmp"
        for n in "${names[@]}"; do
            printf 'skopeo --insecure-policy copy --registries.d %q --sign-by %q --dest-tls-verify=false %q %q\n' \
                "$p/rd" "$fpr" "oci:$p/tmp/amd64:$n" "docker://$dst/$n"
        done
        echo "rm -rf $p/tmp"
    } >"$p/load.sh"
    measure podsec.load bash "$p/load.sh"
    measure podsec.reload bash "$p/load.sh"
    put podsec.signatures "$(find "$p/sigstore" -name 'signature-*' | wc -l)"
    unset CONTAINERS_STORAGE_CONF
    [[ $keep == yes ]] || rm -rf "$p/storage" "$p/save"

    # Reference compressors (memory the compressor itself needs): xz's own
    # estimate for -9 with one thread per core, and zstd CLI at our settings.
    local cores
    cores=$(nproc)
    put ref.xz_mt.mib "$(xz -9 -T"$cores" -vv </dev/null 2>&1 >/dev/null | sed -n 's/^xz: \([0-9,]*\) MiB of memory is required.*/\1/p' | tr -d ,)"
    xz -dc "$p/amd64.tar.xz" >"$run/set.tar"
    measure ref.zstd zstd -q -12 --long=27 --zstd=hlog=25,clog=25,ovlog=9 -B64M -T"$cores" -f "$run/set.tar" -o "$run/set.tar.zst"
    put ref.zstd.size "$(stat -c %s "$run/set.tar.zst")"
    rm -f "$run/set.tar" "$run/set.tar.zst"

    # ---------------------------------------------------------- u7s-bundle
    log "size ${s}x: u7s-bundle"
    local c ext archive
    for c in xz zstd; do
        ext=$([[ $c == xz ]] && echo tar.xz || echo tar.zst)
        rm -rf "$run/ours-$c" "$run/cache-$c"
        mkdir -p "$run/cache-$c" # empty: every layer is downloaded
        measure "ours.$c.build" "$ub" build --source "$src" --plain-http --platform c10f \
            --kube-version v1.26.9 --arch amd64 --compression "$c" \
            --sign-key "$keys/builder.key" --output "$run/ours-$c" --cache-dir "$run/cache-$c"
        archive=$(ls "$run/ours-$c"/*."$ext")
        put "ours.$c.size" "$(stat -c %s "$archive")"
        [[ $keep == yes ]] || rm -rf "$run/cache-$c"

        start_reg "$run/reg-ours-$c"; dst=$addr
        local t=$run/trust-$c
        local args=(load "$archive" --registry "$dst" --plain-http --keyring "$keys/builder.pgp"
            --sign-key "$keys/imagemaker.key" --sigstore-dir "$t/sigstore" --keys-dir "$t/keys"
            --policy "$t/policy.json" --registries-d "$t/registries.d" --lookaside-url "file://$t/sigstore")
        measure "ours.$c.load" "$ub" "${args[@]}"
        measure "ours.$c.reload" "$ub" "${args[@]}"
        put "ours.$c.signatures" "$(find "$t/sigstore" -name 'signature-*' | wc -l)"
    done
    # The zstd bundle again, into fresh registries, with layers compressed on
    # the way (--layer-compression), as podsec's load compresses them.
    local lc
    for lc in gzip zstd; do
        start_reg "$run/reg-ours-lc-$lc"; dst=$addr
        local t=$run/trust-lc-$lc
        local args=(load "$archive" --registry "$dst" --plain-http --keyring "$keys/builder.pgp"
            --sign-key "$keys/imagemaker.key" --sigstore-dir "$t/sigstore" --keys-dir "$t/keys"
            --policy "$t/policy.json" --registries-d "$t/registries.d" --lookaside-url "file://$t/sigstore"
            --layer-compression "$lc")
        measure "ours.lc_$lc.load" "$ub" "${args[@]}"
        measure "ours.lc_$lc.reload" "$ub" "${args[@]}"
    done
    stop_regs
    if [[ $keep != yes ]]; then
        rm -rf "$run"/reg-* "$p/tmp"
    fi
}

echo "$ub_version (git $git_rev); $(skopeo --version); xz $(xz --version | sed -n '1s/.* //p'); zstd $(zstd --version | sed 's/.* v\([0-9.]*\).*/\1/'); $(dpkg-query -W -f='docker-registry ${Version}' docker-registry)" >"$work/versions"
for s in "${size_list[@]}"; do
    run_size "$s"
done
render
