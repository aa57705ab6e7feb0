#!/usr/bin/env bash
# Where a proxied request's time goes, for proxyd, nginx and HAProxy alike: for each proxy
# under the same keep-alive load (wrk -t1 -c50, 100 B responses), CPU per request in user
# and kernel mode and context switches per request, of the proxy, the upstream and wrk
# (from /proc: the proxy's wakeup and write pattern changes what the other two cost), and
# TCP segments sent per request, all processes together (/proc/net/snmp); then, in a second run under strace -c (which slows everything, so only the counts
# matter), system calls per request of the proxy.
#
#   bench/profile.sh [SECONDS]                 keep-alive
#   CLOSE=1 bench/profile.sh [SECONDS]         a new connection per request
#   BODY_SIZE=65536 bench/profile.sh           other response sizes (default 100)
#   URL_PATH=/one bench/profile.sh             the upstream answering in one segment
#                                              (`return 200`; / is a file: head, then body)
set -euo pipefail
SECS=${1:-5}
UP_PORT=18090 PROXYD_PORT=18091 NGINX_PORT=18092 HAPROXY_PORT=18093
extra=()
[ -n "${CLOSE:-}" ] && extra=(-H "Connection: close")
for tool in nginx haproxy wrk strace; do
    command -v "$tool" >/dev/null || apt-get install -y nginx haproxy wrk strace >/dev/null
done
. "$(dirname "$0")/common.sh"
bench_setup profile
start_upstream "$UP_PORT" "${BODY_SIZE:-100}"
start_nginx 1 "$NGINX_PORT" "$UP_PORT" 512
start_proxyd 1 "$PROXYD_PORT" "$UP_PORT" 512
start_haproxy 1 "$HAPROXY_PORT" "$UP_PORT"
wait_ready "$UP_PORT" "$PROXYD_PORT" "$NGINX_PORT" "$HAPROXY_PORT"
upstream_worker=$(pgrep -P "$(cat "$WORK/up.pid")")
HZ=$(getconf CLK_TCK)

port_of() {
    case $1 in proxyd) echo $PROXYD_PORT ;; nginx) echo $NGINX_PORT ;; haproxy) echo $HAPROXY_PORT ;; esac
}

# counters PID...: user ticks, system ticks, voluntary and involuntary context switches.
counters() {
    local u=0 s=0 v=0 n=0 p
    for p in "$@"; do
        read -r pu ps < <(awk '{ print $14, $15 }' "/proc/$p/stat")
        u=$((u + pu)) s=$((s + ps))
        # Context switches are counted per thread (wrk runs its connections in one).
        v=$((v + $(cat /proc/"$p"/task/*/status | awk '/^voluntary_ctxt/ { t += $2 } END { print t }')))
        n=$((n + $(cat /proc/"$p"/task/*/status | awk '/^nonvoluntary_ctxt/ { t += $2 } END { print t }')))
    done
    echo "$u $s $v $n"
}

# TCP segments sent on the machine (all of them go over loopback here: wrk, proxy, upstream).
out_segments() {
    awk '/^Tcp:/ { if (seen) print $12; seen = 1 }' /proc/net/snmp
}

echo "profile: wrk -t1 -c50 ${SECS}s, ${extra[*]:-keep-alive}, ${BODY_SIZE:-100} B, one worker each, $(date -u +%F)"
printf "\n%-8s %8s | %-33s | %-33s | %-33s | %s\n" proxy "req/s" "proxy: usr sys us/req, csw/req" \
    "upstream: usr sys us/req, csw/req" "wrk: usr sys us/req, csw/req" "TCP segments/req"
for name in proxyd nginx haproxy; do
    url="http://127.0.0.1:$(port_of "$name")${URL_PATH:-/}"
    # shellcheck disable=SC2046
    set -- $(worker_pids "$name")
    wrk -t1 -c50 -d1s "${extra[@]}" "$url" >/dev/null
    wrk -t1 -c50 -d"$((SECS + 1))s" "${extra[@]}" "$url" >"$WORK/wrk.out" &
    wrk_pid=$!
    sleep 0.5
    read -r -a p0 < <(counters "$@")
    read -r -a u0 < <(counters $upstream_worker)
    read -r -a w0 < <(counters $wrk_pid)
    s0=$(out_segments)
    sleep "$SECS"
    read -r -a p1 < <(counters "$@")
    read -r -a u1 < <(counters $upstream_worker)
    read -r -a w1 < <(counters $wrk_pid)
    s1=$(out_segments)
    wait $wrk_pid
    rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.out")
    awk -v name="$name" -v rps="$rps" -v secs="$SECS" -v hz="$HZ" -v segs="$((s1 - s0))" \
        -v p="$((p1[0] - p0[0])) $((p1[1] - p0[1])) $((p1[2] - p0[2])) $((p1[3] - p0[3]))" \
        -v u="$((u1[0] - u0[0])) $((u1[1] - u0[1])) $((u1[2] - u0[2])) $((u1[3] - u0[3]))" \
        -v w="$((w1[0] - w0[0])) $((w1[1] - w0[1])) $((w1[2] - w0[2])) $((w1[3] - w0[3]))" '
        function row(s,   f) { split(s, f, " "); return sprintf("%6.2f %6.2f, %5.2f + %5.2f", f[1] * k, f[2] * k, f[3] / n, f[4] / n) }
        BEGIN { n = rps * secs; k = 1e6 / hz / n
                printf "%-8s %8.0f | %-33s | %-33s | %-33s | %5.2f\n", name, rps, row(p), row(u), row(w), segs / n }'
done
echo "(csw: voluntary + involuntary context switches)"

echo
echo "system calls per request (strace -c on the proxy's workers):"
for name in proxyd nginx haproxy; do
    url="http://127.0.0.1:$(port_of "$name")${URL_PATH:-/}"
    args=()
    for p in $(worker_pids "$name"); do args+=(-p "$p"); done
    strace -c -f "${args[@]}" -o "$WORK/strace-$name" 2>/dev/null &
    st=$!
    sleep 0.5
    n=$(wrk -t1 -c50 -d3s "${extra[@]}" "$url" | awk '/requests in/ { print $1 }')
    kill -INT $st
    wait $st 2>/dev/null || true
    awk -v name="$name" -v n="$n" '
        $NF == "total" { total = $4 }
        /^ *[0-9]/ && $NF != "total" { calls[$NF] = $4 }
        END { line = ""; for (s in calls) if (calls[s] / n >= 0.01) line = line sprintf(" %s %.2f", s, calls[s] / n)
              printf "  %-8s %5.2f:%s\n", name, total / n, line }' "$WORK/strace-$name"
done
