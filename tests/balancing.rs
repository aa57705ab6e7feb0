//! Upstream peer selection: weighted round-robin and failover to live peers.

mod common;

use common::client::{Body, Client};
use common::upstream::Upstream;
use common::*;

#[test]
fn weighted_round_robin_spreads_requests_by_weight() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let p = Proxyd::start(
        1,
        &format!(
            r#"
[[upstream]]
name = "app"
peers = [{{ addr = "{}", weight = 1 }}, {{ addr = "{}", weight = 3 }}]

[[server]]
listen = "127.0.0.1:{{port}}"
keepalive_requests = 10000
[[server.route]]
upstream = "app"
"#,
            a.addr(),
            b.addr()
        ),
    );
    let mut c = Client::connect(&p.addr()).unwrap();
    let mut seen = (0, 0);
    for i in 0..400 {
        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
        match r.header("x-upstream") {
            Some("a") => seen.0 += 1,
            Some("b") => seen.1 += 1,
            other => panic!("unexpected upstream {other:?}"),
        }
    }
    assert_eq!(seen, (100, 300));
    assert_eq!((a.requests(), b.requests()), (100, 300));
}

#[test]
fn dead_peer_is_skipped() {
    let live = Upstream::start("live");
    let dead = free_port();
    let p = Proxyd::start(
        1,
        &format!(
            r#"
[[upstream]]
name = "app"
peers = ["127.0.0.1:{dead}", "{}"]

[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
upstream = "app"
"#,
            live.addr()
        ),
    );
    let mut c = Client::connect(&p.addr()).unwrap();
    for i in 0..20 {
        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-upstream"), Some("live"));
    }
    // One failed connect marks the dead peer down; it is not retried on every request.
    let failures = p.error_log().matches("connect() to 127.0.0.1:").count();
    assert_eq!(failures, 1, "{}", p.error_log());
}

fn conf_with(peers: &str, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
peers = [{peers}]
{extra}

[[server]]
listen = "127.0.0.1:{{port}}"
keepalive_requests = 100000
[[server.route]]
upstream = "app"
"#
    )
}

/// Which upstream answered each of `n` requests (`target` may use {i}), one connection.
fn spread(p: &Proxyd, n: usize, target: &str, header: Option<(&str, String)>) -> Vec<String> {
    let mut c = Client::connect(&p.addr()).unwrap();
    (0..n)
        .map(|i| {
            let t = target.replace("{i}", &i.to_string());
            let h: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.send("GET", &t, &h, Body::None).unwrap();
            let r = c.recv(false).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-upstream").unwrap_or("?").to_string()
        })
        .collect()
}

fn count(v: &[String], name: &str) -> usize {
    v.iter().filter(|n| *n == name).count()
}

/// least_conn and random_two steer concurrent load away from a peer that holds its
/// connections long: 8 clients at once, each request to the slow peer takes 200 ms. Round
/// robin would give it half; these give it far less.
#[test]
fn least_conn_and_random_two_avoid_the_busy_peer() {
    use common::raw::{bytes, RawUpstream, Reply};
    for balance in ["least_conn", "random_two"] {
        let fast = Upstream::start("fast");
        let slow = RawUpstream::start(|_| {
            vec![
                Reply::Sleep(std::time::Duration::from_millis(200)),
                bytes("HTTP/1.1 200 OK\r\nX-Upstream: slow\r\nContent-Length: 0\r\n\r\n"),
            ]
        });
        let p = Proxyd::start(
            1,
            &conf_with(
                &format!("\"{}\", \"{}\"", fast.addr(), slow.addr()),
                &format!("balance = \"{balance}\""),
            ),
        );
        let addr = p.addr();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(&addr).unwrap();
                    let mut slow = 0;
                    for i in 0..40 {
                        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
                        assert_eq!(r.status, 200);
                        if r.header("x-upstream") == Some("slow") {
                            slow += 1;
                        }
                    }
                    slow
                })
            })
            .collect();
        let to_slow: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        eprintln!("{balance}: slow peer got {to_slow} of 320");
        assert!(to_slow < 80, "{balance}: slow peer got {to_slow} of 320");
        assert!(to_slow > 0, "{balance}: the slow peer was never tried");
    }
}

