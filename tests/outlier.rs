//! Passive health (outlier detection): failures in a row eject a peer for the node, each
//! ejection in a row lasts longer, an ejected peer comes back on trial (one failure ejects
//! it again, one success clears it), 5xx count only when asked, and no more than
//! `max_ejected_percent` of the peers are ejected at once.

mod common;

use common::client::{Body, Client};
use common::raw::{bytes, RawUpstream};
use common::upstream::Upstream;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn failing(name: &'static str, sick: Arc<AtomicBool>) -> RawUpstream {
    RawUpstream::start(move |_| {
        let status = if sick.load(Ordering::SeqCst) {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        vec![bytes(format!(
            "HTTP/1.1 {status}\r\nX-Upstream: {name}\r\nContent-Length: 0\r\n\r\n"
        ))]
    })
}

fn conf(peers: &[String], outlier: &str) -> String {
    app_conf_peers(
        peers,
        &format!("outlier = {{ {outlier} }}"),
        "keepalive_requests = 100000",
        "x",
    )
}

/// Names of the upstreams that answered `n` requests, and how many 500s came back.
fn run(p: &Proxyd, n: usize) -> (Vec<String>, usize) {
    let mut c = Client::connect(&p.addr()).unwrap();
    let mut names = Vec::new();
    let mut errors = 0;
    for i in 0..n {
        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
        if r.status == 500 {
            errors += 1;
        }
        names.push(r.header("x-upstream").unwrap_or("?").to_string());
    }
    (names, errors)
}

#[test]
fn five_hundreds_eject_a_peer_for_longer_each_time_and_a_success_clears_it() {
    let sick = Arc::new(AtomicBool::new(true));
    let bad = failing("bad", sick.clone());
    let good = Upstream::start("good");
    let p = Proxyd::start(
        2,
        &conf(
            &[bad.addr(), good.addr()],
            "consecutive_failures = 3, count_5xx = true, ejection = \"1s\", max_ejection = \"10s\"",
        ),
    );
    // Round-robin alternates; the bad peer answers 3 times (500 each), then is ejected for
    // every worker.
    let (names, errors) = run(&p, 30);
    assert_eq!(errors, 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "bad").count(), 3);
    let l = p.peer_row("app", &bad.addr());
    assert!(
        l.state().starts_with("ejected (") && l.n("EJECTIONS") == 1,
        "{l:?}"
    );
    assert!(
        p.error_log()
            .contains("ejected for 1000 ms (3 failures in a row)"),
        "{}",
        p.error_log()
    );

    // After the ejection: on trial, one failure ejects it again, for twice as long.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, errors) = run(&p, 10);
    assert_eq!(errors, 1);
    assert!(p
        .error_log()
        .contains("ejected for 2000 ms (failed again after its last ejection)"));
    assert!(p.peer_row("app", &bad.addr()).n("EJECTIONS") == 2);

    // Well again: the trial succeeds and the peer takes its share.
    sick.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2100));
    let (names, errors) = run(&p, 20);
    assert_eq!(errors, 0);
    assert_eq!(
        names.iter().filter(|n| *n == "bad").count(),
        10,
        "{names:?}"
    );
    assert!(p.peer_row("app", &bad.addr()).state() == "up");
}

#[test]
fn five_hundreds_pass_through_unless_counted() {
    let bad = failing("bad", Arc::new(AtomicBool::new(true)));
    let good = Upstream::start("good");
    let p = Proxyd::start(
        1,
        &conf(&[bad.addr(), good.addr()], "consecutive_failures = 1"),
    );
    let (_, errors) = run(&p, 20);
    assert_eq!(errors, 10, "a 5xx is an answer, not a failure, by default");
    assert!(p.peer_row("app", &bad.addr()).state() == "up");
}

#[test]
fn max_ejected_percent_keeps_some_peers_in_rotation() {
    let sick = Arc::new(AtomicBool::new(true));
    let a = failing("a", sick.clone());
    let b = failing("b", sick.clone());
    let p = Proxyd::start(
        1,
        &conf(
            &[a.addr(), b.addr()],
            "consecutive_failures = 1, count_5xx = true, ejection = \"30s\", max_ejected_percent = 50",
        ),
    );
    let (names, errors) = run(&p, 10);
    assert_eq!(errors, 10);
    // One was ejected; the other stays in rotation however often it fails.
    let ejected = [&a, &b]
        .iter()
        .filter(|u| p.peer_row("app", &u.addr()).state().starts_with("ejected"))
        .count();
    assert_eq!(ejected, 1, "{names:?}");
    assert!(p
        .error_log()
        .contains("not ejected: 1 of 2 already are (max_ejected_percent)"));
}

/// Issue 20: a lone peer is never ejected, as the README says: it kept receiving every
/// request (the balancer tries it anyway) while status showed it ejected and
/// proxyd_upstream_peer_up said 0.
#[test]
fn a_lone_peer_is_never_shown_ejected() {
    let dead = format!("127.0.0.1:{}", free_port());
    let p = Proxyd::start(
        1,
        &conf(std::slice::from_ref(&dead), "consecutive_failures = 1"),
    );
    for _ in 0..3 {
        assert_eq!(
            get_close(&p.addr(), "/", "t", "").split(' ').nth(1),
            Some("502")
        );
    }
    let row = p.peer_row("app", &dead);
    assert_eq!(row.state(), "up", "{row:?}");
    assert!(!p.error_log().contains("ejected for"), "{}", p.error_log());
}
