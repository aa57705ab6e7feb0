//! Regression tests for the defects found by using proxyd as a hostile client and upstream
//! would: each one failed before its fix.

mod common;

use common::client::{Body, Client};
use common::raw::{bytes, ok, RawUpstream, Reply};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn conf(up: &str, upstream_extra: &str, server_extra: &str) -> String {
    app_conf_at(up, upstream_extra, server_extra, "fixed")
}

/// Reads one response off a raw stream: (status line, head, body) for Content-Length ones.
fn read_response(s: &mut TcpStream) -> (String, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => panic!("eof in head: {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head.lines().next().unwrap().to_string(), head, body)
}

#[test]
fn response_without_reason_phrase_does_not_kill_the_worker() {
    let up = RawUpstream::start(|r| match r.path() {
        "/none" => vec![bytes("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")],
        "/space" => vec![bytes("HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok")],
        "/latin1" => vec![bytes(
            b"HTTP/1.1 200 \xc9t\xe9\r\nContent-Length: 2\r\n\r\nok",
        )],
        "/utf8" => vec![bytes("HTTP/1.1 200 Ça va\r\nContent-Length: 2\r\n\r\nok")],
        _ => ok("x"),
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "", ""));
    let workers = p.worker_pids();
    let mut c = Client::connect(&p.addr()).unwrap();
    for path in ["/none", "/space", "/latin1", "/utf8", "/none"] {
        let r = c.request("GET", path, Body::None).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{path}");
    }
    assert_eq!(p.worker_pids(), workers, "the worker must survive");
}

#[test]
fn connection_header_cannot_strip_request_framing() {
    let up = RawUpstream::start(|_| ok("seen"));
    let p = Proxyd::start(1, &conf(&up.addr(), "", ""));
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\nX-Pad: 1234\r\n\r\n";
    assert_eq!(smuggled.len(), 45);
    let attack = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 45\r\n\r\n{smuggled}"
    );
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(attack.as_bytes()).unwrap();
    let (line, _, body) = read_response(&mut s);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(body, b"seen");
    // A second, innocent request on another connection.
    let mut c = Client::connect(&p.addr()).unwrap();
    assert_eq!(
        c.request("GET", "/next", Body::None).unwrap().text(),
        "seen"
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].path(), "/");
    assert_eq!(reqs[0].header("content-length"), Some("45"));
    assert_eq!(reqs[0].body, smuggled.as_bytes());
    assert_eq!(reqs[1].path(), "/next");
    assert!(reqs.iter().all(|r| r.path() != "/admin"));
}

#[test]
fn connection_header_cannot_strip_response_framing() {
    let up = RawUpstream::start(|_| {
        vec![bytes(
            "HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding\r\nContent-Length: 5\r\n\r\nhello",
        )]
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "", ""));
    let mut c = Client::connect(&p.addr()).unwrap();
    for _ in 0..3 {
        let r = c.request("GET", "/", Body::None).unwrap();
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.text(), "hello");
    }
}

#[test]
fn bytes_after_a_full_buffer_never_reach_the_next_client() {
    // Head plus body fill the 16 KiB buffer exactly; the upstream then writes a forged
    // response that must never be read as the answer to another request.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: ";
    let body_len = 16 * 1024 - head.len() - 5 - 4;
    let fill = format!("{head}{body_len}\r\n\r\n{}", "a".repeat(body_len));
    assert_eq!(fill.len(), 16 * 1024);
    let forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let up = RawUpstream::start(move |r| match r.path() {
        "/fill" => vec![bytes(format!("{fill}{forged}"))],
        _ => ok("genuine"),
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "keepalive = 4", ""));
    for _ in 0..5 {
        let mut c = Client::connect(&p.addr()).unwrap();
        let r = c.request("GET", "/fill", Body::None).unwrap();
        assert_eq!(r.len as usize, body_len);
        let mut c = Client::connect(&p.addr()).unwrap();
        assert_eq!(
            c.request("GET", "/x", Body::None).unwrap().text(),
            "genuine"
        );
    }
    assert!(
        p.error_log()
            .contains("upstream sent more data than specified"),
        "{}",
        p.error_log()
    );
}

#[test]
fn bytes_after_the_body_in_the_same_read_are_dropped() {
    let up = RawUpstream::start(|r| {
        match r.path() {
        "/extra" => vec![bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
        )],
        _ => ok("genuine"),
    }
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "keepalive = 4", ""));
    let mut c = Client::connect(&p.addr()).unwrap();
    for _ in 0..3 {
        assert_eq!(c.request("GET", "/extra", Body::None).unwrap().text(), "ok");
        assert_eq!(
            c.request("GET", "/y", Body::None).unwrap().text(),
            "genuine"
        );
    }
}