/// Removing one of ten peers remaps about a tenth of the keys (`balance = "hash"`), and the
/// same key always lands on the same peer.
#[test]
fn hash_ring_remaps_a_tenth_when_one_of_ten_peers_goes() {
    let ups: Vec<Upstream> = (0..10).map(|i| Upstream::start(&format!("u{i}"))).collect();
    let peers = |skip: Option<usize>| {
        ups.iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, u)| format!("\"{}\"", u.addr()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let extra = "balance = \"hash\"\nhash_key = \"header:x-user\"";
    let p = Proxyd::start(1, &conf_with(&peers(None), extra));
    let keys = 600;
    let route = |p: &Proxyd| -> Vec<String> {
        let mut c = Client::connect(&p.addr()).unwrap();
        (0..keys)
            .map(|k| {
                let id = format!("user-{k}");
                c.send("GET", "/", &[("X-User", &id)], Body::None).unwrap();
                c.recv(false)
                    .unwrap()
                    .header("x-upstream")
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let before = route(&p);
    assert_eq!(route(&p), before, "a key moved without any change");
    let per: Vec<usize> = (0..10).map(|i| count(&before, &format!("u{i}"))).collect();
    assert!(
        per.iter().all(|&n| (20..=110).contains(&n)),
        "uneven ring: {per:?}"
    );

    p.rewrite(1, "", &conf_with(&peers(Some(3)), extra));
    assert!(p.ctl("reload").status.success());
    let after = route(&p);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    for (a, b) in before.iter().zip(&after) {
        if a != b {
            assert_eq!(a, "u3", "a key moved from a peer that stayed");
        }
    }
    let share = moved as f64 / keys as f64;
    eprintln!("removing 1 of 10 peers moved {moved} of {keys} keys");
    assert!((0.04..=0.18).contains(&share), "moved {share}");
}

/// ip_hash keeps a client on one peer; first sends everything to the first live peer.
#[test]
fn ip_hash_and_first() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let peers = format!("\"{}\", \"{}\"", a.addr(), b.addr());
    let p = Proxyd::start(1, &conf_with(&peers, "balance = \"ip_hash\""));
    let v = spread(&p, 50, "/{i}", None);
    assert!(count(&v, "a") == 50 || count(&v, "b") == 50, "{v:?}");
    let p = Proxyd::start(1, &conf_with(&peers, "balance = \"first\""));
    assert_eq!(count(&spread(&p, 30, "/{i}", None), "a"), 30);
    let dead = free_port();
    let peers = format!("\"127.0.0.1:{dead}\", \"{}\", \"{}\"", a.addr(), b.addr());
    let p = Proxyd::start(1, &conf_with(&peers, "balance = \"first\""));
    assert_eq!(
        count(&spread(&p, 30, "/{i}", None), "a"),
        30,
        "standby order"
    );
}

/// Backup peers take traffic only while no primary is live; `down` peers never do.
#[test]
fn backup_and_down_peers() {
    let primary = Upstream::start("primary");
    let spare = Upstream::start("spare");
    let off = Upstream::start("off");
    let dead = free_port();
    let p = Proxyd::start(
        1,
        &conf_with(
            &format!(
                "\"{}\", {{ addr = \"{}\", backup = true }}, {{ addr = \"{}\", down = true }}",
                primary.addr(),
                spare.addr(),
                off.addr()
            ),
            "",
        ),
    );
    assert_eq!(count(&spread(&p, 20, "/{i}", None), "primary"), 20);
    assert_eq!(off.requests(), 0);
    // The primary is replaced by a dead address: the backup serves.
    let p2 = Proxyd::start(
        1,
        &conf_with(
            &format!(
                "\"127.0.0.1:{dead}\", {{ addr = \"{}\", backup = true }}",
                spare.addr()
            ),
            "",
        ),
    );
    assert_eq!(count(&spread(&p2, 20, "/{i}", None), "spare"), 20);
    assert_eq!(off.requests(), 0);
}

/// Every peer down: 503 with an error-log line naming the upstream, without trying them
/// again; `fail_open = true` tries them anyway.
#[test]
fn every_peer_down_gives_503_unless_fail_open() {
    let (d1, d2) = (free_port(), free_port());
    let peers = format!("\"127.0.0.1:{d1}\", \"127.0.0.1:{d2}\"");
    let p = Proxyd::start(1, &conf_with(&peers, ""));
    // The first request finds both dead (502); the next ones know it (503).
    let r = common::client::get(&p.addr(), "/").unwrap();
    assert_eq!(r.status, 502);
    for _ in 0..3 {
        let r = common::client::get(&p.addr(), "/").unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("503"));
    }
    let log = p.error_log();
    assert_eq!(log.matches("connect() to").count(), 2, "{log}");
    assert_eq!(
        log.matches("no live peers in upstream \"app\"").count(),
        3,
        "{log}"
    );

    // fail_open: with every peer down they are tried anyway (502 each time, never 503).
    let p = Proxyd::start(1, &conf_with(&peers, "fail_open = true"));
    for _ in 0..3 {
        assert_eq!(common::client::get(&p.addr(), "/").unwrap().status, 502);
    }
    let log = p.error_log();
    assert_eq!(log.matches("connect() to").count(), 6, "{log}");
    assert!(!log.contains("no live peers"), "{log}");
}
