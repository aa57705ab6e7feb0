#!/usr/bin/env bash
# TLS termination compared: proxyd, nginx and HAProxy with the same ECDSA P-256 certificate,
# TLS 1.3 only, in front of the same nginx upstream (plain HTTP), interleaved over ROUNDS
# rounds with the proxy order rotating. Medians of req/s, p99 and CPU per request (the
# proxy's worker processes only, from /proc), with ratios.
#
#   bench/tls.sh [ROUNDS] [SECONDS]      default 3 rounds of 5 s per measurement
#
# Workloads, at 1 and 2 workers (HAProxy: nbthread):
#   handshake  a new TLS connection per request, full handshakes: wrk resumes sessions
#              whenever a server lets it, so resumption is off in all three (proxyd
#              session_resumption = false, nginx ssl_session_cache/tickets off, HAProxy
#              no-tls-tickets and no cache); the script checks with openssl s_client first
#   keepalive  HTTPS keep-alive, 100 B responses
# On 2 cores wrk's own handshake work (ECDSA verify, X25519) competes with the proxy's, so
# req/s is bounded by the client; CPU per request is the proxy's cost.
# Listens on 127.0.0.1 ports 18090-18093.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-50}
UP_PORT=18090 PROXYD_PORT=18091 NGINX_PORT=18092 HAPROXY_PORT=18093
PROXIES=(proxyd nginx haproxy)

for tool in nginx haproxy wrk openssl; do
    command -v "$tool" >/dev/null || apt-get install -y nginx haproxy wrk openssl >/dev/null
done
. "$(dirname "$0")/common.sh"
bench_setup tls
start_upstream "$UP_PORT" 100
openssl req -x509 -nodes -days 30 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

port_of() {
    case $1 in proxyd) echo $PROXYD_PORT ;; nginx) echo $NGINX_PORT ;; haproxy) echo $HAPROXY_PORT ;; esac
}

# The common starters with TLS added: one certificate, TLS 1.3 only, no resumption.
PROXYD_SERVER_EXTRA="access_log = \"off\"
tls = { cert = \"$WORK/cert.pem\", key = \"$WORK/key.pem\", protocols = [\"TLSv1.3\"], session_resumption = false }"
NGINX_LISTEN_OPTS=" ssl"
NGINX_SERVER_EXTRA="ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem; ssl_protocols TLSv1.3; ssl_session_cache off; ssl_session_tickets off;"
HAPROXY_BIND_OPTS=" ssl crt $WORK/haproxy.pem ssl-min-ver TLSv1.3 no-tls-tickets"
HAPROXY_GLOBAL_EXTRA="tune.ssl.cachesize 0"

start_all() {
    start_proxyd "$1" "$PROXYD_PORT" "$UP_PORT" 512
    start_nginx "$1" "$NGINX_PORT" "$UP_PORT" 512
    start_haproxy "$1" "$HAPROXY_PORT" "$UP_PORT"
    for port in $PROXYD_PORT $NGINX_PORT $HAPROXY_PORT; do
        for _ in $(seq 100); do
            curl -skf -o /dev/null "https://127.0.0.1:$port/" && break
            sleep 0.05
        done
    done
}

# resumed PROXY: how many of 3 connections resumed the session the first one saved (a
# request is sent and answered, so TLS 1.3 tickets arrive before the session is saved).
resumed() {
    local port n=0
    port=$(port_of "$1")
    printf 'GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n' \
        | openssl s_client -connect "127.0.0.1:$port" -ign_eof -sess_out "$WORK/sess.pem" >/dev/null 2>&1 || true
    for _ in 1 2 3; do
        printf 'GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n' \
            | openssl s_client -connect "127.0.0.1:$port" -ign_eof -sess_in "$WORK/sess.pem" 2>/dev/null \
            | grep -q '^Reused' && n=$((n + 1))
    done
    echo $n
}

# measure PROXY [WRK ARGS...] -> "rps p50 p99 cpu_us_per_request"
measure() {
    local name=$1
    shift
    wrk_measure "$(worker_pids "$name")" "https://127.0.0.1:$(port_of "$name")/" "$@"
}

declare -A R
run() {
    local w=$1
    shift
    for r in $(seq "$ROUNDS"); do
        for i in 0 1 2; do
            local name=${PROXIES[$(((i + r) % 3))]}
            R[$w,$name,$r]=$(measure "$name" "$@")
        done
    done
}

echo "tls: $ROUNDS rounds x ${SECS}s, wrk -t1 -c$CONNS, TLS 1.3, ECDSA P-256, $(nproc) cores, $(date -u +%F)"
for workers in 1 2; do
    start_all $workers
    if [ $workers = 1 ]; then
        for name in "${PROXIES[@]}"; do
            echo "resumed handshakes out of 3 with openssl s_client -sess_in: $name $(resumed "$name")"
        done
    fi
    run "handshake$workers" -H "Connection: close"
    run "keepalive$workers"
    stop_proxies
done

printf "\n%-22s %-8s %10s %8s %8s %12s\n" workload proxy "req/s" "p50 ms" "p99 ms" "CPU us/req"
declare -A M C
for w in handshake1 handshake2 keepalive1 keepalive2; do
    for name in "${PROXIES[@]}"; do
        med() { for r in $(seq "$ROUNDS"); do echo "${R[$w,$name,$r]}" | cut -d' ' -f"$1"; done | median; }
        M[$w,$name]=$(med 1)
        C[$w,$name]=$(med 4)
        printf "%-22s %-8s %10.0f %8s %8s %12s\n" "$w" "$name" "${M[$w,$name]}" "$(med 2)" "$(med 3)" "${C[$w,$name]}"
    done
done
echo
for w in handshake1 handshake2 keepalive1 keepalive2; do
    awk -v w="$w" -v pn="${M[$w,proxyd]}" -v nn="${M[$w,nginx]}" -v hn="${M[$w,haproxy]}" \
        -v pc="${C[$w,proxyd]}" -v nc="${C[$w,nginx]}" -v hc="${C[$w,haproxy]}" 'BEGIN {
        printf "%-11s req/s proxyd/nginx %.2f  proxyd/haproxy %.2f   CPU/req proxyd/nginx %.2f  proxyd/haproxy %.2f\n",
            w, pn / nn, pn / hn, (nc > 0 ? pc / nc : 0), (hc > 0 ? pc / hc : 0) }'
done
