#!/usr/bin/env bash
# Hostile clients and long runs against mesh-proxy, with figures (benches/src/bin/robustness.rs):
# slowloris, idle keep-alive connections, a connection flood over --max-connections, reloads
# under load (every tenth config invalid) and a soak with RSS samples. Each phase checks what
# it measures; exit 1 when one fails. The report lands in OUT/robustness.md.
#
#   scripts/robustness.sh                       # release build, default counts, 60 s soak
#   scripts/robustness.sh --soak 600            # a 10-minute soak
#   scripts/robustness.sh --smoke               # small counts, 3 s soak (CI)
#   scripts/robustness.sh --help                # every knob (--slowloris N, --cap N, ...)
#
# Environment: ROBUSTNESS_MESH_BIN=PATH and ROBUSTNESS_BIN=PATH use these binaries instead of
# building release ones (CI uses debug builds); ROBUSTNESS_OUT=DIR (default
# target/robustness/<UTC timestamp>).
set -euo pipefail
cd "$(dirname "$0")/.."

mesh_bin="${ROBUSTNESS_MESH_BIN:-}"
tool_bin="${ROBUSTNESS_BIN:-}"
if [[ -z "$mesh_bin" || -z "$tool_bin" ]]; then
    echo "==> building mesh-proxy and robustness (release)"
    cargo build -q --release -p mesh-examples --bin mesh-proxy -p mesh-benches --bin robustness
    mesh_bin="${mesh_bin:-target/release/mesh-proxy}"
    tool_bin="${tool_bin:-target/release/robustness}"
fi
out="${ROBUSTNESS_OUT:-target/robustness/$(date -u +%Y%m%dT%H%M%SZ)}"
# Thousands of sockets on both sides: the soft descriptor limit up to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$tool_bin" --mesh-proxy "$mesh_bin" --out "$out" "$@"
