#!/usr/bin/env bash
# The files one GET walks through: a debug proxyd with one worker, a warm-up GET, then gdb
# on the worker with a breakpoint on every function of src/worker, src/http and
# src/router, and one GET on a new connection. Prints the counts of `count.py` (function
# entries, files, returns to a file already left, layer visits) from `Worker::accept` to
# `Worker::close`.
#
#   bench/walk/walk.sh [BINARY]          default target/debug/proxyd (cargo build first)
#   VERBOSE=1: print the sequence of layers; SAVE=FILE: keep the hits (file, function)
#
# Needs gdb and python3. Listens on 127.0.0.1 ports 18391-18392.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/debug/proxyd}
command -v gdb >/dev/null || apt-get install -y gdb >/dev/null
D=$(mktemp -d)
HITS=$D/hits.txt
cleanup() {
    [ -f "$D/p.pid" ] && kill "$(cat "$D/p.pid")" 2>/dev/null || true
    [ -n "${UP:-}" ] && kill "$UP" 2>/dev/null || true
    [ -n "${G:-}" ] && kill -9 "$G" 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT
python3 - <<'PY' &
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("127.0.0.1", 18391), H).serve_forever()
PY
UP=$!
cat > "$D/p.toml" <<CONF
worker_processes = 1
pid_file = "$D/p.pid"
error_log = { path = "$D/err.log", level = "warn" }
[[upstream]]
name = "app"
peers = ["127.0.0.1:18391"]
[[server]]
listen = "127.0.0.1:18392"
[[server.route]]
path = "/"
upstream = "app"
CONF
"$BIN" -c "$D/p.toml" &
sleep 1.5
curl -s http://127.0.0.1:18392/warm >/dev/null
W=$(pgrep -P "$(cat "$D/p.pid")" | head -1)
HITS=$HITS gdb -q -batch -p "$W" -x "$HERE/trace.py" >"$D/gdb.log" 2>&1 &
G=$!
for _ in $(seq 120); do grep -q "breakpoints" "$HITS" 2>/dev/null && break; sleep 1; done
sleep 2
curl -s http://127.0.0.1:18392/x -o /dev/null
sleep 3
kill -INT "$G" 2>/dev/null || true
sleep 1
[ -n "${SAVE:-}" ] && cp "$HITS" "$SAVE"
python3 "$HERE/count.py" "$HITS" ${VERBOSE:+x}
