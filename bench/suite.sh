#!/usr/bin/env bash
# The whole comparison in one command: proxyd, nginx and HAProxy configured alike in front
# of the same upstream, every workload interleaved over ROUNDS rounds (proxy order rotates
# each round), medians printed in one table with ratios, plus CPU per request (the proxy's
# worker processes only, from /proc), memory per idle keep-alive connection, and how two
# workers split the accepted connections.
#
#   bench/suite.sh [ROUNDS] [SECONDS]      default 3 rounds of 5 s per measurement
#   BASE=REV bench/suite.sh ...            also proxyd built from REV ("base"), interleaved
#                                          with the rest: before and after in one run
#
# Workloads: keep-alive 100 B responses (1 and 2 workers / threads) from two upstream
# shapes, a file (nginx writes the head, then the body: "file") and a `return 200` (head and
# body in one segment: "one"); keep-alive 64 KB responses; a new connection per request;
# idle memory with IDLE (default 5000) connections that each sent one request. nginx in
# front has 64 KB proxy buffers (what a careful operator sets for that shape). Installs nginx, haproxy and wrk from Debian when missing.
# Listens on 127.0.0.1 ports 18090-18094.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-5}
IDLE=${IDLE:-5000}
CONNS=${CONNS:-50}
UP_PORT=18090 PROXYD_PORT=18091 NGINX_PORT=18092 HAPROXY_PORT=18093 BASE_PORT=18094
PROXIES=(proxyd nginx haproxy)

for tool in nginx haproxy wrk; do
    command -v "$tool" >/dev/null || apt-get install -y nginx haproxy wrk >/dev/null
done
. "$(dirname "$0")/common.sh"
bench_setup suite
if [ -n "${BASE:-}" ]; then
    BASE_BIN=$(build_base "$BASE")
    PROXIES+=(base)
fi
start_upstream "$UP_PORT" 100

port_of() {
    case $1 in
        proxyd) echo $PROXYD_PORT ;; nginx) echo $NGINX_PORT ;; haproxy) echo $HAPROXY_PORT ;;
        base) echo $BASE_PORT ;;
    esac
}

start_all() {
    start_nginx "$1" "$NGINX_PORT" "$UP_PORT" 512
    start_proxyd "$1" "$PROXYD_PORT" "$UP_PORT" 512
    start_haproxy "$1" "$HAPROXY_PORT" "$UP_PORT"
    if [ -n "${BASE_BIN:-}" ]; then
        PROXYD_NAME=base PROXYD_BIN="$BASE_BIN" start_proxyd "$1" "$BASE_PORT" "$UP_PORT" 512
        wait_ready "$BASE_PORT"
    fi
    wait_ready "$UP_PORT" "$PROXYD_PORT" "$NGINX_PORT" "$HAPROXY_PORT"
}

# measure PROXY PATH [WRK ARGS...] -> "rps p50 p99 cpu_us_per_request"
measure() {
    local name=$1 path=$2
    shift 2
    wrk_measure "$(worker_pids "$name")" "http://127.0.0.1:$(port_of "$name")$path" "$@"
}

