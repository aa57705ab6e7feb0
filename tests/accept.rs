//! Accepting: each worker has its own SO_REUSEPORT socket per address (kept by the master),
//! so connections spread evenly over the workers; worker-count changes on reload keep every
//! socket; something else listening with SO_REUSEPORT on our address is refused.

mod common;

use common::client::{get, Body, Client};
use common::upstream::Upstream;
use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn conf(up: &Upstream, fixed_body: &str) -> String {
    app_conf(up, "", "", fixed_body)
}

/// Socket inodes of established TCP connections whose local port is `port`.
fn established_on(port: u16) -> HashSet<u64> {
    let mut set = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let local_port = f[1].rsplit(':').next().unwrap();
            if u16::from_str_radix(local_port, 16) == Ok(port) {
                set.insert(f[9].parse().unwrap());
            }
        }
    }
    set
}

/// How many of `conns` (socket inodes) each process holds.
fn held_by(pids: &[u32], conns: &HashSet<u64>) -> HashMap<u32, usize> {
    pids.iter()
        .map(|&pid| {
            let n = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                        .filter_map(|l| {
                            let l = l.to_string_lossy().into_owned();
                            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                        })
                        .filter(|ino: &u64| conns.contains(ino))
                        .count()
                })
                .unwrap_or(0);
            (pid, n)
        })
        .collect()
}

/// Opens `n` keep-alive connections, one request each, and keeps them open.
fn open_clients(addr: &str, n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::connect(addr).unwrap();
            let r = c.request("GET", &format!("/c{i}"), Body::None).unwrap();
            assert_eq!(r.status, 200);
            c
        })
        .collect()
}

fn split(p: &Proxyd, workers: usize) -> Vec<usize> {
    let pids = p.serving_pids();
    assert_eq!(pids.len(), workers, "{}", p.status());
    let mut counts: Vec<usize> = held_by(&pids, &established_on(p.port))
        .into_values()
        .collect();
    counts.sort();
    counts
}

/// One shared socket lets whichever worker wakes first take nearly everything; a socket per
/// worker lets the kernel spread them by address. 200 connections over 2 workers land
/// 100 +- 7 per worker (one standard deviation); 60 is more than five away.
#[test]
fn connections_spread_evenly_over_workers() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up, "x"));
    let clients = open_clients(&p.addr(), 200);
    let counts = split(&p, 2);
    eprintln!("2 workers, 200 connections: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
    assert!(counts[0] >= 60, "uneven split {counts:?}");
    drop(clients);

    // Four workers after a reload: the master adds two sockets to the group.
    p.rewrite(4, "", &conf(&up, "four"));
    let out = p.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "four");
    let clients = open_clients(&p.addr(), 400);
    let counts = split(&p, 4);
    eprintln!("4 workers, 400 connections: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 400, "{counts:?}");
    assert!(counts[0] >= 60, "uneven split {counts:?}");
    drop(clients);

    // Back to one worker: it takes all four sockets (none is closed: that would reset what
    // waits in its queue).
    p.rewrite(1, "", &conf(&up, "one"));
    assert!(p.ctl("reload").status.success());
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "one");
    let clients = open_clients(&p.addr(), 100);
    assert_eq!(split(&p, 1), vec![100]);
    drop(clients);
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

/// Listeners defer accept until a connection's first bytes arrive: a client that connects
/// and says nothing is held by the kernel, not by a worker, yet one that speaks late is
/// served, and a silent one is accepted after the kernel's hold and then timed out by
/// `client_header_timeout` like any other.
#[test]
fn silent_connections_wait_in_the_kernel_not_in_a_worker() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let up = Upstream::start("up");
    let p = Proxyd::start(
        1,
        &app_conf(&up, "", "client_header_timeout = \"1s\"", "late"),
    );
    let mut silent = TcpStream::connect(p.addr()).unwrap();
    let mut late = TcpStream::connect(p.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let held = held_by(&p.worker_pids(), &established_on(p.port));
    assert_eq!(
        held.values().sum::<usize>(),
        0,
        "accepted before a byte came: {held:?}"
    );

    late.write_all(b"GET /fixed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    late.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    late.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("late"),
        "{text}"
    );

    // The silent one: accepted after the hold, then closed at the header deadline (408 or a
    // bare close: nothing was sent, so nginx-style, no response is owed).
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let r = silent.read_to_end(&mut got);
    assert!(r.is_ok(), "{r:?} after {:?}", start.elapsed());
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408 "), "{got}");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

/// After `proxyctl reload` returns, no old worker accepts: every new connection, even one
/// made at once, is served by the new configuration.
#[test]
fn new_connections_after_reload_get_the_new_config() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up, "gen0"));
    // Keep the old workers busy with open connections, so they stay alive and draining.
    let mut held = open_clients(&p.addr(), 20);
    for gen in 1..=15 {
        p.rewrite(2, "", &conf(&up, &format!("gen{gen}")));
        let out = p.ctl("reload");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..10 {
            assert_eq!(
                get(&p.addr(), "/fixed").unwrap().text(),
                format!("gen{gen}"),
                "a connection made after reload {gen} returned"
            );
        }
        held.extend(open_clients(&p.addr(), 2));
    }
    for c in held.iter_mut() {
        // The drained old workers closed their idle keep-alive connections, or answer with
        // Connection: close; either way nothing was lost while they were open.
        let _ = c.send("GET", "/x", &[], Body::None);
    }
}

/// Another process listening on our address with SO_REUSEPORT (another proxyd, or nginx
/// with `reuseport`, as the same user) would silently get a share of our connections; the
/// master refuses to start instead.
#[test]
fn reuseport_squatter_is_refused() {
    use socket2::{Domain, Socket, Type};
    let port = free_port();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(16).unwrap();

    let dir = TempDir::new("squat");
    let d = dir.path().display();
    let conf = dir.write(
        "proxyd.toml",
        &format!(
            "pid_file = \"{d}/p.pid\"\ncontrol_socket = \"{d}/ctl.sock\"\n[[server]]\nlisten = \"127.0.0.1:{port}\"\n[[server.route]]\npath = \"/\"\nreturn = 200\nbody = \"x\"\n"
        ),
    );
    let out = std::process::Command::new(bin("proxyd"))
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started beside a squatter: {err}");
    assert!(
        err.contains(&format!("bind() to 127.0.0.1:{port} failed")) && err.contains("in use"),
        "{err}"
    );
    drop(s);
    let _ = Duration::ZERO;
}
