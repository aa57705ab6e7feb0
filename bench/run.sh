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
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/proxyd-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as nobody
UP_PORT=${UP_PORT:-18090}
PROXYD_PORT=${PROXYD_PORT:-18091}
NGINX_PORT=${NGINX_PORT:-18092}
HAPROXY_PORT=${HAPROXY_PORT:-18093}
PIDS=()

for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install -y nginx wrk)" >&2; exit 2; }
done

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/up.pid" ] && kill "$(cat "$WORK/up.pid")" 2>/dev/null || true
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    sleep 0.3
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet)

head -c "$BODY_SIZE" /dev/zero | tr '\0' 'x' > "$WORK/body.txt"

# The upstream: nginx serving a static file, 1 worker, keep-alive.
cat > "$WORK/up.conf" <<CONF
worker_processes 1;
pid $WORK/up.pid;
error_log $WORK/up-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { root $WORK; try_files /body.txt =404; }
    }
}
CONF

# nginx as the proxy under test, configured like proxyd: 1 worker, upstream keep-alive.
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$UP_PORT; keepalive $KEEPALIVE; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_buffering off;
        }
    }
}
CONF

cat > "$WORK/proxyd.toml" <<CONF
worker_processes = 1
worker_connections = 4096
pid_file = "$WORK/proxyd.pid"
error_log = { path = "$WORK/proxyd-error.log", level = "warn" }

[[upstream]]
name = "app"
peers = ["127.0.0.1:$UP_PORT"]
keepalive = $KEEPALIVE

[[server]]
listen = "127.0.0.1:$PROXYD_PORT"
keepalive_requests = 1000000
[[server.route]]
path = "/"
upstream = "app"
CONF

nginx -c "$WORK/up.conf" -e "$WORK/up-error.log"
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
"$ROOT/target/release/proxyd" -c "$WORK/proxyd.toml" 2>"$WORK/proxyd-stderr.log" &
PIDS+=($!)

if command -v haproxy >/dev/null; then
    cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    server s1 127.0.0.1:$UP_PORT
CONF
    haproxy -f "$WORK/haproxy.cfg" -q &
    PIDS+=($!)
fi

for port in $UP_PORT $PROXYD_PORT $NGINX_PORT; do
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.05
    done
done

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
