#!/usr/bin/env bash
# Memory and reload time at scale: SITES [[server]] blocks (one name each, two routes each)
# and SITES upstreams, 2 workers, the same sites in nginx. Prints the config check's time and
# peak memory, the running node's PSS (master and workers, from /proc/PID/smaps_rollup) at
# start and after RELOADS reloads, and how long a reload takes (proxyctl reload returns once
# the new generation serves; nginx -s reload returns once the signal is sent).
#
#   bench/sites.sh [SITES] [RELOADS]      default 5000 sites, 3 reloads
#
# Needs: nginx, curl. Listens on 127.0.0.1 (ports 18300-18302).
set -euo pipefail

SITES=${1:-5000}
RELOADS=${2:-3}
PX=18300 NG=18301 UP=18302

. "$(dirname "$0")/common.sh"
bench_setup sites
BIN=$ROOT/target/release

python3 - "$SITES" "$PX" "$NG" "$UP" "$WORK" <<'EOF'
import sys
n, px, ng, up, d = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
with open(d + "/proxyd.toml", "w") as f:
    f.write(f'worker_processes = 2\npid_file = "{d}/proxyd.pid"\n'
            f'control_socket = "{d}/proxyd.sock"\n'
            f'error_log = {{ path = "{d}/proxyd-error.log", level = "warn" }}\n')
    for i in range(n):
        f.write(f'\n[[upstream]]\nname = "app{i}"\npeers = ["127.0.0.1:{up}"]\nkeepalive = 8\n')
    for i in range(n):
        f.write(f'\n[[server]]\nlisten = "127.0.0.1:{px}"\nserver_name = ["site{i}.example.com"]\n'
                f'[[server.route]]\npath = "/api/"\nupstream = "app{i}"\n'
                f'[[server.route]]\npath = "/"\nupstream = "app{i}"\n')
with open(d + "/nginx.conf", "w") as f:
    f.write(f'worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n'
            'events { worker_connections 1024; }\nhttp {\naccess_log off;\n'
            'server_names_hash_max_size 65536;\nserver_names_hash_bucket_size 128;\n')
    for i in range(n):
        f.write(f'upstream app{i} {{ server 127.0.0.1:{up}; keepalive 8; }}\n')
    loc = 'proxy_http_version 1.1; proxy_set_header Connection "";'
    for i in range(n):
        f.write(f'server {{ listen 127.0.0.1:{ng}; server_name site{i}.example.com;\n'
                f' location /api/ {{ proxy_pass http://app{i}; {loc} }}\n'
                f' location / {{ proxy_pass http://app{i}; {loc} }} }}\n')
    f.write('}\n')
EOF

# pss_kib PID...: proportional set size, summed (shared pages split between sharers).
pss_kib() {
    local t=0
    for p in "$@"; do t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
    echo $t
}
node() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f s", b - a }'; }

echo "$SITES sites, 2 workers"
/usr/bin/time -f "proxyctl -t: %e s, %M KB peak" "$BIN/proxyctl" -t -q -c "$WORK/proxyd.toml" 2>&1 | tail -1
/usr/bin/time -f "nginx -t:    %e s, %M KB peak" nginx -q -t -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" 2>&1 | tail -1

start_upstream "$UP" 100
"$BIN/proxyd" -c "$WORK/proxyd.toml" 2>"$WORK/proxyd-stderr.log" &
PIDS+=($!)
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
for port in $PX $NG; do
    for _ in $(seq 200); do
        curl -sf -o /dev/null -H "Host: site$((SITES - 1)).example.com" "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
done
sleep 1
px=$(cat "$WORK/proxyd.pid") ng=$(cat "$WORK/nginx.pid")
printf "%-8s %14s %14s\n" "" "PSS at start" "after reloads"
p0=$(pss_kib $(node "$px")) n0=$(pss_kib $(node "$ng"))

ptimes=() ntimes=()
for _ in $(seq "$RELOADS"); do
    t=$(date +%s.%N)
    "$BIN/proxyctl" -c "$WORK/proxyd.toml" reload >/dev/null
    ptimes+=("$(elapsed "$t")")
    t=$(date +%s.%N)
    nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" -s reload
    ntimes+=("$(elapsed "$t")")
    sleep 3   # old workers gone (nothing to drain)
done
p1=$(pss_kib $(node "$px")) n1=$(pss_kib $(node "$ng"))
printf "%-8s %14s %14s\n" proxyd "$(mb "$p0")" "$(mb "$p1")"
printf "%-8s %14s %14s\n" nginx "$(mb "$n0")" "$(mb "$n1")"
awk -v a="$p0" -v b="$n0" -v c="$p1" -v d="$n1" \
    'BEGIN { printf "ratio    %14.2f %14.2f   (proxyd / nginx)\n", a / b, c / d }'
echo "reload: proxyd ${ptimes[*]} (until the new generation serves); nginx ${ntimes[*]} (signal sent)"
kill "$px"
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" -s stop
