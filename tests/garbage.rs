//! Malformed and random input must never take a worker down: each connection gets a 4xx or
//! is closed, and the same worker keeps serving.

mod common;

use common::client::get;
use common::upstream::Upstream;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_requests_never_kill_the_worker() {
    let up = Upstream::start("up");
    let p = Proxyd::start(
        1,
        &app_conf(
            &up,
            "read_timeout = \"2s\"",
            "client_header_timeout = \"1s\"\nclient_body_timeout = \"1s\"",
            "fixed",
        ),
    );
    let worker = p.worker_pids();
    let seeds: [&[u8]; 4] = [
        b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /fixed HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
        b"GET /chunked?n=100 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ];
    let mut cases = Vec::new();
    let mut rng = XorShift(0x2545F4914F6CDD1D);
    for i in 0..400 {
        let mut msg = seeds[i % seeds.len()].to_vec();
        match rng.next() % 4 {
            0 => {
                // Flip a few bytes.
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % msg.len();
                    msg[at] = rng.next() as u8;
                }
            }
            1 => msg.truncate((rng.next() as usize) % msg.len()),
            2 => {
                msg = (0..1 + rng.next() % 300)
                    .map(|_| rng.next() as u8)
                    .collect()
            }
            _ => {
                // Repeat a slice in place.
                let a = (rng.next() as usize) % msg.len();
                let b = a + (rng.next() as usize) % (msg.len() - a);
                let piece = msg[a..b].to_vec();
                msg.splice(a..a, piece);
            }
        }
        cases.push(msg);
    }
    // Half the cases half-close after sending; the others leave the connection open and
    // rely on proxyd's timeouts. Ten clients at a time.
    let addr = p.addr();
    std::thread::scope(|scope| {
        for chunk in cases.chunks(40).enumerate() {
            let addr = addr.clone();
            scope.spawn(move || {
                let (n, chunk) = chunk;
                for (j, msg) in chunk.iter().enumerate() {
                    let mut s = std::net::TcpStream::connect(&addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(400)))
                        .unwrap();
                    let _ = s.write_all(msg);
                    if j % 2 == 0 {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    }
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    if !out.is_empty() {
                        assert!(
                            out.starts_with(b"HTTP/1.1 "),
                            "client {n} case {j}: {:?} -> {:?}",
                            String::from_utf8_lossy(msg),
                            String::from_utf8_lossy(&out)
                        );
                    }
                }
            });
        }
    });
    assert_eq!(
        p.worker_pids(),
        worker,
        "the worker must survive every case"
    );
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "fixed");
    assert!(!p.error_log().contains("panicked"), "{}", p.error_log());
}
