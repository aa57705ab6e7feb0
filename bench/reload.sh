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
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/proxyd-reload.XXXXXX)
chmod 755 "$WORK"
UP=18190 PX=18191 NG=18192 HA=18193
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for f in up nginx haproxy; do [ -f "$WORK/$f.pid" ] && kill "$(cat "$WORK/$f.pid")" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT
for tool in nginx wrk; do command -v "$tool" >/dev/null || { echo "reload: $tool not found" >&2; exit 2; }; done
(cd "$ROOT" && cargo build --release --quiet)
echo ok > "$WORK/body.txt"

cat > "$WORK/up.conf" <<CONF
worker_processes 1; pid $WORK/up.pid; error_log $WORK/up-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { root $WORK; try_files /body.txt =404; } } }
CONF
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$WORK/proxyd.toml" <<CONF
worker_processes = 2
pid_file = "$WORK/proxyd.pid"
error_log = { path = "$WORK/proxyd-error.log", level = "warn" }
[[upstream]]
name = "app"
peers = ["127.0.0.1:$UP"]
keepalive = 64
[[server]]
listen = "127.0.0.1:$PX"
keepalive_requests = 1000000
[[server.route]]
upstream = "app"
CONF

nginx -c "$WORK/up.conf" -e "$WORK/up-error.log"
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
"$ROOT/target/release/proxyd" -c "$WORK/proxyd.toml" &
PIDS+=($!)
if command -v haproxy >/dev/null; then
    cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$HA
    default_backend be
backend be
    server s1 127.0.0.1:$UP
CONF
    haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
fi
sleep 0.5

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
