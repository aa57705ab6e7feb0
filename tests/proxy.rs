//! HTTP/1.1 proxying through the real proxyd binary to real upstreams on 127.0.0.1.

mod common;

use common::client::{checksum, get, pattern, Body, Client};
use common::upstream::Upstream;
use common::*;
use std::time::{Duration, Instant};

fn proxy_conf(up: &Upstream, extra_upstream: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
peers = ["{}"]
keepalive = 4
connect_timeout = "1s"
{extra_upstream}

[[server]]
listen = "127.0.0.1:{{port}}"
keepalive_requests = 10000
client_max_body_size = 0

[[server.route]]
path = "/"
upstream = "app"

[[server.route]]
path = "/fixed"
return = 201
body = "fixed body"
headers = {{ "X-Fixed" = "yes" }}
"#,
        up.addr()
    )
}

#[test]
fn methods_pass_through() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    for method in ["GET", "DELETE", "OPTIONS"] {
        let r = c.request(method, "/echo?x=1", Body::None).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("{method} /echo?x=1 len=0 sum=0"));
        assert_eq!(r.header("x-upstream"), Some("up1"));
    }
    for method in ["POST", "PUT"] {
        let r = c.request(method, "/echo", Body::Bytes(b"hello")).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            format!(
                "{method} /echo len=5 sum={}",
                checksum(b"hello".iter().copied())
            )
        );
    }
    let r = c.request("HEAD", "/big?n=1000", Body::None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body.is_empty());
    // Still usable after HEAD (no body was expected).
    let r = c.request("GET", "/x", Body::None).unwrap();
    assert_eq!(r.text(), "up1 /x");

    let r = c.request("GET", "/fixed", Body::None).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "fixed body");
    assert_eq!(r.header("x-fixed"), Some("yes"));

    assert!(
        wait_until(Duration::from_secs(2), || p.access_log().lines().count()
            == 8),
        "{}",
        p.access_log()
    );
    let log = p.access_log();
    assert!(log.contains("\"POST /echo HTTP/1.1\" 200 "), "{log}");
    assert!(log.contains("\"GET /fixed HTTP/1.1\" 201 10 "), "{log}");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn forwarded_headers_and_hop_by_hop() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    c.send(
        "GET",
        "/headers",
        &[
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("X-Forwarded-For", "10.1.1.1"),
            ("X-Custom", "kept"),
        ],
        Body::None,
    )
    .unwrap();
    let r = c.recv(false).unwrap();
    let head = r.text();
    assert!(head.contains("Host: test.local\r\n"), "{head}");
    assert!(
        head.contains("X-Forwarded-For: 10.1.1.1, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("X-Forwarded-Proto: http\r\n"), "{head}");
    assert!(head.contains("X-Custom: kept\r\n"), "{head}");
    assert!(
        !head.contains("X-Secret") && !head.contains("Keep-Alive"),
        "{head}"
    );
    assert!(head.starts_with("GET /headers HTTP/1.1\r\n"), "{head}");
}

#[test]
fn chunked_both_ways() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    let n = 300_000u64;
    let r = c.request("POST", "/echo", Body::Chunked(n, 7000)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("POST /echo len={n} sum={}", checksum((0..n).map(pattern)))
    );
    let r = c.request("GET", "/chunked?n=100000", Body::None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.len, 100_000);
    assert_eq!(
        r.sum,
        checksum((0..100_000u32).map(|i| b'a' + ((i % 4096) % 26) as u8))
    );
    // The connection is still in sync after a chunked response with trailers.
    let r = c.request("GET", "/after", Body::None).unwrap();
    assert_eq!(r.text(), "up1 /after");
}

#[test]
fn http10_client_gets_dechunked_body() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /chunked?n=10000 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 10_000);
}

#[test]
fn big_bodies_stream_with_bounded_memory() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"30s\""));
    let worker = p.worker_pids()[0];
    let mut c = Client::connect(&p.addr()).unwrap();
    // Warm up buffers and the pool so the baseline includes steady-state allocations.
    c.request("GET", "/x", Body::None).unwrap();
    let before = rss_kib(worker);
    let n = 10 * 1000 * 1000u64;
    let r = c.request("POST", "/echo", Body::Sized(n)).unwrap();
    assert_eq!(
        r.text(),
        format!("POST /echo len={n} sum={}", checksum((0..n).map(pattern)))
    );
    let mid = rss_kib(worker);
    c.keep_limit = 0;
    let m = 100 * 1000 * 1000u64;
    let r = c
        .request("GET", &format!("/big?n={m}"), Body::None)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.len, m);
    assert_eq!(r.sum, checksum((0..m).map(|i| ((i % 65536) % 251) as u8)));
    let after = rss_kib(worker);
    eprintln!(
        "worker RSS KiB: before {before}, after 10 MB upload {mid}, after 100 MB download {after}"
    );
    assert!(
        after < before + 10 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn upstream_connections_are_pooled() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    for i in 0..1000 {
        let r = c.request("GET", &format!("/n{i}"), Body::None).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("up1 /n{i}"));
    }
    assert_eq!(up.requests(), 1000);
    assert!(
        up.connections() <= 4,
        "{} upstream connections for 1000 requests",
        up.connections()
    );
    // An upstream that closes after a response is not reused, and the next request works.
    let r = c.request("GET", "/close", Body::None).unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .request("GET", "/again", Body::None)
        .unwrap_or_else(|e| panic!("{e}: {}", p.error_log()));
    assert_eq!(r.text(), "up1 /again");
}

