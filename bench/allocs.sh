#!/usr/bin/env bash
# Heap allocations per proxied request, end to end: proxyd built with the `alloc-count`
# feature (a counting global allocator) serves a keep-alive run and a new-connection run;
# each worker logs its allocations per request (after a 1000-request warm-up) when it exits.
#
#   bench/allocs.sh [SECONDS]
set -euo pipefail
SECS=${1:-3}
UP_PORT=18090 PROXYD_PORT=18091
. "$(dirname "$0")/common.sh"
bench_setup allocs
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/alloc-count" cargo build --release --quiet --features alloc-count --bin proxyd)
start_upstream "$UP_PORT" 100
for workload in keep-alive close; do
    extra=()
    [ "$workload" = close ] && extra=(-H "Connection: close")
    PROXYD_BIN="$ROOT/target/alloc-count/release/proxyd" start_proxyd 1 "$PROXYD_PORT" "$UP_PORT" 512
    wait_ready "$PROXYD_PORT"
    wrk -t1 -c50 -d"${SECS}s" "${extra[@]}" "http://127.0.0.1:$PROXYD_PORT/api/v1/items?id=42" | grep -E "requests in"
    kill -QUIT "$(cat "$WORK/proxyd.pid")"
    for _ in $(seq 50); do [ -f "$WORK/proxyd.pid" ] || break; sleep 0.1; done
    sleep 0.5
    echo "$workload: $(grep -o 'heap allocations:.*' "$WORK/proxyd-error.log" | tail -1)"
    : > "$WORK/proxyd-error.log"
done
