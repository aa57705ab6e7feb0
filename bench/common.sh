# Shared by the bench scripts: a work dir cleaned up on exit, the release
# build, one nginx upstream serving a static body, and proxyd / nginx / HAProxy configured
# alike in front of it, and a wrk measurement with the proxy's CPU. Everything listens on
# 127.0.0.1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIDS=()

# bench_setup TAG: checks tools, makes $WORK, builds proxyd, arranges cleanup.
bench_setup() {
    for tool in nginx wrk; do
        command -v "$tool" >/dev/null || { echo "$1: $tool not found (apt-get install -y nginx wrk)" >&2; exit 2; }
    done
    WORK=$(mktemp -d "/tmp/proxyd-$1.XXXXXX")
    chmod 755 "$WORK"   # nginx workers run as nobody
    trap bench_cleanup EXIT
    (cd "$ROOT" && cargo build --release --quiet)
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for f in up nginx haproxy; do
        [ -f "$WORK/$f.pid" ] && kill "$(cat "$WORK/$f.pid")" 2>/dev/null || true
    done
    sleep 0.3
    rm -rf "$WORK"
}

# start_upstream PORT BODY_SIZE: nginx with one worker serving BODY_SIZE bytes, keep-alive.
start_upstream() {
    head -c "$2" /dev/zero | tr '\0' 'x' > "$WORK/body.txt"
    head -c 65536 /dev/zero | tr '\0' 'y' > "$WORK/big.txt"
    cat > "$WORK/up.conf" <<CONF
worker_processes 1;
pid $WORK/up.pid;
error_log $WORK/up-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$1;
        location / { root $WORK; try_files /body.txt =404; }
        location = /big { root $WORK; try_files /big.txt =404; }
        # The same 100 B answered in one segment, head and body in one write (as most
        # application servers answer small responses); the file locations above write the
        # head and then the body. Only for bodies nginx takes inline (up to 4 KiB).
        $([ "$2" -le 4096 ] && echo "location = /one { default_type text/plain; return 200 \"$(cat "$WORK/body.txt")\"; }")
        # Reads the whole request body before answering (mirror does), so a slow body
        # reaches the upstream through the proxies (bench/slow.sh).
        location /slow { root $WORK; mirror /mirror; try_files /body.txt =404; }
        location = /mirror { internal; return 204; }
    }
}
CONF
    nginx -c "$WORK/up.conf" -e "$WORK/up-error.log"
}

# The start_* functions take what a workload adds to their server (TLS, for bench/tls.sh)
# from PROXYD_SERVER_EXTRA (lines of TOML), NGINX_LISTEN_OPTS and NGINX_SERVER_EXTRA,
# HAPROXY_BIND_OPTS and HAPROXY_GLOBAL_EXTRA; empty by default.

# start_proxyd WORKERS PORT UPSTREAM_PORT KEEPALIVE. PROXYD_NAME (default proxyd) names its
# files in $WORK (NAME.toml, NAME.pid), PROXYD_GLOBAL_EXTRA adds top-level lines and
# PROXYD_BIN picks the binary, for scripts that run several.
start_proxyd() {
    local name=${PROXYD_NAME:-proxyd}
    cat > "$WORK/$name.toml" <<CONF
worker_processes = $1
worker_connections = 16384
pid_file = "$WORK/$name.pid"
error_log = { path = "$WORK/$name-error.log", level = "warn" }
${PROXYD_GLOBAL_EXTRA:-}

[[upstream]]
name = "app"
peers = ["127.0.0.1:$3"]
keepalive = $4

[[server]]
listen = "127.0.0.1:$2"
keepalive_requests = 1000000
${PROXYD_SERVER_EXTRA:-}
[[server.route]]
path = "/"
upstream = "app"
CONF
    # In a session of its own, as systemd or a daemon's setsid puts a server: nginx and
    # HAProxy daemonize, and on a kernel with sched_autogroup (most desktops and many
    # servers) a proxy left in the script's session shares one scheduling group with wrk,
    # so the upstream preempts it instead of wrk (issue 22 measured it: the upstream behind
    # proxyd woke 3.5 times as often as behind the peers, and proxyd lost 8% of its req/s).
    setsid "${PROXYD_BIN:-$ROOT/target/release/proxyd}" -c "$WORK/$name.toml" 2>"$WORK/$name-stderr.log" &
    PIDS+=($!)
}

