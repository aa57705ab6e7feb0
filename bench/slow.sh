#!/usr/bin/env bash
# Slow clients: memory per slow-header connection and the rate normal clients keep while
# 1000 slow connections (slowhttptest, slow headers, then slow bodies) are open, for proxyd,
# nginx and HAProxy side by side, one worker each, same upstream.
#
#   bench/slow.sh [SLOW_CONNECTIONS] [DURATION]      e.g. bench/slow.sh 1000 10s
#
# Needs: nginx, wrk, slowhttptest (apt-get install -y nginx wrk slowhttptest; haproxy
# optional). Listens on 127.0.0.1.
set -euo pipefail

SLOW=${1:-1000}
DURATION=${2:-10s}
UP_PORT=${UP_PORT:-18090}
PROXYD_PORT=${PROXYD_PORT:-18091}
NGINX_PORT=${NGINX_PORT:-18092}
HAPROXY_PORT=${HAPROXY_PORT:-18093}
ulimit -n 65536 2>/dev/null || true

. "$(dirname "$0")/common.sh"
command -v slowhttptest >/dev/null || { echo "slowhttptest not found (apt-get install -y slowhttptest)" >&2; exit 2; }
bench_setup slow
start_upstream "$UP_PORT" 1024
start_nginx 1 "$NGINX_PORT" "$UP_PORT" 512
start_proxyd 1 "$PROXYD_PORT" "$UP_PORT" 512
start_haproxy 1 "$HAPROXY_PORT" "$UP_PORT"
wait_ready "$UP_PORT" "$PROXYD_PORT" "$NGINX_PORT"

rps() { wrk -t1 -c50 -d"$DURATION" "$1" 2>/dev/null | awk '/Requests\/sec/ { print $2 }'; }
# The worker process of each proxy (HAProxy is one process).
worker_of() {
    case $1 in
        proxyd) pgrep -P "$(cat "$WORK/proxyd.pid")" | head -1 ;;
        nginx) pgrep -P "$(cat "$WORK/nginx.pid")" | head -1 ;;
        haproxy) cat "$WORK/haproxy.pid" ;;
    esac
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "slow: $SLOW slow connections, wrk -t1 -c50 -d$DURATION alongside, one worker per proxy, $(nproc) cores"
printf "%-8s %-7s %10s %10s %8s %14s\n" proxy mode "base r/s" "slow r/s" kept "bytes/slowconn"
for name in proxyd nginx haproxy; do
    case $name in
        proxyd) port=$PROXYD_PORT ;;
        nginx) port=$NGINX_PORT ;;
        haproxy) command -v haproxy >/dev/null || continue; port=$HAPROXY_PORT ;;
    esac
    url="http://127.0.0.1:$port/"
    for mode in headers body; do
        flag=-H; target=$url
        [ "$mode" = body ] && { flag=-B; target="${url}slow"; }
        base=$(rps "$url")
        pid=$(worker_of $name)
        before=$(rss_kib "$pid")
        # slowhttptest itself spins on a CPU (three quarters of one here, and `nice` leaves
        # it half); under SCHED_IDLE it runs only on idle cycles, still holds all its
        # connections open and feeds them, and takes no CPU from the clients being measured.
        chrt --idle 0 slowhttptest $flag -c "$SLOW" -r 1000 -i 5 -l 60 -s 1000000 -u "$target" >/dev/null 2>&1 &
        SLOWPID=$!
        sleep 4
        after=$(rss_kib "$pid")
        open=$(ss -tn state established "( dport = :$port )" | tail -n +2 | wc -l)
        under=$(rps "$url")
        kill $SLOWPID 2>/dev/null || true
        wait $SLOWPID 2>/dev/null || true
        sleep 1
        awk -v n=$name -v m=$mode -v b="$base" -v u="$under" -v d=$((after - before)) -v o="$open" \
            'BEGIN { printf "%-8s %-7s %10.0f %10.0f %7.0f%% %14.0f  (%d slow connections open)\n",
                     n, m, b, u, 100 * u / b, (o > 0 ? d * 1024 / o : 0), o }'
    done
done
