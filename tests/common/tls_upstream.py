#!/usr/bin/env python3
"""A TLS upstream for the tests: HTTP/1.1 with keep-alive over TLS, answering each request with
JSON saying what it saw: the SNI name, the client certificate's subject, which connection
(counted from 1) and which request on it, and the body length.

    tls_upstream.py CERT KEY [CLIENT_CA]

Listens on 127.0.0.1 (a free port, printed on the first line of stdout)."""
import itertools
import json
import socket
import ssl
import sys
import threading

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
if len(sys.argv) > 3:
    ctx.load_verify_locations(sys.argv[3])
    ctx.verify_mode = ssl.CERT_OPTIONAL


def on_sni(sock, name, _ctx):
    sock.sni_name = name


ctx.sni_callback = on_sni
conns = itertools.count(1)


def serve(raw, n):
    try:
        s = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()
        return
    subject = ""
    cert = s.getpeercert()
    if cert:
        subject = ",".join("%s=%s" % kv for rdn in cert.get("subject", ()) for kv in rdn)
    data = b""
    for req in itertools.count(1):
        try:
            while b"\r\n\r\n" not in data:
                got = s.recv(65536)
                if not got:
                    return
                data += got
            head, data = data.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(data) < length:
                got = s.recv(65536)
                if not got:
                    return
                data += got
            data = data[length:]
            body = json.dumps({
                "sni": getattr(s, "sni_name", None),
                "client": subject,
                "conn": n,
                "request": req,
                "body": length,
                "path": head.split(b" ")[1].decode(),
            }).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except (ssl.SSLError, OSError):
            return


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c, next(conns)), daemon=True).start()