# start_nginx WORKERS PORT UPSTREAM_PORT KEEPALIVE
start_nginx() {
    cat > "$WORK/nginx.conf" <<CONF
worker_processes $1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$3; keepalive $4; }
    server {
        listen 127.0.0.1:$2${NGINX_LISTEN_OPTS:-};
        ${NGINX_SERVER_EXTRA:-}
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_buffering off;
            # What a careful operator sets for 64 KB responses (the 4 KiB default costs
            # nginx a read and a write per 4 KiB).
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;
        }
    }
}
CONF
    nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
}

# start_haproxy THREADS PORT UPSTREAM_PORT (does nothing when HAProxy is not installed)
start_haproxy() {
    command -v haproxy >/dev/null || return 0
    cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread $1
    maxconn 8192
    ${HAPROXY_GLOBAL_EXTRA:-}
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    maxconn 8192
    bind 127.0.0.1:$2${HAPROXY_BIND_OPTS:-}
    default_backend be
backend be
    server s1 127.0.0.1:$3
CONF
    haproxy -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid"
}

# wait_ready PORT...: until each answers HTTP.
wait_ready() {
    for port in "$@"; do
        for _ in $(seq 100); do
            curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
            sleep 0.05
        done
    done
}

# stop_proxies: stops proxyd, nginx and HAProxy (not the upstream), for a new configuration.
stop_proxies() {
    [ -f "$WORK/proxyd.pid" ] && kill "$(cat "$WORK/proxyd.pid")" 2>/dev/null || true
    [ -f "$WORK/base.pid" ] && kill "$(cat "$WORK/base.pid")" 2>/dev/null || true
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true
    sleep 1.5
}

# worker_pids NAME: the processes that serve requests (HAProxy is one process of threads).
worker_pids() {
    case $1 in
        proxyd | base) pgrep -P "$(cat "$WORK/$1.pid")" | tr '\n' ' ' ;;
        nginx) pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ' ;;
        haproxy) cat "$WORK/haproxy.pid" ;;
    esac
}

# build_base REV: a release proxyd built from REV, once, into /tmp/proxyd-bench-base-<sha>
# (kept for later runs); prints the binary's path.
build_base() {
    local sha dir
    sha=$(cd "$ROOT" && git rev-parse --short "$1")
    dir=/tmp/proxyd-bench-base-$sha
    if [ ! -x "$dir/target/release/proxyd" ]; then
        echo "building $sha into $dir (once)" >&2
        rm -rf "$dir/src-tree"
        mkdir -p "$dir/src-tree"
        (cd "$ROOT" && git archive --format=tar "$sha") | tar -x -C "$dir/src-tree"
        (cd "$dir/src-tree" && CARGO_TARGET_DIR="$dir/target" cargo build --release --quiet --bin proxyd) >&2
    fi
    echo "$dir/target/release/proxyd"
}

# cpu_ticks PID...: user+system clock ticks used so far, summed.
cpu_ticks() {
    local t=0
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo $t
}

# rss_kib PID...: resident memory, summed.
rss_kib() {
    local t=0
    for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done
    echo $t
}

# wrk_measure "PIDS" URL [WRK ARGS...] -> "rps p50 p99 cpu_us_per_request": a 1 s warm-up,
# then SECS seconds with CONNS connections; CPU counts the processes PIDS only.
wrk_measure() {
    local pids=$1 url=$2
    shift 2
    wrk -t1 -c"$CONNS" -d1s "$@" "$url" >/dev/null 2>&1 || true
    local t0 out t1
    # shellcheck disable=SC2086
    t0=$(cpu_ticks $pids)
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" 2>&1)
    t1=$(cpu_ticks $pids)
    echo "$out" | awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
                         if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
                         if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 } return v }
        /requests in/ { n = $1 } /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        END { printf "%s %s %s %.2f\n", rps, p50, p99, (n > 0 ? t * 1e6 / hz / n : 0) }'
}

# median: of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
