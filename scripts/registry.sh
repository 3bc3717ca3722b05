#!/usr/bin/env bash
# Start/stop a throwaway docker-registry (CNCF distribution 2.8, Debian's
# `docker-registry`) on loopback, for the demo and the benchmarks.
#
#   scripts/registry.sh start DIR [PORT]   start on 127.0.0.1:PORT (PORT omitted or
#                                          "auto": a free port); prints HOST:PORT
#   scripts/registry.sh stop DIR           stop the registry started with DIR
#   scripts/registry.sh status DIR         exit 0 and print HOST:PORT if it runs
#
# DIR gets config.yml, data/ (the storage), registry.log, pid and addr.
# Plain HTTP, no auth, deletes enabled. Environment: DOCKER_REGISTRY (binary,
# default docker-registry), REGISTRY_START_TIMEOUT (seconds, default 10).
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

# probe PORT TOKEN: 0 when GET /v2/ answers 200 and carries our instance header
# (so a different server that already owns the port is not mistaken for ours).
probe() {
    local port=$1 token=$2 line status="" ours=""
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&3
    while IFS= read -r -t 2 line <&3; do
        line=${line%$'\r'}
        [[ -z $status ]] && { status=$line; continue; }
        [[ -z $line ]] && break
        [[ ${line,,} == "x-u7s-registry: $token" ]] && ours=yes
    done
    exec 3<&- 3>&-
    [[ $status == HTTP/1.?" 200"* && -n $ours ]]
}

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

show_log() {
    if [[ -s $1 ]]; then tail -n 30 "$1" >&2; else echo "  (the log is empty)" >&2; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

is_ours() { # PID DIR: the pid is a live docker-registry serving DIR/config.yml
    local pid=$1 dir=$2 cmd
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"serve $dir/config.yml"* ]]
}

cmd_start() {
    [[ $# -ge 1 && $# -le 2 ]] || usage
    local dir port=${2:-auto} bin=${DOCKER_REGISTRY:-docker-registry}
    local timeout=${REGISTRY_START_TIMEOUT:-10}
    mkdir -p "$1"
    dir=$(cd "$1" && pwd -P)
    command -v "$bin" >/dev/null || die "$bin not found (apt-get install docker-registry)"
    if [[ -f $dir/pid ]] && is_ours "$(cat "$dir/pid")" "$dir"; then
        die "a registry already runs for $dir (pid $(cat "$dir/pid"), $(cat "$dir/addr" 2>/dev/null)); stop it first"
    fi
    [[ $port == auto ]] && port=$(free_port)
    [[ $port =~ ^[0-9]+$ && $port -ge 1 && $port -le 65535 ]] || die "bad port: $port"

    local token="$$-$RANDOM$RANDOM"
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: u7s-test-secret
  headers:
    X-U7s-Registry: ["$token"]
EOF
    # REGISTRY_* variables override the config file; don't let stray ones in.
    local -a unset_args=()
    local v
    for v in $(compgen -e); do
        [[ $v == REGISTRY_* && $v != REGISTRY_START_TIMEOUT ]] && unset_args+=(-u "$v")
    done
    env "${unset_args[@]}" "$bin" serve "$dir/config.yml" </dev/null >>"$dir/registry.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/pid"
    echo "127.0.0.1:$port" >"$dir/addr"

    local start_ms=$(now_ms)
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$dir/pid" "$dir/addr"
            echo "$prog: docker-registry exited during startup; its log ($dir/registry.log):" >&2
            show_log "$dir/registry.log"
            exit 1
        fi
        if (probe "$port" "$token") 2>/dev/null; then
            break
        fi
        if (($(now_ms) - start_ms >= timeout * 1000)); then
            kill "$pid" 2>/dev/null || true
            rm -f "$dir/pid" "$dir/addr"
            echo "$prog: registry on 127.0.0.1:$port did not answer GET /v2/ within ${timeout}s; its log:" >&2
            show_log "$dir/registry.log"
            exit 1
        fi
        sleep 0.1
    done
    echo "127.0.0.1:$port"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir pid i
    [[ -d $1 ]] || die "no such directory: $1"
    dir=$(cd "$1" && pwd -P)
    if [[ ! -f $dir/pid ]]; then
        echo "$prog: no registry recorded in $dir (no pid file)" >&2
        return 0
    fi
    pid=$(cat "$dir/pid")
    if ! is_ours "$pid" "$dir"; then
        echo "$prog: pid $pid is not running a registry for $dir; removing stale pid file" >&2
        rm -f "$dir/pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_ours "$pid" "$dir" || break
        sleep 0.1
    done
    # (a zombie has an empty cmdline: is_ours is false once it exited)
    if is_ours "$pid" "$dir"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid" "$dir/addr"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir=$1
    if [[ -f $dir/pid ]] && is_ours "$(cat "$dir/pid")" "$(cd "$dir" && pwd -P)"; then
        cat "$dir/addr"
    else
        exit 1
    fi
}

[[ $# -ge 1 ]] || usage
sub=$1
shift
case $sub in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
