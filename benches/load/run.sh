#!/usr/bin/env bash
# Load comparison: direct-to-upstream baseline, nginx, mesh-proxy and hyper-floor (a bare hyper
# proxy, mesh-proxy's floor), same workload, on loopback.
#
#   benches/load/run.sh [--smoke] [--http2 | --instructions [--max-ratio R]] [--out DIR]
#
# Installs what is missing (nginx, Debian's nginx echo module, wrk, curl, python3 with apt-get;
# oha with `cargo install oha --locked`), builds mesh-proxy and hyper-floor in release mode, then
# for each scenario (plain 90/10 split; + 100% mirror to a fast shadow; + 100% mirror to a shadow
# that answers after 50 ms) and each target (direct, nginx, mesh, floor) measures:
#   - closed loop (wrk, LOAD_CONNS connections, 1 thread): requests/s and CPU time per request
#     (utime+stime of the proxy's processes from /proc/PID/stat, before/after);
#   - open loop (oha at LOAD_RATE requests/s, latency corrected for coordinated omission):
#     p50/p99/p99.9;
#   - idle RSS (VmRSS after start, before any traffic) and peak RSS (VmHWM at the end).
# Each figure is the median of 3 runs (1 in --smoke) of LOAD_SECONDS seconds (2 in --smoke).
# The proxy runs alone on CPU LOAD_PROXY_CPU (default 0); the load generator and the upstreams
# share CPU LOAD_GEN_CPU (default 1). Results: DIR/results.md, DIR/results.json, DIR/raw.jsonl,
# logs in DIR/logs. Default DIR: target/load/<UTC timestamp>.
#
# Environment: LOAD_CONNS (32), LOAD_RATE (5000), LOAD_SECONDS, LOAD_RUNS, LOAD_PROXY_CPU,
# LOAD_GEN_CPU, LOAD_NO_OHA=1 (skip oha: latency then comes from wrk's closed-loop run),
# LOAD_MESH_BIN=PATH, LOAD_FLOOR_BIN=PATH (use these mesh-proxy and hyper-floor binaries instead
# of building release ones; CI's smoke run uses debug binaries).
# --smoke also checks the results (report.py --check): every step served traffic, the
# baseline, mesh-proxy and hyper-floor had no failed requests, the split is ~90/10; exit 1
# otherwise.
# --instructions replaces the timed runs: mesh-proxy and hyper-floor run the plain split under
# valgrind's callgrind and the report is user-space instructions per proxied request (after a
# warm-up, over LOAD_SECONDS of wrk with 8 connections), a count that machine noise does not
# move. Callgrind dumps stay in DIR/logs for callgrind_annotate. With --max-ratio R it exits 1
# when mesh-proxy needs more than R times hyper-floor's instructions (CI's regression gate).
# --http2 replaces them too: HTTP/2 clients (h2load from Debian's nghttp2-client, h2c with
# prior knowledge, LOAD_CONNS connections with 10 streams each) against nginx (`listen http2`,
# `grpc_pass`) and mesh-proxy in two scenarios: the 90/10 split to the HTTP/1.1 upstreams, and
# unary gRPC calls to an HTTP/2 gRPC upstream (benches/src/bin/grpc-upstream.rs); requests/s,
# mean and max latency (h2load reports no percentiles), CPU time per request and RSS, in
# DIR/http2.md and .json (LOAD_GRPC_BIN=PATH: use that grpc-upstream binary). With --smoke, the
# run is checked (every request answered 2xx).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

SMOKE=0
INSTRUCTIONS=0
HTTP2=0
MAX_RATIO=""
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) SMOKE=1; shift ;;
        --instructions) INSTRUCTIONS=1; shift ;;
        --http2) HTTP2=1; shift ;;
        --max-ratio) MAX_RATIO=${2:?--max-ratio needs a number}; shift 2 ;;
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [[ $SMOKE == 1 ]]; then
    RUNS=${LOAD_RUNS:-1}; SECONDS_PER_STEP=${LOAD_SECONDS:-2}; WARMUP=1
else
    RUNS=${LOAD_RUNS:-3}; SECONDS_PER_STEP=${LOAD_SECONDS:-5}; WARMUP=1