#[test]
fn upstream_refused_gives_502_and_worker_lives() {
    let dead = free_port();
    let conf = format!(
        r#"
[[upstream]]
name = "dead"
peers = ["127.0.0.1:{dead}"]

[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
path = "/"
upstream = "dead"
"#
    );
    let p = Proxyd::start(1, &conf);
    let worker = p.worker_pids();
    for _ in 0..3 {
        let r = get(&p.addr(), "/").unwrap();
        assert_eq!(r.status, 502);
    }
    assert_eq!(p.worker_pids(), worker, "the worker must survive");
    assert!(
        p.error_log().contains("connect() to 127.0.0.1:"),
        "{}",
        p.error_log()
    );
    assert!(
        wait_until(Duration::from_secs(3), || p
            .access_log()
            .contains("\"GET / HTTP/1.1\" 502 ")),
        "{}",
        p.access_log()
    );
}

#[test]
fn upstream_silent_gives_504_after_timeout() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let worker = p.worker_pids();
    let start = Instant::now();
    let r = get(&p.addr(), "/silent").unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(900),
        "504 came after {took:?}, before the 1s read_timeout"
    );
    assert_eq!(p.worker_pids(), worker);
    assert!(
        p.error_log().contains("upstream timed out"),
        "{}",
        p.error_log()
    );
    // The same worker still proxies.
    assert_eq!(get(&p.addr(), "/ok").unwrap().text(), "up1 /ok");
}

#[test]
fn bad_requests_get_4xx_and_worker_lives() {
    let up = Upstream::start("up1");
    let p = Proxyd::start(1, &proxy_conf(&up, "read_timeout = \"1s\""));
    let worker = p.worker_pids();
    let cases: [(&[u8], u16); 5] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ];
    for (raw, want) in cases {
        let mut c = Client::connect(&p.addr()).unwrap();
        c.raw(raw).unwrap();
        let r = c.recv(false).unwrap();
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(raw));
        assert!(r.closes());
    }
    let mut c = Client::connect(&p.addr()).unwrap();
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    c.raw(huge.as_bytes()).unwrap();
    assert_eq!(c.recv(false).unwrap().status, 431);
    assert_eq!(p.worker_pids(), worker);
    assert_eq!(get(&p.addr(), "/ok").unwrap().status, 200);
}

#[test]
fn slow_request_body_gets_408() {
    let up = Upstream::start("up1");
    let conf = proxy_conf(&up, "read_timeout = \"5s\"").replace(
        "keepalive_requests = 10000",
        "keepalive_requests = 10000\nclient_body_timeout = \"500ms\"",
    );
    let p = Proxyd::start(1, &conf);
    let mut c = Client::connect(&p.addr()).unwrap();
    c.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly part")
        .unwrap();
    let start = Instant::now();
    let r = c.recv(false).unwrap();
    assert_eq!(r.status, 408);
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(get(&p.addr(), "/ok").unwrap().status, 200);
}

#[test]
fn listens_on_ipv4_and_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let up = Upstream::start("up1");
    let v6 = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = proxy_conf(&up, "read_timeout = \"5s\"").replace(
        "listen = \"127.0.0.1:{port}\"",
        &format!("listen = [\"127.0.0.1:{{port}}\", \"[::1]:{v6}\"]"),
    );
    let p = Proxyd::start(1, &conf);
    assert_eq!(get(&p.addr(), "/v4").unwrap().text(), "up1 /v4");
    let r = get(&format!("[::1]:{v6}"), "/headers").unwrap();
    assert!(
        r.text().contains("X-Forwarded-For: ::1\r\n"),
        "{}",
        r.text()
    );
}

#[test]
fn idle_keepalive_connections_hold_no_buffers() {
    let up = Upstream::start("up1");
    let conf = proxy_conf(&up, "read_timeout = \"5s\"");
    let p = Proxyd::start_with(1, "worker_connections = 4096", &conf);
    let worker = p.worker_pids()[0];
    // Warm up: buffers, pools and the slab's first growth.
    let mut warm: Vec<Client> = (0..50)
        .map(|_| Client::connect(&p.addr()).unwrap())
        .collect();
    for c in &mut warm {
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 201);
    }
    let before = rss_kib(worker);
    let n = 1000;
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::connect(&p.addr()).unwrap();
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 201);
        idle.push(c);
    }
    let after = rss_kib(worker);
    let per_conn = (after.saturating_sub(before)) * 1024 / n as u64;
    eprintln!("worker RSS KiB: {before} -> {after} with {n} idle keep-alive connections ({per_conn} bytes each)");
    // A 16 KiB buffer per idle connection would be 16 MB here.
    assert!(per_conn < 2048, "{per_conn} bytes per idle connection");
    // They are all still usable.
    for c in idle.iter_mut().step_by(100) {
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 201);
    }
}
