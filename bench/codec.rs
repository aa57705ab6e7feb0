//! Micro-benchmark of the HTTP/1 codecs: parse a typical request head and rewrite it for
//! the upstream, parse a typical response head and rewrite it for the client. Prints
//! nanoseconds and heap allocations per step (a counting global allocator); under
//! `valgrind --tool=callgrind` (with N=20000) it gives instruction counts that do not depend
//! on what else the machine is doing.
//!
//!   cargo run --release --example codec
//!   N=20000 valgrind --tool=callgrind target/release/examples/codec

use proxyd::alloc_count::{allocations, Counting};
use proxyd::config::filters::proxy_defaults;
use proxyd::http::headers::Headers;
use proxyd::http::{request, response};
use proxyd::worker::filters::{self, Cx};
use std::time::Instant;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` `n` times; prints nanoseconds and allocations per run.
fn step(name: &str, n: u32, mut f: impl FnMut()) {
    let before = allocations();
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let allocs = (allocations() - before) as f64 / f64::from(n);
    println!("{name:<16} {ns:>7.0} ns {allocs:>5.1} allocations");
}

fn main() {
    let req = b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk/4.2\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 21:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nLast-Modified: Mon, 23 Nov 2026 20:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"abc-64\"\r\nAccept-Ranges: bytes\r\n\r\n";
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let chain = proxy_defaults();
    let limits = request::Limits::default();
    let mut out = Vec::with_capacity(1024);
    // One header list for every head, as a worker keeps it.
    let mut headers = Headers::default();
    let cx = Cx {
        client_ip: "127.0.0.1",
        ..Cx::detached()
    };
    // Heads are parsed into reused memory, as the worker does (a fresh `request::parse`
    // allocates its strings).
    let mut h = request::RequestHead::default();
    step("request parse", n, || {
        let ok = request::parse_into(std::hint::black_box(req), &limits, &mut h).unwrap();
        std::hint::black_box((ok, &h));
    });
    // What goes upstream: the fields, the proxy chain over them, the codec.
    step("write_upstream", n, || {
        let raw = &req[..h.head_len];
        h.upstream_fields("app", &mut headers);
        filters::on_request(&chain, raw, &mut headers, &cx);
        h.write_upstream(raw, None, &headers, &mut out);
        std::hint::black_box(&out);
        out.clear();
    });
    let mut spans = Vec::new();
    step("response parse", n, || {
        let r = response::parse_reusing(
            std::hint::black_box(resp),
            false,
            std::mem::take(&mut spans),
        )
        .unwrap()
        .unwrap();
        spans = std::hint::black_box(r).into_spans();
    });
    let r = response::parse(resp, false).unwrap().unwrap();
    step("write_client", n, || {
        r.fields(&mut headers);
        filters::on_response(&chain, resp, &mut headers, &cx);
        r.write_client(resp, 1, true, &headers, &mut out);
        std::hint::black_box(&out);
        out.clear();
    });
}