fi
WRAP=()        # what the proxies run under (callgrind in --instructions)
WAIT_TRIES=100 # tenths of a second to wait for a target to answer
CONNS=${LOAD_CONNS:-32}
RATE=${LOAD_RATE:-5000}
PROXY_CPU=${LOAD_PROXY_CPU:-0}
GEN_CPU=${LOAD_GEN_CPU:-1}
OUT=${OUT:-$ROOT/target/load/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/raw.jsonl"

# Loopback ports (fixed, so the configs are readable in the logs).
V1_PORT=18081
V2_PORT=18082
SHADOW_PORT=18083
SLOW_SHADOW_PORT=18084
NGINX_PORT=18090
MESH_PORT=18100
MESH_ADMIN=127.0.0.1:18101
FLOOR_PORT=18110
GRPC_PORT=18085

log() { printf '[load %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
ensure_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    [[ -f $ECHO_MODULE ]] || missing+=(libnginx-mod-http-echo)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [[ $INSTRUCTIONS == 1 ]]; then
        command -v valgrind >/dev/null || missing+=(valgrind)
    fi
    if [[ $HTTP2 == 1 ]]; then
        command -v h2load >/dev/null || missing+=(nghttp2-client)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing with apt-get: ${missing[*]}"
        local sudo=()
        [[ $(id -u) != 0 ]] && sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    OHA=""
    if [[ ${LOAD_NO_OHA:-0} != 1 && $INSTRUCTIONS != 1 && $HTTP2 != 1 ]]; then
        if ! command -v oha >/dev/null; then
            log "building oha (cargo install oha --locked; a few minutes, once)"
            cargo install oha --locked -q
        fi
        OHA=$(command -v oha)
    fi
    MESH_BIN=$(given_bin LOAD_MESH_BIN)
    FLOOR_BIN=$(given_bin LOAD_FLOOR_BIN)
    GRPC_BIN=$(given_bin LOAD_GRPC_BIN)
    local build=()
    [[ -z $MESH_BIN ]] && build+=(-p mesh-examples --bin mesh-proxy)
    [[ -z $FLOOR_BIN && $HTTP2 != 1 ]] && build+=(-p mesh-benches --bin hyper-floor)
    [[ -z $GRPC_BIN && $HTTP2 == 1 ]] && build+=(-p mesh-benches --bin grpc-upstream)
    if [[ ${#build[@]} -gt 0 ]]; then
        log "building (release): ${build[*]}"
        (cd "$ROOT" && cargo build -q --release "${build[@]}")
    fi
    MESH_BIN=${MESH_BIN:-$ROOT/target/release/mesh-proxy}
    FLOOR_BIN=${FLOOR_BIN:-$ROOT/target/release/hyper-floor}
    GRPC_BIN=${GRPC_BIN:-$ROOT/target/release/grpc-upstream}
}

# given_bin VAR: the absolute path of the executable named by $VAR, or nothing when unset.
given_bin() {
    local path=${!1:-}
    [[ -z $path ]] && return 0
    [[ -x $path ]] || { log "$1 is not an executable: $path"; exit 2; }
    log "using $path ($1)"
    echo "$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
}

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is a child of this shell and is stopped on exit.
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/mesh-load.XXXXXX)
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed (line $LINENO); logs in $OUT/logs"' ERR

stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget() { # drop a stopped PID from STARTED
    local keep=() pid
    for pid in "${STARTED[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    STARTED=("${keep[@]}")
}

# fill TEMPLATE DEST KEY=VALUE...: replaces @KEY@ with VALUE.
fill() {
    local src=$1 dst=$2 kv
    shift 2
    cp "$src" "$dst"
    for kv in "$@"; do
        KEY=${kv%%=*} VAL=${kv#*=} python3 - "$dst" <<'PY'
import os, sys
p = sys.argv[1]
s = open(p).read().replace("@" + os.environ["KEY"] + "@", os.environ["VAL"])
open(p, "w").write(s)
PY
    done
}

nginx_dir() {
    local d=$WORK/$1
    mkdir -p "$d"/{body,proxy,fastcgi,uwsgi,scgi}
    chmod -R 777 "$d"
    echo "$d"
}

# wait_http URL HOST: until the URL answers 200.
wait_http() {
    local i
    for i in $(seq "$WAIT_TRIES"); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $2" "$1" || true) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "not answering: $1"
    return 1
}

# wait_h2 URL: until the URL answers 200 over h2c (prior knowledge).
wait_h2() {
    local i
    for i in $(seq "$WAIT_TRIES"); do
        if [[ $(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
            -H 'Host: web.example.com' "$1" || true) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "not answering over h2c: $1"
    return 1
}

# h2_load URL AUTHORITY SECONDS [grpc] -> one JSON line of h2load's figures.
h2_load() {
    local args=(-D "$3" -c "$CONNS" -m 10 -t 1 -H ":authority: $2")
    [[ ${4:-} == grpc ]] && args+=(-H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$WORK/grpc-request.bin")
    taskset -c "$GEN_CPU" h2load "${args[@]}" "$1" >"$WORK/h2load.out" 2>&1 || true
    cat "$WORK/h2load.out" >>"$OUT/logs/h2load.out"
    python3 - "$WORK/h2load.out" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def num(pattern, cast=float):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None
def us(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else None
t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
print(json.dumps({
    "rps": num(r"finished in [\d.]+s, ([\d.]+) req/s"),
    "requests": num(r"requests: (\d+) total", int),
    "succeeded": num(r"(\d+) succeeded", int),
    "failed": num(r"(\d+) failed", int),
    "errored": num(r"(\d+) errored", int),
    "status_2xx": num(r"status codes: (\d+) 2xx", int),
    "mean_us": us(t.group(3)) if t else None,
    "max_us": us(t.group(2)) if t else None,
}))
PY
}

children() { awk '{ print $1 }' "/proc/$1/task/$1/children" 2>/dev/null || true; }

# cpu_ticks PID...: utime+stime (clock ticks) summed over the processes.
cpu_ticks() {
    local total=0 pid f
    for pid in "$@"; do
        # Fields after the ")" of comm: utime and stime are the 12th and 13th.
        f=$(sed 's/^.*) //' "/proc/$pid/stat")
        set -- $f
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

start_upstreams() {
    local d
    d=$(nginx_dir upstreams)
    fill "$HERE/upstreams.nginx.conf" "$d/nginx.conf" DIR="$d" ECHO_MODULE="$ECHO_MODULE" \
        V1_PORT=$V1_PORT V2_PORT=$V2_PORT SHADOW_PORT=$SHADOW_PORT \
        SLOW_SHADOW_PORT=$SLOW_SHADOW_PORT
    taskset -c "$GEN_CPU" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' \
        >"$OUT/logs/upstreams.out" 2>&1 &
    UPSTREAMS_PID=$!
    STARTED+=("$UPSTREAMS_PID")
    wait_http "http://127.0.0.1:$V1_PORT/" x
    wait_http "http://127.0.0.1:$SLOW_SHADOW_PORT/" x
}

# start_target TARGET SCENARIO: sets URL, PIDS (processes whose CPU and memory count), MAIN_PID
# (the one whose RSS is reported), TARGET_PID (to stop; empty for direct).
start_target() {
    local target=$1 scenario=$2 shadow d mirror
    shadow=$SHADOW_PORT
    [[ $scenario == mirror-slow ]] && shadow=$SLOW_SHADOW_PORT
    case "$target" in
        direct)
            URL=http://127.0.0.1:$V1_PORT/
            PIDS=()
            MAIN_PID=""
            TARGET_PID=""
            ;;
        nginx-h2)
            d=$(nginx_dir "nginx-$scenario")
            fill "$HERE/h2.nginx.conf" "$d/nginx.conf" DIR="$d" V1_PORT=$V1_PORT \
                V2_PORT=$V2_PORT GRPC_PORT=$GRPC_PORT PROXY_PORT=$NGINX_PORT
            cp "$d/nginx.conf" "$OUT/logs/nginx-$scenario.conf"
            taskset -c "$PROXY_CPU" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' \
                >"$OUT/logs/nginx-$scenario.out" 2>&1 &
            TARGET_PID=$!
            STARTED+=("$TARGET_PID")
            URL=http://127.0.0.1:$NGINX_PORT
            wait_h2 "$URL/"
            MAIN_PID=$(children "$TARGET_PID")
            PIDS=("$TARGET_PID" "$MAIN_PID")
            ;;
        mesh-h2)
            d=$WORK/mesh-$scenario
            mkdir -p "$d"
            fill "$HERE/mesh-proxy.yaml" "$d/mesh.yaml" MIRROR="" V1_PORT=$V1_PORT \
                V2_PORT=$V2_PORT SHADOW_PORT=$SHADOW_PORT PROXY_PORT=$MESH_PORT
            fill "$HERE/mesh-proxy-grpc.yaml" "$d/grpc.yaml" GRPC_PORT=$GRPC_PORT \
                PROXY_PORT=$MESH_PORT
            cat "$d/mesh.yaml" "$d/grpc.yaml" >"$OUT/logs/mesh-$scenario.yaml"
            TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c "$PROXY_CPU" "$MESH_BIN" \
                --config "$d/mesh.yaml" --config "$d/grpc.yaml" --bind 127.0.0.1 \
                --admin "$MESH_ADMIN" --no-access-log >"$OUT/logs/mesh-$scenario.out" 2>&1 &
            TARGET_PID=$!
            STARTED+=("$TARGET_PID")
            URL=http://127.0.0.1:$MESH_PORT
            wait_http "http://$MESH_ADMIN/ready" x
            wait_h2 "$URL/"
            MAIN_PID=$TARGET_PID
            PIDS=("$TARGET_PID")
            ;;
        nginx)
            d=$(nginx_dir "nginx-$scenario")
            mirror=""
            [[ $scenario != plain ]] && mirror="mirror /_mirror;"
            fill "$HERE/proxy.nginx.conf" "$d/nginx.conf" DIR="$d" MIRROR="$mirror" \
                V1_PORT=$V1_PORT V2_PORT=$V2_PORT SHADOW_PORT=$shadow PROXY_PORT=$NGINX_PORT
            cp "$d/nginx.conf" "$OUT/logs/nginx-$scenario.conf"
            taskset -c "$PROXY_CPU" nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' \
                >"$OUT/logs/nginx-$scenario.out" 2>&1 &
            TARGET_PID=$!
            STARTED+=("$TARGET_PID")
            URL=http://127.0.0.1:$NGINX_PORT/
            wait_http "$URL" web.example.com
            # The master only supervises; the single worker does the work. CPU counts both,
            # RSS is the worker's.
            MAIN_PID=$(children "$TARGET_PID")
            PIDS=("$TARGET_PID" "$MAIN_PID")
            ;;
        mesh)
            d=$WORK/mesh-$scenario
            mkdir -p "$d"
            mirror=""
            if [[ $scenario != plain ]]; then
                mirror="    mirror: {host: shadow.internal}
    mirrorPercentage: {value: 100.0}"
            fi
            fill "$HERE/mesh-proxy.yaml" "$d/mesh.yaml" MIRROR="$mirror" \
                V1_PORT=$V1_PORT V2_PORT=$V2_PORT SHADOW_PORT=$shadow PROXY_PORT=$MESH_PORT
            cp "$d/mesh.yaml" "$OUT/logs/mesh-$scenario.yaml"
            # One tokio worker thread (the runtime reads TOKIO_WORKER_THREADS), and the whole
            # process pinned to one CPU like nginx's worker.
            TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c "$PROXY_CPU" "${WRAP[@]}" "$MESH_BIN" \
                --config "$d/mesh.yaml" --bind 127.0.0.1 --admin "$MESH_ADMIN" \
                --no-access-log >"$OUT/logs/mesh-$scenario.out" 2>&1 &
            TARGET_PID=$!
            STARTED+=("$TARGET_PID")
            URL=http://127.0.0.1:$MESH_PORT/
            wait_http "http://$MESH_ADMIN/ready" x
            wait_http "$URL" web.example.com
            MAIN_PID=$TARGET_PID
            PIDS=("$TARGET_PID")
            ;;
        floor)
            mirror=()
            [[ $scenario != plain ]] && mirror=(--mirror "127.0.0.1:$shadow")
            # Same runtime, thread count and pinning as mesh-proxy.
            TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "${WRAP[@]}" "$FLOOR_BIN" \
                --listen "127.0.0.1:$FLOOR_PORT" --v1 "127.0.0.1:$V1_PORT" \
                --v2 "127.0.0.1:$V2_PORT" --weights 90,10 "${mirror[@]}" \
                >"$OUT/logs/floor-$scenario.out" 2>&1 &
            TARGET_PID=$!
            STARTED+=("$TARGET_PID")
            URL=http://127.0.0.1:$FLOOR_PORT/
            wait_http "$URL" web.example.com
            MAIN_PID=$TARGET_PID
            PIDS=("$TARGET_PID")
            ;;
    esac
}

# v2_share URL: fraction of 200 sequential requests answered by v2 (the split is 90/10).
v2_share() {
    local urls=() i
    for i in $(seq 200); do urls+=("$1"); done
    curl -s -H 'Host: web.example.com' "${urls[@]}" | awk '
        /^v1$/ { v1++ } /^v2$/ { v2++ }
        END { if (v1 + v2 == 0) print "null"; else printf "%.3f\n", v2 / (v1 + v2) }'
}

closed_loop() { # URL SECONDS -> one JSON line (wrk-report.lua)
    taskset -c "$GEN_CPU" wrk -t1 -c"$CONNS" -d"$2s" --timeout 5s -s "$HERE/wrk-report.lua" "$1" |
        grep '^{' | tail -1
}

open_loop() { # URL SECONDS -> one JSON line
    local raw=$WORK/oha.json
    taskset -c "$GEN_CPU" "$OHA" --no-tui --output-format json --latency-correction \
        --no-color -z "$2s" -c "$CONNS" -q "$RATE" -H 'Host: web.example.com' "$1" \
        >"$raw" 2>"$OUT/logs/oha.err"
    python3 - "$raw" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values()) + sum(d.get("errorDistribution", {}).values())
print(json.dumps({
    "rps": s.get("requestsPerSec"),
    "p50_us": p["p50"] * 1e6 if p.get("p50") is not None else None,
    "p99_us": p["p99"] * 1e6 if p.get("p99") is not None else None,
    "p999_us": p["p99.9"] * 1e6 if p.get("p99.9") is not None else None,
    "requests": total,
    "ok": ok,
}))
PY
}

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------
ensure_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
CLK_TCK=$(getconf CLK_TCK)
START=$(date +%s)
log "output: $OUT (runs: $RUNS x ${SECONDS_PER_STEP}s, $CONNS connections, open loop at $RATE/s)"
start_upstreams

# --instructions: user-space instructions per request of mesh-proxy and hyper-floor under
# callgrind (plain split), instead of the timed runs below.
if [[ $INSTRUCTIONS == 1 ]]; then
    WAIT_TRIES=1200 # valgrind starts programs slowly
    : >"$OUT/instructions.jsonl"
    for target in mesh floor; do
        WRAP=(valgrind -q --tool=callgrind --callgrind-out-file="$OUT/logs/callgrind-$target.%p")
        start_target "$target" plain
        taskset -c "$GEN_CPU" wrk -t1 -c8 -d"${WARMUP}s" -H 'Host: web.example.com' "$URL" >/dev/null
        callgrind_control -z "$TARGET_PID" >/dev/null 2>&1
        closed=$(taskset -c "$GEN_CPU" wrk -t1 -c8 -d"${SECONDS_PER_STEP}s" --timeout 10s \
            -s "$HERE/wrk-report.lua" "$URL" | grep '^{' | tail -1)
        callgrind_control -d "$TARGET_PID" >/dev/null 2>&1
        dump="$OUT/logs/callgrind-$target.$TARGET_PID.1"
        for i in $(seq 100); do [[ -s $dump ]] && break; sleep 0.1; done
        stop "$TARGET_PID"
        forget "$TARGET_PID"
        printf '{"target":"%s","dump":"%s","closed":%s}\n' "$target" "$dump" "$closed" \
            >>"$OUT/instructions.jsonl"
        log "$target: callgrind dump $dump"
    done
    MAX=()
    [[ -n $MAX_RATIO ]] && MAX=(--max-ratio "$MAX_RATIO")
    python3 -B "$HERE/report.py" "$OUT" --instructions "${MAX[@]}"
    exit 0
fi

# --http2: HTTP/2 clients against nginx and mesh-proxy, instead of the timed runs below.
if [[ $HTTP2 == 1 ]]; then
    # One unary call: a 4-byte protobuf message in one uncompressed gRPC frame.
    printf '\x00\x00\x00\x00\x04\x0a\x02hi' >"$WORK/grpc-request.bin"
    taskset -c "$GEN_CPU" "$GRPC_BIN" --listen "127.0.0.1:$GRPC_PORT" \
        >"$OUT/logs/grpc-upstream.out" 2>&1 &
    STARTED+=("$!")
    : >"$OUT/http2.jsonl"
    for scenario in h2-split grpc; do
        for target in nginx mesh; do
            start_target "$target-h2" "$scenario"
            sleep 0.5
            idle_rss=$(status_kb "$MAIN_PID" VmRSS)
            if [[ $scenario == grpc ]]; then
                path=/bench.Echo/Call authority=grpc.example.com kind=grpc
            else
                path=/ authority=web.example.com kind=http
            fi
            h2_load "$URL$path" "$authority" "$WARMUP" "$kind" >/dev/null
            for run in $(seq "$RUNS"); do
                ticks0=$(cpu_ticks "${PIDS[@]}")
                figures=$(h2_load "$URL$path" "$authority" "$SECONDS_PER_STEP" "$kind")
                ticks1=$(cpu_ticks "${PIDS[@]}")
                peak_rss=$(status_kb "$MAIN_PID" VmHWM)
                printf '{"scenario":"%s","target":"%s","run":%d,"h2load":%s,"cpu_ticks":%d,"clk_tck":%d,"idle_rss_kb":%s,"peak_rss_kb":%s}\n' \
                    "$scenario" "$target" "$run" "$figures" "$((ticks1 - ticks0))" "$CLK_TCK" \
                    "$idle_rss" "$peak_rss" >>"$OUT/http2.jsonl"
                log "$scenario/$target run $run: $figures"
            done
            stop "$TARGET_PID"
            forget "$TARGET_PID"
        done
    done
    CHECK=()
    [[ $SMOKE == 1 ]] && CHECK=(--check)
    python3 -B "$HERE/report.py" "$OUT" --http2 "${CHECK[@]}"
    exit $?
fi

for scenario in plain mirror mirror-slow; do
    for target in direct nginx mesh floor; do
        start_target "$target" "$scenario"
        idle_rss=null
        if [[ -n $MAIN_PID ]]; then
            sleep 0.5
            idle_rss=$(status_kb "$MAIN_PID" VmRSS)
        fi
        share=$(v2_share "$URL")
        taskset -c "$GEN_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H 'Host: web.example.com' \
            "$URL" >/dev/null
        for run in $(seq "$RUNS"); do
            ticks0=0
            [[ ${#PIDS[@]} -gt 0 ]] && ticks0=$(cpu_ticks "${PIDS[@]}")
            closed=$(closed_loop "$URL" "$SECONDS_PER_STEP")
            sleep 0.3 # let mirror copies still in flight finish: they cost CPU too
            ticks1=0
            [[ ${#PIDS[@]} -gt 0 ]] && ticks1=$(cpu_ticks "${PIDS[@]}")
            open=null
            [[ -n $OHA ]] && open=$(open_loop "$URL" "$SECONDS_PER_STEP")
            peak_rss=null
            [[ -n $MAIN_PID ]] && peak_rss=$(status_kb "$MAIN_PID" VmHWM)
            mirrors=null
            if [[ $target == mesh ]]; then
                mirrors=$(curl -s "http://$MESH_ADMIN/stats/prometheus" |
                    awk '/^mesh_mirror_requests_total/ { printf "%s%s", sep, $0; sep = "; " }' |
                    python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
            fi
            line=$(printf '{"scenario":"%s","target":"%s","run":%d,"closed":%s,"open":%s,"cpu_ticks":%d,"clk_tck":%d,"idle_rss_kb":%s,"peak_rss_kb":%s,"v2_share":%s,"mirror_counters":%s}' \
                "$scenario" "$target" "$run" "$closed" "$open" "$((ticks1 - ticks0))" \
                "$CLK_TCK" "$idle_rss" "$peak_rss" "$share" "$mirrors")
            echo "$line" >>"$OUT/raw.jsonl"
            log "$scenario/$target run $run: $(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
c, o = d["closed"], d["open"]
msg = "%.0f req/s closed" % (c["requests"] * 1e6 / c["duration_us"])
if o:
    msg += ", open-loop p99 %.2f ms" % (o["p99_us"] / 1e3)
print(msg)' "$line")"
        done
        if [[ -n $TARGET_PID ]]; then
            stop "$TARGET_PID"
            forget "$TARGET_PID"
        fi
    done
done

CHECK=()
[[ $SMOKE == 1 ]] && CHECK=(--check)
python3 -B "$HERE/report.py" "$OUT" --conns "$CONNS" --rate "$RATE" --runs "$RUNS" \
    --seconds "$SECONDS_PER_STEP" --open-loop "$([[ -n $OHA ]] && echo oha || echo none)" \
    "${CHECK[@]}"
log "done in $(($(date +%s) - START)) s: $OUT/results.md, $OUT/results.json"
cat "$OUT/results.md"
