"""A small OTLP/HTTP (JSON) collector for tests: POST /v1/traces bodies are appended, one per
line, to the file given as argv[1]; it answers 200 {}. Prints its port, then serves until
killed. With argv[2] == "fail" it answers 503 instead. With argv[3] and argv[4] (a
certificate and its key) it speaks HTTPS."""
import http.server
import ssl
import sys

OUT = sys.argv[1]
FAIL = len(sys.argv) > 2 and sys.argv[2] == "fail"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(OUT, "ab") as f:
            f.write(self.path.encode() + b" " + self.headers.get("Content-Type", "").encode() + b"\t" + body + b"\n")
        reply = b"{}"
        self.send_response(503 if FAIL else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
