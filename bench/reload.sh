#!/usr/bin/env bash
# Reload loss: drives proxyd and nginx (and HAProxy with -sf, if installed) in turn with wrk
# (keep-alive connections) while reloading each RELOADS times, and prints requests served
# and socket errors / non-2xx answers per proxy. Same upstream for all (nginx, static body).
#
#   bench/reload.sh [RELOADS] [CONNECTIONS]      default 10 reloads, 50 connections
#
# Needs: nginx, wrk. Listens on 127.0.0.1 (ports 18190-18193).
set -euo pipefail

RELOADS=${1:-10}
CONNS=${2:-50}
UP=18190 PX=18191 NG=18192 HA=18193

. "$(dirname "$0")/common.sh"
bench_setup reload
start_upstream "$UP" 3
start_nginx 2 "$NG" "$UP" 64
start_proxyd 2 "$PX" "$UP" 64
start_haproxy 2 "$HA" "$UP"
wait_ready "$UP" "$PX" "$NG"

reload() {
    case $1 in
        proxyd) "$ROOT/target/release/proxyctl" -c "$WORK/proxyd.toml" reload >/dev/null ;;
        nginx) nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" -s reload ;;
        haproxy) haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid" -sf $(cat "$WORK/haproxy.pid") ;;
    esac
}

duration=$((RELOADS / 2 + 3))
printf "%-10s %10s %s\n" proxy requests errors
for name in proxyd nginx haproxy; do
    case $name in
        proxyd) port=$PX ;;
        nginx) port=$NG ;;
        haproxy) command -v haproxy >/dev/null || continue; port=$HA ;;
    esac
    wrk -t1 -c"$CONNS" -d"${duration}s" "http://127.0.0.1:$port/" > "$WORK/wrk-$name.txt" 2>&1 &
    wrkpid=$!
    sleep 1
    for _ in $(seq "$RELOADS"); do reload $name; sleep 0.5; done
    wait $wrkpid
    reqs=$(awk '/requests in/ { print $1 }' "$WORK/wrk-$name.txt")
    errs=$(grep -E "Socket errors|Non-2xx" "$WORK/wrk-$name.txt" | tr -s ' ' | tr '\n' ';' || true)
    printf "%-10s %10s %s\n" "$name" "$reqs" "${errs:-none}"
done
