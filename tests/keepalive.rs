//! Client keep-alive, pipelining, request limits, aborts, draining, and upstream failures
//! in the middle of a response.

mod common;

use common::client::{get, Body, Client};
use common::upstream::Upstream;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn conf(up: &Upstream, server_extra: &str) -> String {
    app_conf(up, "read_timeout = \"5s\"", server_extra, "fixed")
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let mut c = Client::connect(&p.addr()).unwrap();
    c.raw(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /fixed HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(c.recv(false).unwrap().text(), "up /a");
    assert_eq!(c.recv(false).unwrap().text(), "fixed");
    assert!(c
        .recv(false)
        .unwrap()
        .text()
        .starts_with("POST /echo len=3 "));
    assert_eq!(c.recv(false).unwrap().text(), "up /b");
}

#[test]
fn keepalive_requests_limit_closes_the_connection() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, "keepalive_requests = 3"));
    let mut c = Client::connect(&p.addr()).unwrap();
    assert!(!c.request("GET", "/1", Body::None).unwrap().closes());
    assert!(!c.request("GET", "/fixed", Body::None).unwrap().closes());
    let r = c.request("GET", "/3", Body::None).unwrap();
    assert_eq!(r.text(), "up /3");
    assert!(
        r.closes(),
        "the last allowed request gets Connection: close"
    );
    assert!(c.is_closed());
}

#[test]
fn idle_keepalive_connection_is_closed_after_timeout() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, "keepalive_timeout = \"300ms\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 200);
    c.set_timeout(Duration::from_secs(3));
    let start = std::time::Instant::now();
    assert!(c.is_closed());
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn client_abort_is_logged_as_499_and_worker_lives() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let worker = p.worker_pids();
    {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        s.write_all(b"GET /sleep?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(3), || p
            .access_log()
            .contains("\" 499 ")),
        "{}",
        p.access_log()
    );
    assert_eq!(p.worker_pids(), worker);
    assert_eq!(get(&p.addr(), "/ok").unwrap().text(), "up /ok");
}

#[test]
fn upstream_failing_mid_response_cuts_the_client_and_worker_lives() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let worker = p.worker_pids();
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /truncate HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("Content-Length: 1000"));
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        body.len(),
        500,
        "the client sees a short body and a closed connection"
    );
    assert!(
        p.error_log().contains("prematurely closed"),
        "{}",
        p.error_log()
    );
    let r = get(&p.addr(), "/garbage").unwrap();
    assert_eq!(r.status, 502);
    assert!(
        p.error_log().contains("invalid header"),
        "{}",
        p.error_log()
    );
    assert_eq!(p.worker_pids(), worker);
    assert_eq!(get(&p.addr(), "/ok").unwrap().text(), "up /ok");
}

#[test]
fn draining_worker_answers_idle_connection_instead_of_dropping_it() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let mut c = Client::connect(&p.addr()).unwrap();
    assert!(!c.request("GET", "/fixed", Body::None).unwrap().closes());
    // The connection is idle in the old worker when the reload starts.
    let out = p.ctl("reload");
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(200));
    let r = c.request("GET", "/late", Body::None).unwrap();
    assert_eq!(r.text(), "up /late");
    assert!(
        r.closes(),
        "a draining worker answers with Connection: close"
    );
    // An idle connection that sends nothing is closed after the grace period.
    let mut idle = Client::connect(&p.addr()).unwrap();
    assert!(!idle.request("GET", "/fixed", Body::None).unwrap().closes());
    let out = p.ctl("reload");
    assert!(out.status.success());
    idle.set_timeout(Duration::from_secs(5));
    assert!(idle.is_closed());
}

#[test]
fn host_header_selects_the_server() {
    let p = Proxyd::start(
        1,
        r#"
[[server]]
listen = "127.0.0.1:{port}"
server_name = ["a.test"]
[[server.route]]
return = 200
body = "server a"

[[server]]
listen = "127.0.0.1:{port}"
server_name = ["*.b.test"]
[[server.route]]
return = 200
body = "server b"
[[server.route]]
path = "/only-x"
host = "x.b.test"
return = 200
body = "route x"
"#,
    );
    let ask = |host: &str, path: &str| {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        all[all.find("\r\n\r\n").unwrap() + 4..].to_string()
    };
    assert_eq!(ask("a.test", "/"), "server a");
    assert_eq!(ask("A.TEST:80", "/"), "server a");
    assert_eq!(ask("y.b.test", "/only-x"), "server b");
    assert_eq!(ask("x.b.test", "/only-x"), "route x");
    assert_eq!(
        ask("unknown", "/"),
        "server a",
        "first server is the default"
    );
}

#[test]
fn request_head_arriving_byte_by_byte_is_served() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    for b in
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("POST /echo len=3 "), "{text}");
}

#[test]
fn slow_request_head_is_dropped_after_header_timeout() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, "client_header_timeout = \"300ms\""));
    let mut c = Client::connect(&p.addr()).unwrap();
    c.raw(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    c.set_timeout(Duration::from_secs(3));
    let start = std::time::Instant::now();
    assert_eq!(c.recv(false).unwrap().status, 408);
    assert!(c.is_closed());
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "fixed");
}

#[test]
fn interim_100_continue_is_forwarded() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"hello").unwrap();
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("POST /echo len=5 "), "{text}");
}

/// Reads until the server closes; Err if the close was a reset.
fn read_to_close(s: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// A client that asks to close and has sent everything gets the whole response and a FIN
/// (proxyd closes at once, without lingering), even for a body far larger than the socket
/// buffers.
#[test]
fn client_close_gets_whole_response_and_fin() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    for path in ["/big?n=3000000", "/fixed", "/plain"] {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // Read slowly at first, so the response is still being written when it ends.
        std::thread::sleep(Duration::from_millis(100));
        let got = read_to_close(&mut s).expect("a FIN, not a reset");
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..end]);
        let body = &got[end..];
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len, "{path}: whole body before the close");
    }
}

/// Bytes sent after a `Connection: close` request (a client that pipelined anyway) never
/// turn the close into a reset that destroys the response: proxyd reads them while it
/// answers, or lingers for them (closing with unread input would send a reset).
#[test]
fn bytes_after_a_close_request_do_not_reset_the_response() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, ""));
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        // More than the socket buffers hold: the end of it is still in proxyd's send queue
        // when the response is done, and a reset would throw it away.
        s.write_all(b"GET /big?n=20000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        // The next request comes once proxyd is busy with this one.
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let got = read_to_close(&mut s).expect("a FIN, not a reset");
        assert!(got.len() > 20000000, "whole response: {} bytes", got.len());
        assert_eq!(
            String::from_utf8_lossy(&got).matches("HTTP/1.1 ").count(),
            1,
            "one response only"
        );
    }
}
