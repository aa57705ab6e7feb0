#!/usr/bin/env bash
# Side-by-side benchmark: proxyd vs nginx (and HAProxy if installed) in one run, one worker
# each, proxying to the same upstream (an nginx instance answering a fixed body), measured
# with wrk. Prints req/s and latency percentiles per proxy and the ratios to nginx.
#
#   bench/run.sh [DURATION] [CONNECTIONS]      e.g. bench/run.sh 10s 50
#   BODY_SIZE=16384 bench/run.sh               upstream body size in bytes (default 1024)
#
# Needs: nginx, wrk (apt-get install -y nginx wrk; haproxy optional). Listens on 127.0.0.1.
set -euo pipefail

DURATION=${1:-10s}
CONNS=${2:-50}
BODY_SIZE=${BODY_SIZE:-1024}
KEEPALIVE=${KEEPALIVE:-512}   # idle upstream connections kept per worker, both proxies
UP_PORT=${UP_PORT:-18090}
PROXYD_PORT=${PROXYD_PORT:-18091}
NGINX_PORT=${NGINX_PORT:-18092}
HAPROXY_PORT=${HAPROXY_PORT:-18093}

. "$(dirname "$0")/common.sh"
bench_setup bench
start_upstream "$UP_PORT" "$BODY_SIZE"
start_nginx 1 "$NGINX_PORT" "$UP_PORT" "$KEEPALIVE"
start_proxyd 1 "$PROXYD_PORT" "$UP_PORT" "$KEEPALIVE"
start_haproxy 1 "$HAPROXY_PORT" "$UP_PORT"
wait_ready "$UP_PORT" "$PROXYD_PORT" "$NGINX_PORT"

# wrk output -> "rps p50 p90 p99" (latencies in ms)
measure() {
    local url=$1
    wrk -t1 -c1 -d1s "$url" >/dev/null 2>&1 || true   # warm up pools
    wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" 2>&1 | awk '
        function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
                         if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
                         if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 } return v }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /Non-2xx|Socket errors/ { err = err " " $0 }
        END { printf "%s %s %s %s%s\n", rps, p50, p90, p99, (err == "" ? "" : " ERR:" err) }'
}

echo "bench: wrk -t1 -c$CONNS -d$DURATION, body $BODY_SIZE bytes, one worker per proxy, $(nproc) cores"
printf "%-10s %12s %10s %10s %10s\n" proxy "req/s" "p50 ms" "p90 ms" "p99 ms"
declare -A RPS
for name in nginx proxyd haproxy; do
    case $name in
        nginx) port=$NGINX_PORT ;;
        proxyd) port=$PROXYD_PORT ;;
        haproxy) command -v haproxy >/dev/null || continue; port=$HAPROXY_PORT ;;
    esac
    read -r rps p50 p90 p99 rest < <(measure "http://127.0.0.1:$port/")
    RPS[$name]=$rps
    printf "%-10s %12s %10s %10s %10s %s\n" "$name" "$rps" "$p50" "$p90" "$p99" "${rest:-}"
done
for name in proxyd haproxy; do
    [ -n "${RPS[$name]:-}" ] || continue
    awk -v a="${RPS[$name]}" -v b="${RPS[nginx]}" -v n="$name" 'BEGIN { printf "ratio %s/nginx req/s: %.2f\n", n, a / b }'
done