#[test]
fn interim_flood_is_bounded() {
    let up = RawUpstream::start(|_| {
        vec![Reply::Flood(
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            Duration::from_secs(3),
        )]
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "", ""));
    let worker = p.worker_pids()[0];
    let before = rss_kib(worker);
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    // Do not read for a while: the flood must not pile up in the worker.
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(worker);
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.matches("100 Continue").count() <= 16, "{text}");
    assert!(text.contains("HTTP/1.1 502 "), "{text}");
    assert_eq!(p.worker_pids(), vec![worker]);
}

#[test]
fn idle_keepalive_connections_make_room_for_new_clients() {
    let up = RawUpstream::start(|_| ok("x"));
    let p = Proxyd::start_with(1, "worker_connections = 4", &conf(&up.addr(), "", ""));
    let mut idle: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = Client::connect(&p.addr()).unwrap();
            assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 200);
            std::thread::sleep(Duration::from_millis(20));
            c
        })
        .collect();
    let start = Instant::now();
    let mut fresh = Client::connect(&p.addr()).unwrap();
    fresh.set_timeout(Duration::from_secs(5));
    assert_eq!(
        fresh.request("GET", "/fixed", Body::None).unwrap().text(),
        "fixed"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // The oldest idle connection was closed to make room.
    idle[0].set_timeout(Duration::from_secs(2));
    assert!(idle[0].is_closed());
    assert!(
        wait_until(Duration::from_secs(2), || p
            .error_log()
            .contains("worker_connections are not enough, reusing connections")),
        "{}",
        p.error_log()
    );
}

#[test]
fn busy_connections_still_make_new_clients_wait() {
    let up = RawUpstream::start(|_| ok("x"));
    let p = Proxyd::start_with(1, "worker_connections = 4", &conf(&up.addr(), "", ""));
    // Four connections in the middle of a request head are not idle.
    let mut held: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = Client::connect(&p.addr()).unwrap();
            c.raw(b"GET /fixed HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut waiting = Client::connect(&p.addr()).unwrap();
    waiting.send("GET", "/fixed", &[], Body::None).unwrap();
    waiting.set_timeout(Duration::from_millis(300));
    assert!(waiting.recv(false).is_err(), "a fifth connection waits");
    held[0]
        .raw(b"Host: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(held[0].recv(false).unwrap().status, 200);
    waiting.set_timeout(Duration::from_secs(3));
    assert_eq!(waiting.recv(false).unwrap().text(), "fixed");
}

#[test]
fn trickled_request_head_gets_408_at_the_deadline() {
    let up = RawUpstream::start(|_| ok("x"));
    let p = Proxyd::start(1, &conf(&up.addr(), "", "client_header_timeout = \"1s\""));
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let start = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut got = Vec::new();
    for b in head {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut tmp = [0u8; 1024];
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&tmp[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(up.requests().is_empty());
}

#[test]
fn trickled_response_head_gets_504_at_the_deadline() {
    let up = RawUpstream::start(|_| {
        vec![Reply::Trickle(
            b"HTTP/1.1 200 OK\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Duration::from_millis(100),
        )]
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "read_timeout = \"1s\"", ""));
    let start = Instant::now();
    let mut c = Client::connect(&p.addr()).unwrap();
    let r = c.request("GET", "/", Body::None).unwrap();
    assert_eq!(r.status, 504);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn idle_upstream_connections_never_keep_clients_out() {
    let up = RawUpstream::start(|_| ok("x"));
    let p = Proxyd::start_with(
        1,
        "worker_connections = 3",
        &conf(&up.addr(), "keepalive = 8", ""),
    );
    // One proxied request leaves an idle upstream connection in the pool.
    let mut c = Client::connect(&p.addr()).unwrap();
    assert_eq!(c.request("GET", "/", Body::None).unwrap().text(), "x");
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    // Two busy clients (mid-head) plus the pooled connection fill the three slots.
    let mut busy: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect(&p.addr()).unwrap();
            c.raw(b"GET /fixed HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fresh = Client::connect(&p.addr()).unwrap();
    fresh.set_timeout(Duration::from_secs(2));
    assert_eq!(
        fresh.request("GET", "/fixed", Body::None).unwrap().text(),
        "fixed"
    );
    busy[0].raw(b"Host: a\r\n\r\n").unwrap();
    assert_eq!(busy[0].recv(false).unwrap().text(), "fixed");
}

#[test]
fn early_response_before_the_body_closes_the_client_connection() {
    // An upstream that answers as soon as it has the head, before any body byte.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut b).is_ok() {
                    head.push(b[0]);
                }
                let _ =
                    s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nnope");
                let mut sink = [0u8; 65536];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let p = Proxyd::start(1, &conf(&format!("127.0.0.1:{port}"), "", ""));
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial")
        .unwrap();
    let (line, head, body) = read_response(&mut s);
    assert_eq!(line, "HTTP/1.1 413 Content Too Large");
    assert_eq!(body, b"nope");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    // The unread body is never taken for a next request: the connection ends.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn timers_of_closed_connections_do_not_pile_up() {
    let up = RawUpstream::start(|_| ok("x"));
    let p = Proxyd::start(1, &conf(&up.addr(), "", "keepalive_timeout = \"1h\""));
    let text = std::fs::read_to_string(&p.conf)
        .unwrap()
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(&p.conf, text).unwrap();
    assert!(p.ctl("reload").status.success());
    // Each connection leaves a one-hour deadline behind when it closes.
    for _ in 0..3000 {
        let mut c = Client::connect(&p.addr()).unwrap();
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 200);
    }
    let log = p.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("timer heap compacted from"))
        .unwrap_or_else(|| panic!("no compaction logged"));
    // "... from N to M entries": what remains is about the live connections, not 3000.
    let after: usize = line
        .split(" to ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(after < 100, "{line}");
}

#[test]
fn a_fast_upload_yields_to_other_clients() {
    let up = common::upstream::Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up.addr(), "", "client_max_body_size = 0"));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uploader = {
        let (addr, done) = (p.addr(), done.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&addr).unwrap();
            let r = c.request("POST", "/echo", Body::Sized(400 << 20)).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r.status
        })
    };
    // Once the upload streams, other clients are still served in between.
    assert!(wait_until(Duration::from_secs(10), || up.requests() >= 1));
    let mut c = Client::connect(&p.addr()).unwrap();
    for _ in 0..20 {
        assert_eq!(
            c.request("GET", "/fixed", Body::None).unwrap().text(),
            "fixed"
        );
    }
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "the 20 requests waited for the whole upload"
    );
    assert_eq!(uploader.join().unwrap(), 200);
}