declare -A R
# run WORKLOAD PATH [WRK ARGS...]: ROUNDS rounds, proxies in rotating order.
run() {
    local w=$1 path=$2
    shift 2
    for r in $(seq "$ROUNDS"); do
        local n=${#PROXIES[@]}
        for i in $(seq 0 $((n - 1))); do
            local name=${PROXIES[$(((i + r) % n))]}
            R[$w,$name,$r]=$(measure "$name" "$path" "$@")
        done
    done
}

# idle_memory PROXY: RSS growth per connection for IDLE connections that each made one
# request and stay open.
idle_memory() {
    local name=$1 pids before after
    pids=$(worker_pids "$name")
    before=$(rss_kib $pids)
    python3 - "$(port_of "$name")" "$IDLE" "$WORK/idle-$name.fifo" <<'PY' &
import socket, sys, os, time
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
open(sys.argv[3] + ".ready", "w").close()
time.sleep(30)
PY
    local py=$!
    for _ in $(seq 600); do [ -f "$WORK/idle-$name.fifo.ready" ] && break; sleep 0.1; done
    sleep 1
    after=$(rss_kib $pids)
    kill $py 2>/dev/null || true
    wait $py 2>/dev/null || true
    echo $(( (after - before) * 1024 / IDLE ))
}

# accept_split PROXY: connections per worker process during a keep-alive run and how far the busiest or idlest is from an even share.
accept_split() {
    local name=$1 port
    port=$(port_of "$name")
    [ "$name" = haproxy ] && { echo "threads"; return; }
    wrk -t2 -c200 -d3s "http://127.0.0.1:$port/" >/dev/null 2>&1 &
    local w=$!
    sleep 1.5
    local split
    split=$(ss -tnpH state established "( sport = :$port )" | grep -o 'pid=[0-9]*' | sort | uniq -c | awk '
        { c[NR] = $1; t += $1 } END { m = t / NR; d = 0; for (i in c) { e = (c[i] > m ? c[i] - m : m - c[i]) / m; if (e > d) d = e }
                             s = ""; for (i = 1; i <= NR; i++) s = s (i > 1 ? "/" : "") c[i]; printf "%s (at most %.0f%% from an even share)", s, d * 100 }')
    wait $w 2>/dev/null || true
    echo "$split"
}

echo "suite: $ROUNDS rounds x ${SECS}s, wrk -t1 -c$CONNS, $(nproc) cores, $(date -u +%F)"
start_all 1
run ka100 /
run ka100one /one
run ka64k /big
run close / -H "Connection: close"
declare -A IDLEMEM
for name in "${PROXIES[@]}"; do IDLEMEM[$name]=$(idle_memory "$name"); done
stop_proxies
start_all 2
run ka100x2 /
run ka100x2one /one
declare -A SPLIT
for name in "${PROXIES[@]}"; do SPLIT[$name]=$(accept_split "$name"); done
stop_proxies

declare -A M C
printf "\n%-22s %-8s %10s %8s %8s %12s\n" workload proxy "req/s" "p50 ms" "p99 ms" "CPU us/req"
WORKLOADS="ka100 ka100one ka100x2 ka100x2one ka64k close"
for w in $WORKLOADS; do
    case $w in
        ka100) label="keep-alive 100 B, file" ;; ka100one) label="keep-alive 100 B, one" ;;
        ka100x2) label="ka 100 B, file, 2w" ;; ka100x2one) label="ka 100 B, one, 2w" ;;
        ka64k) label="keep-alive 64 KB" ;; close) label="new conn per request" ;;
    esac
    for name in "${PROXIES[@]}"; do
        med() { for r in $(seq "$ROUNDS"); do echo "${R[$w,$name,$r]}" | cut -d' ' -f"$1"; done | median; }
        M[$w,$name]=$(med 1)
        C[$w,$name]=$(med 4)
        printf "%-22s %-8s %10.0f %8s %8s %12s\n" "$label" "$name" "${M[$w,$name]}" "$(med 2)" "$(med 3)" "${C[$w,$name]}"
    done
done

echo
for w in $WORKLOADS; do
    awk -v w=$w -v p="${M[$w,proxyd]:-0}" -v n="${M[$w,nginx]:-1}" -v h="${M[$w,haproxy]:-1}" \
        -v cp="${C[$w,proxyd]:-0}" -v cn="${C[$w,nginx]:-1}" -v ch="${C[$w,haproxy]:-1}" \
        'BEGIN { printf "%-10s req/s proxyd/nginx %.2f  proxyd/haproxy %.2f   CPU/req proxyd/nginx %.2f  proxyd/haproxy %.2f\n",
                 w, p / n, p / h, cp / cn, cp / ch }'
    if [ -n "${BASE_BIN:-}" ]; then
        awk -v w=$w -v p="${M[$w,proxyd]:-0}" -v b="${M[$w,base]:-1}" -v cp="${C[$w,proxyd]:-0}" -v cb="${C[$w,base]:-1}" \
            'BEGIN { printf "%-10s req/s proxyd/base  %.2f  CPU/req proxyd/base %.2f\n", w, p / b, cp / cb }'
    fi
done
echo
for name in "${PROXIES[@]}"; do
    printf "idle keep-alive connection (%d open): %-8s %6s bytes; 2-worker accept split: %s\n" \
        "$IDLE" "$name" "${IDLEMEM[$name]}" "${SPLIT[$name]}"
done
