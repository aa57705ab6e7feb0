//! Large Content-Length bodies are spliced (upstream socket -> pipe -> client socket): they
//! arrive intact at every size around the threshold, bytes past the declared end never
//! reach another client, and a body cut short by the upstream cuts the client after every
//! byte that did arrive.

mod common;

use common::client::{checksum, pattern, Body, Client};
use common::raw::{ok, RawUpstream, Reply};
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn conf(up: &str) -> String {
    app_conf_at(up, "keepalive = 4", "", "fixed")
}

fn body(n: usize) -> Vec<u8> {
    (0..n as u64).map(pattern).collect()
}

fn response(n: usize) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    r.extend(body(n));
    r
}

/// Pipes a process holds (splicing keeps a few for reuse).
fn pipes_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn large_bodies_arrive_intact() {
    let up = RawUpstream::start(|r| {
        let n: usize = r.path().trim_start_matches('/').parse().unwrap_or(0);
        vec![Reply::Bytes(response(n))]
    });
    let p = Proxyd::start(1, &conf(&up.addr()));
    let worker = p.worker_pids()[0];
    let before = pipes_of(worker);
    let mut c = Client::connect(&p.addr()).unwrap();
    // Below, at and above the splice threshold (32 KiB), and far above a pipe (64 KiB).
    for n in [
        100,
        32 * 1024 - 1,
        32 * 1024,
        32 * 1024 + 1,
        65536,
        100_000,
        1 << 20,
        5 << 20,
    ] {
        let r = c.request("GET", &format!("/{n}"), Body::None).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.len as usize, n, "length of /{n}");
        assert_eq!(r.sum, checksum(body(n).into_iter()), "content of /{n}");
    }
    assert!(
        pipes_of(worker) >= before + 2,
        "large bodies went through a pipe"
    );
    // Several at once, each on its own connection, to a client that reads slowly.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let addr = p.addr();
            std::thread::spawn(move || {
                let n = 300_000 + i * 7919;
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                write!(
                    s,
                    "GET /{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(200));
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                assert_eq!(got[end..], body(n)[..], "slow reader of /{n}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

/// A response head is read in bites of 4 KiB while a body may follow to be spliced: heads
/// around and past that size, with bodies below and above the splice threshold, arrive whole.
#[test]
fn heads_larger_than_a_head_read_arrive_whole() {
    let up = RawUpstream::start(|r| {
        let mut parts = r.path().trim_start_matches('/').split('/');
        let pad: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let n: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nX-Pad: {}\r\nX-End: yes\r\n\r\n",
            "p".repeat(pad)
        )
        .into_bytes();
        head.extend(body(n));
        vec![Reply::Bytes(head)]
    });
    let p = Proxyd::start(1, &conf(&up.addr()));
    let mut c = Client::connect(&p.addr()).unwrap();
    for pad in [3000, 4000, 4096, 4097, 9000, 15000] {
        for n in [10, 20_000, 65_536, 300_000] {
            let r = c
                .request("GET", &format!("/{pad}/{n}"), Body::None)
                .unwrap();
            assert_eq!(r.status, 200, "/{pad}/{n}");
            assert_eq!(r.header("x-pad").map(str::len), Some(pad), "/{pad}/{n}");
            assert_eq!(r.header("x-end"), Some("yes"), "/{pad}/{n}");
            assert_eq!(r.len as usize, n, "length of /{pad}/{n}");
            assert_eq!(
                r.sum,
                checksum(body(n).into_iter()),
                "content of /{pad}/{n}"
            );
        }
    }
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn bytes_after_a_spliced_body_never_reach_the_next_client() {
    let forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let up = RawUpstream::start(move |r| match r.path() {
        "/big" => {
            let mut b = response(200_000);
            b.extend_from_slice(forged.as_bytes());
            vec![Reply::Bytes(b)]
        }
        _ => ok("genuine"),
    });
    let p = Proxyd::start(1, &conf(&up.addr()));
    for _ in 0..5 {
        let mut c = Client::connect(&p.addr()).unwrap();
        let r = c.request("GET", "/big", Body::None).unwrap();
        assert_eq!(r.len, 200_000);
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
fn spliced_body_cut_short_cuts_the_client_after_what_arrived() {
    let up = RawUpstream::start(|r| match r.path() {
        "/cut" => {
            let mut b = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
            b.extend(body(300_000));
            vec![
                Reply::Bytes(b),
                Reply::Sleep(Duration::from_millis(100)),
                Reply::Close,
            ]
        }
        _ => ok("fine"),
    });
    let p = Proxyd::start(1, &conf(&up.addr()));
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        got[end..],
        body(300_000)[..],
        "every byte that arrived, then the cut"
    );
    assert!(
        wait_until(Duration::from_secs(3), || p
            .error_log()
            .contains("upstream prematurely closed connection")),
        "{}",
        p.error_log()
    );
    // The worker lives and the next request is fine.
    let mut c = Client::connect(&p.addr()).unwrap();
    assert_eq!(c.request("GET", "/x", Body::None).unwrap().text(), "fine");
}

/// Clients that hang up in the middle of a spliced body: the worker lives, and neither
/// pipes nor sockets pile up.
#[test]
fn clients_leaving_mid_splice_leak_nothing() {
    let up = RawUpstream::start(|_| vec![Reply::Bytes(response(2 << 20))]);
    let p = Proxyd::start(1, &conf(&up.addr()));
    let worker = p.worker_pids()[0];
    let fds = || {
        std::fs::read_dir(format!("/proc/{worker}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    for i in 0..40 {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 1000 + i * 997];
        s.read_exact(&mut buf).unwrap();
        if i % 2 == 0 {
            // A reset rather than a FIN.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || fds() <= before + 2 * 64 + 8),
        "descriptors: {} before, {} after",
        before,
        fds()
    );
    let mut c = Client::connect(&p.addr()).unwrap();
    let r = c.request("GET", "/again", Body::None).unwrap();
    assert_eq!(r.len, 2 << 20);
    assert!(alive(worker));
    eprintln!("worker descriptors: {before} before, {} after", fds());
}

/// Clients that hang up together while their spliced bodies wait on a slow upstream (the
/// pipes empty: every byte so far was taken): each pipe is closed with its exchange, not
/// kept, so the worker's descriptors go back to what they were.
#[test]
fn pipes_of_splices_cut_short_are_closed_not_kept() {
    const N: usize = 20;
    let first = 40_000;
    let up = RawUpstream::start(move |_| {
        let mut head =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 200_000).into_bytes();
        head.extend(body(first));
        vec![
            Reply::Bytes(head),
            Reply::Sleep(Duration::from_secs(3)),
            Reply::Bytes(body(200_000 - first)),
        ]
    });
    let p = Proxyd::start(1, &conf(&up.addr()));
    let worker = p.worker_pids()[0];
    let before = pipes_of(worker);
    let clients: Vec<std::net::TcpStream> = (0..N)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut clients: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            // The head and everything the upstream sent so far: the pipe is empty.
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while got.len() < first + 40 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s
        })
        .collect();
    assert!(
        pipes_of(worker) >= before + N / 2,
        "the bodies went through pipes"
    );
    clients.clear();
    assert!(
        wait_until(Duration::from_secs(5), || pipes_of(worker) <= before),
        "pipes: {before} before, {} after the clients left",
        pipes_of(worker)
    );
    assert!(alive(worker));
}
