#!/usr/bin/env bash
# What metrics cost: this build against a build from before metrics existed, both in front of
# the same upstream, interleaved over ROUNDS rounds (order rotating each round).
#
#   bench/metrics.sh [ROUNDS] [SECONDS] [BASE_REV]     default 5 rounds of 5 s, 184d685^
#
# Three proxyd, one worker each, configured alike:
#   base     BASE_REV, the commit before shared-memory metrics landed (no status classes,
#            bytes, histograms or gauges; only the health counters every build has)
#   metrics  this build: every request counted by server, route, peer and class, four
#            latency histograms, connection gauges; no admin listener
#   scraped  this build with the admin listener, scraped the way Prometheus and an open
#            dashboard would: GET /metrics, /api/status, /api/upstreams, /api/traffic every
#            second
# Counting cannot be switched off (health, balancing and proxyctl status read the same
# counters), so the base build is the "metrics off" side. It is built once into
# /tmp/proxyd-bench-base-<rev> (a git worktree and its target dir, kept for later runs).
# Prints median req/s and CPU per request (worker only, from /proc), and the median over
# rounds of each build's ratio to base within the round.
# Listens on 127.0.0.1 ports 18190-18194.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-5}
BASE_REV=${3:-184d685^}
CONNS=${CONNS:-50}
UP_PORT=18190
NAMES=(base metrics scraped)
declare -A PORT=([base]=18191 [metrics]=18192 [scraped]=18193)
ADMIN_PORT=18194
TOKEN=bench-token-0123456789

for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null || apt-get install -y nginx wrk curl >/dev/null
done
. "$(dirname "$0")/common.sh"
bench_setup metrics

base_sha=$(cd "$ROOT" && git rev-parse --short "$BASE_REV")
BASE_DIR=/tmp/proxyd-bench-base-$base_sha
if [ ! -x "$BASE_DIR/target/release/proxyd" ]; then
    echo "building $base_sha into $BASE_DIR (once)"
    rm -rf "$BASE_DIR/src-tree"
    mkdir -p "$BASE_DIR"
    (cd "$ROOT" && git archive --format=tar "$base_sha") | (mkdir -p "$BASE_DIR/src-tree" && tar -x -C "$BASE_DIR/src-tree")
    (cd "$BASE_DIR/src-tree" && CARGO_TARGET_DIR="$BASE_DIR/target" cargo build --release --quiet --bin proxyd)
fi

start_upstream "$UP_PORT" 100

PROXYD_NAME=base PROXYD_BIN="$BASE_DIR/target/release/proxyd" start_proxyd 1 "${PORT[base]}" "$UP_PORT" 512
PROXYD_NAME=metrics start_proxyd 1 "${PORT[metrics]}" "$UP_PORT" 512
PROXYD_NAME=scraped PROXYD_GLOBAL_EXTRA="admin = { listen = \"127.0.0.1:$ADMIN_PORT\", token = \"$TOKEN\" }" \
    start_proxyd 1 "${PORT[scraped]}" "$UP_PORT" 512
wait_ready "$UP_PORT" "${PORT[base]}" "${PORT[metrics]}" "${PORT[scraped]}"

# The scraper: what Prometheus (every 1 s here; 15 s is usual) and a dashboard ask for.
(
    while true; do
        for p in /metrics /api/status /api/upstreams /api/traffic; do
            curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT$p" || true
        done
        sleep 1
    done
) &
PIDS+=($!)

workers() { pgrep -P "$(cat "$WORK/$1.pid")" | tr '\n' ' '; }

declare -A R
echo "metrics: $ROUNDS rounds x ${SECS}s, wrk -t1 -c$CONNS, keep-alive 100 B, base $base_sha, $(nproc) cores, $(date -u +%F)"
for r in $(seq "$ROUNDS"); do
    for i in 0 1 2; do
        name=${NAMES[$(((i + r) % 3))]}
        R[$name,$r]=$(wrk_measure "$(workers "$name")" "http://127.0.0.1:${PORT[$name]}/")
    done
done
scrapes=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -c '^proxyd_' || true)

declare -A M C
printf "\n%-8s %10s %8s %8s %12s\n" build "req/s" "p50 ms" "p99 ms" "CPU us/req"
for name in "${NAMES[@]}"; do
    med() { for r in $(seq "$ROUNDS"); do echo "${R[$name,$r]}" | cut -d' ' -f"$1"; done | median; }
    M[$name]=$(med 1)
    C[$name]=$(med 4)
    printf "%-8s %10.0f %8s %8s %12s\n" "$name" "${M[$name]}" "$(med 2)" "$(med 3)" "${C[$name]}"
done
# Ratios per round (the three ran back to back), then their median: a machine that slows
# down over the run (shared cores) moves all three alike and cancels out.
ratio() { # ratio FIELD NAME
    for r in $(seq "$ROUNDS"); do
        awk -v a="$(echo "${R[$2,$r]}" | cut -d' ' -f"$1")" -v b="$(echo "${R[base,$r]}" | cut -d' ' -f"$1")" \
            'BEGIN { printf "%.4f\n", (b > 0 ? a / b : 0) }'
    done | median
}
echo
printf "req/s   metrics/base %.3f  scraped/base %.3f   (median of per-round ratios; the bar is 0.970)\n" "$(ratio 1 metrics)" "$(ratio 1 scraped)"
printf "CPU/req metrics/base %.3f  scraped/base %.3f\n" "$(ratio 4 metrics)" "$(ratio 4 scraped)"
echo "one /metrics scrape: $scrapes sample lines"
