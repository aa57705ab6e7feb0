//! Upgrades and tunnels: a real WebSocket client and echo server (Python `websockets`)
//! through proxyd, messages both ways, a reload in the middle, a 1 MB message; a raw
//! upgraded byte stream with half-close; an idle tunnel closed after `tunnel_timeout`.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn script(name: &str) -> String {
    format!("{}/tests/ws/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn echo_server() -> (Proc, u16) {
    common::tools::need_python("websockets", "websockets>=13");
    let mut child = Command::new("python3")
        .arg(script("echo_server.py"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("echo server port");
    (Proc(child), port)
}

fn conf(up_port: u16, server_extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "ws"
peers = ["127.0.0.1:{up_port}"]

[[server]]
listen = "127.0.0.1:{{port}}"
{server_extra}

[[server.route]]
path = "/"
upstream = "ws"
"#
    )
}

#[test]
fn websocket_through_proxyd_survives_a_reload() {
    let (_server, port) = echo_server();
    let p = Proxyd::start(1, &conf(port, ""));
    let old_workers = p.serving_pids();
    let mut client = Command::new("python3")
        .arg(script("client.py"))
        .arg(format!("ws://127.0.0.1:{}/chat", p.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "client: {line}");
    // Reload while the tunnel is open: the old worker keeps it.
    let r = p.ctl("reload");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let new_workers = p.serving_pids();
    assert_ne!(new_workers, old_workers);
    assert!(
        old_workers.iter().all(|&w| alive(w)),
        "the old worker must keep the tunnel"
    );
    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = client.wait().unwrap();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(line.trim(), "OK", "client failed: {err}");
    assert!(status.success(), "{err}");
    // With its last tunnel closed, the old worker exits.
    assert!(
        wait_until(Duration::from_secs(5), || old_workers
            .iter()
            .all(|&w| !alive(w))),
        "old worker still running"
    );
    assert!(
        wait_until(Duration::from_secs(2), || p
            .access_log()
            .contains("\"GET /chat HTTP/1.1\" 101 ")),
        "{}",
        p.access_log()
    );
}

/// An upstream that answers one upgrade request with 101, then echoes bytes until EOF, then
/// says "bye" and closes (so half-close must work both ways).
fn raw_upgrade_upstream() -> (std::thread::JoinHandle<Vec<u8>>, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\nX-Up: 1\r\n\r\nwelcome;")
            .unwrap();
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
        s.write_all(b"bye").unwrap();
        let _ = s.shutdown(Shutdown::Write);
        head
    });
    (t, port)
}

#[test]
fn raw_upgrade_tunnels_bytes_and_half_closes() {
    let (up, port) = raw_upgrade_upstream();
    let p = Proxyd::start(1, &conf(port, ""));
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /t HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo/1\r\n\r\nearly;")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(b"welcome;early;") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nConnection: upgrade\r\nUpgrade: echo/1\r\n"),
        "{text}"
    );
    assert!(text.contains("X-Up: 1\r\n"), "{text}");
    // 256 KiB through the tunnel and back: backpressure both ways.
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sender = {
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            // Half-close: the upstream sees EOF, then answers "bye".
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e} after {} bytes", back.len()),
        }
    }
    sender.join().unwrap();
    assert_eq!(back.len(), data.len() + 3);
    assert!(back[..data.len()] == data[..], "tunnelled bytes differ");
    assert_eq!(&back[data.len()..], b"bye");
    let head = String::from_utf8(up.join().unwrap()).unwrap();
    assert!(
        head.contains("\r\nConnection: upgrade\r\nUpgrade: echo/1\r\n"),
        "{head}"
    );
}

#[test]
fn idle_tunnel_is_closed_after_tunnel_timeout() {
    let (_up, port) = raw_upgrade_upstream();
    let p = Proxyd::start(1, &conf(port, "tunnel_timeout = \"1s\""));
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /t HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let elapsed = start.elapsed();
    assert!(String::from_utf8_lossy(&got).contains("welcome;"));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[test]
fn upgrade_refused_by_the_upstream_stays_http() {
    let up = common::upstream::Upstream::start("plain");
    let p = Proxyd::start(1, &conf(up.port, ""));
    let mut c = common::client::Client::connect(&p.addr()).unwrap();
    c.send(
        "GET",
        "/headers",
        &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
        common::client::Body::None,
    )
    .unwrap();
    let r = c.recv(false).unwrap();
    assert_eq!(r.status, 200);
    // The upstream saw the upgrade request, answered 200: still plain HTTP on both sides.
    assert!(r.text().contains("Upgrade: websocket"), "{}", r.text());
    let r = c
        .request("GET", "/after", common::client::Body::None)
        .unwrap();
    assert_eq!(r.text(), "plain /after");
}
