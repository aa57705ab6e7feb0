//! Micro-benchmark of the HTTP/1 codecs: parse a typical request head and rewrite it for
//! the upstream, parse a typical response head and rewrite it for the client. Prints
//! nanoseconds per step; under `valgrind --tool=callgrind` (with N=20000) it gives
//! instruction counts that do not depend on what else the machine is doing.
//!
//!   cargo run --release --example codec
//!   N=20000 valgrind --tool=callgrind target/release/examples/codec

use proxyd::http::{filters, request, response};
use std::time::Instant;
fn main() {
    let req = b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk/4.2\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 21:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nLast-Modified: Mon, 23 Nov 2026 20:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"abc-64\"\r\nAccept-Ranges: bytes\r\n\r\n";
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let chain = filters::proxy_defaults();
    let limits = request::Limits::default();
    let mut out = Vec::with_capacity(1024);
    let fwd = request::Forwarding {
        client_ip: "127.0.0.1",
        proto: "http",
        default_host: "app",
    };
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(request::parse(std::hint::black_box(req), &limits).unwrap());
    }
    println!(
        "req parse {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let h = request::parse(req, &limits).unwrap().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        h.write_upstream(&req[..h.head_len], &fwd, &chain, &mut out);
        std::hint::black_box(&out);
        out.clear();
    }
    println!(
        "write_upstream {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(response::parse(std::hint::black_box(resp), false).unwrap());
    }
    println!(
        "resp parse {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let r = response::parse(resp, false).unwrap().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        r.write_client(resp, 1, true, &chain, &mut out).unwrap();
        std::hint::black_box(&out);
        out.clear();
    }
    println!(
        "write_client {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(proxyd::http::strict::line_endings_ok(std::hint::black_box(
            resp,
        )));
    }
    println!(
        "line_endings(resp) {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