/// A peer whose connects never complete: a listener with a full accept queue (the kernel
/// drops the SYNs beyond it). Keep the returned sockets alive.
fn blackhole() -> (String, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut keep = vec![l];
    for _ in 0..4 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        let _ = c.connect(&addr.into());
        keep.push(c);
    }
    (addr.to_string(), keep)
}

/// Sends `request`, then a byte every 250 ms for eight seconds unless an answer comes;
/// returns what came.
fn trickle(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..32 {
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        if s.write_all(b"G").is_err() {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Issue 21 attack: a client that kept sending bytes (a body trickle, or pipelined bytes)
/// while the upstream connect was pending moved `connect_timeout` with every byte, so the
/// 504 never came while it trickled. The deadline runs from the connect's start, through
/// the TLS handshake after it.
#[test]
fn a_trickling_client_does_not_push_back_connect_timeout() {
    let (peer, _keep) = blackhole();
    let p = Proxyd::start(1, &conf(&peer, "connect_timeout = \"1s\"", ""));
    for request in [
        // Pipelined bytes after a complete GET.
        &b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        // A body sent a byte at a time.
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
    ] {
        // Eight times connect_timeout of trickling: the answer must come while it lasts.
        let text = trickle(&p.addr(), request);
        assert!(text.starts_with("HTTP/1.1 504 "), "{text:?}");
    }
    // A peer that takes the connection but never says a word of TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = silent.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let c = silent.accept();
        std::thread::sleep(Duration::from_secs(10));
        drop(c);
    });
    let upstream = "connect_timeout = \"1s\"\ntls = { verify = false }";
    let p = Proxyd::start(1, &conf(&peer, upstream, ""));
    let text = trickle(&p.addr(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 504 "), "{text:?}");
    drop(held);
}

/// Issue 21 attack (both builds): a body delimited by the upstream's close, cut by a reset,
/// went to the client as if whole (a FIN, and close_notify over TLS). A reset is a short
/// body: the client's connection is reset too, so it cannot take the part for the whole.
#[test]
fn a_body_read_until_close_and_cut_by_a_reset_is_not_passed_off_as_whole() {
    let up = RawUpstream::start(|_| {
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 100_000));
        vec![Reply::Bytes(head), Reply::Reset]
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "", ""));
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let end = loop {
        let mut buf = [0u8; 65536];
        match s.read(&mut buf) {
            Ok(0) => break "a clean end",
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "a reset",
            Err(e) => panic!("{e}"),
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(end, "a reset", "after {} bytes", got.len());
    assert!(p.error_log().contains("broke (reset)"), "{}", p.error_log());
}

/// Found while fixing the attack's connect finding (both builds): any move of the session
/// pushed every deadline back, so a client sending pipelined bytes kept an exchange whose
/// upstream stalled mid-body alive (and one that never read its response, likewise). A
/// deadline now moves only when what it waits for does.
#[test]
fn pipelined_bytes_do_not_keep_a_stalled_upstream_alive() {
    let up = RawUpstream::start(|_| {
        let mut part = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
        part.extend_from_slice(&[b'x'; 100]);
        vec![Reply::Bytes(part), Reply::Sleep(Duration::from_secs(20))]
    });
    let p = Proxyd::start(
        1,
        &conf(&up.addr(), "read_timeout = \"1s\"", "send_timeout = \"1s\""),
    );
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut got = Vec::new();
    let mut ended = false;
    // Eight times the timeouts of trickling: the exchange must end while it lasts.
    for _ in 0..32 {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                ended = true;
                break;
            }
            Err(_) => {}
        }
        if s.write_all(b"G").is_err() {
            ended = true;
            break;
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(ended, "still open after {} bytes", got.len());
    assert!(p.error_log().contains("timed out"), "{}", p.error_log());
}

/// A client with a small receive buffer that asks for `path` and reads nothing for
/// `stall`, then reads to the end: what came, and whether the end was a reset.
fn stalled_read(addr: &str, path: &str, stall: Duration) -> (usize, bool) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut s: TcpStream = s.into();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(stall);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut n, mut buf) = (0, [0u8; 65536]);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (n, false),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (n, true),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Second attack on issue 21 (both builds): a client that stopped reading its response
/// timed out as if the upstream had (`upstream_timeout`), so the healthy peer was charged a
/// failure and, with the default `consecutive_failures = 1`, ejected: two stalled clients
/// took a two-peer upstream out. And the cut was a clean close, which a client reading a
/// body delimited by the close takes for the whole body. Now it is the client's timeout: no
/// peer is charged, and the close is a reset.
#[test]
fn a_client_that_stops_reading_is_reset_and_charges_no_peer() {
    let body = |_: &common::raw::Request| {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        r.extend(std::iter::repeat_n(b'x', 20_000_000));
        vec![Reply::Bytes(r), Reply::Close]
    };
    let (a, b) = (RawUpstream::start(body), RawUpstream::start(body));
    let conf = app_conf_peers(&[a.addr(), b.addr()], "", "send_timeout = \"1s\"", "fixed");
    let p = Proxyd::start(1, &conf);
    for _ in 0..2 {
        let (got, reset) = stalled_read(&p.addr(), "/big", Duration::from_secs(3));
        assert!(got < 20_000_000, "{got}");
        assert!(
            reset,
            "a short body read until close ended cleanly after {got} bytes"
        );
    }
    let log = p.error_log();
    assert!(
        log.contains("client timed out reading the response"),
        "{log}"
    );
    assert!(
        !log.contains("ejected") && !log.contains("upstream timed out"),
        "{log}"
    );
    // Both peers still serve.
    let r = get_close(&p.addr(), "/fixed", "a", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let status = p.status();
    assert!(!status.contains("ejected"), "{status}");
}

/// Second attack on issue 21 (both builds): interim heads did not move the final head's
/// deadline, so an upstream sending 102/103 while it worked got a 504 at `read_timeout`.
/// A whole interim head now starts it again (at most MAX_INTERIM times).
#[test]
fn interim_heads_keep_a_working_upstream_from_a_504() {
    let up = RawUpstream::start(|_| {
        let mut steps = Vec::new();
        for _ in 0..5 {
            steps.push(bytes("HTTP/1.1 102 Processing\r\n\r\n"));
            steps.push(Reply::Sleep(Duration::from_millis(500)));
        }
        steps.extend(ok("done"));
        steps
    });
    let p = Proxyd::start(1, &conf(&up.addr(), "read_timeout = \"1s\"", ""));
    let r = get_close(&p.addr(), "/x", "a", "");
    assert!(r.contains("HTTP/1.1 200 OK") && r.ends_with("done"), "{r}");
}
