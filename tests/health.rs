//! Active health checks, run once per node by the helper process: one probe per interval
//! whatever the worker count; peers go down after `fall` failed probes and come back after
//! `rise` good ones, and every worker follows at once; the verdicts survive a reload; a
//! killed helper is restarted.

mod common;

use common::client::{get, Body, Client};
use common::raw::{bytes, RawUpstream};
use common::upstream::Upstream;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn helper_pid(p: &Proxyd) -> Option<u32> {
    p.status()
        .lines()
        .find_map(|l| l.strip_prefix("helper: pid "))
        .and_then(|n| n.trim().parse().ok())
        .filter(|pid| p.worker_pids().contains(pid))
}

#[test]
fn one_probe_per_interval_whatever_the_worker_count() {
    let up = Upstream::start("up");
    let p = Proxyd::start(
        4,
        &app_conf_at(
            &up.addr(),
            "health_check = { path = \"/healthz\", interval = \"250ms\", timeout = \"1s\" }",
            "",
            "x",
        ),
    );
    std::thread::sleep(Duration::from_millis(2600));
    // 2.6 s at one probe per 250 ms is about 10; four workers probing would be about 40.
    let probes = up.requests();
    eprintln!("probes in 2.6 s with 4 workers: {probes}");
    assert!((5..=14).contains(&probes), "{probes} probes");
    let row = p.peer_row("app", &up.addr());
    assert_eq!(row.state(), "up", "{row:?}");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn peers_go_down_and_come_back_and_workers_follow() {
    let sick = Arc::new(AtomicBool::new(false));
    let s = sick.clone();
    let flaky = RawUpstream::start(move |r| {
        let status = if r.path() == "/healthz" && s.load(Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        vec![bytes(format!(
            "HTTP/1.1 {status}\r\nX-Upstream: flaky\r\nContent-Length: 2\r\n\r\nok"
        ))]
    });
    let steady = Upstream::start("steady");
    let dead = free_port();
    let conf = |fixed: &str| {
        app_conf_peers(
            &[flaky.addr(), steady.addr(), format!("127.0.0.1:{dead}")],
            "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"500ms\", rise = 2, fall = 2, status = \"200-299\", body = \"~^(ok|steady)\" }",
            "keepalive_requests = 100000",
            fixed,
        )
    };
    let p = Proxyd::start(2, &conf("one"));
    let dead_name = format!("127.0.0.1:{dead}");
    // The dead peer is found down by its first probe, before any request tries it.
    assert!(wait_until(Duration::from_secs(5), || p
        .peer_row("app", &dead_name)
        .state()
        == "down (health check)"));
    let spread = |n: usize| {
        let mut c = Client::connect(&p.addr()).unwrap();
        let mut flaky = 0;
        for i in 0..n {
            let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
            assert_eq!(r.status, 200);
            if r.header("x-upstream") == Some("flaky") {
                flaky += 1;
            }
        }
        flaky
    };
    assert_eq!(spread(40), 20, "two live peers share the load");
    assert!(
        !p.error_log().contains(&format!("connect() to {dead_name}")),
        "a request tried the dead peer"
    );

    // Sick: down after two failed probes; no request goes there meanwhile or after.
    sick.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || p
        .peer_row("app", &flaky.addr())
        .state()
        == "down (health check)"));
    assert_eq!(spread(30), 0);
    assert!(
        p.error_log().contains("is down (status 503)"),
        "{}",
        p.error_log()
    );

    // A reload keeps the verdict: the new workers avoid the sick peer from their first request.
    p.rewrite(2, "", &conf("two"));
    assert!(p.ctl("reload").status.success());
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "two");
    assert!(p.peer_row("app", &flaky.addr()).state() == "down (health check)");
    assert_eq!(spread(30), 0);

    // Well again: back after two good probes.
    sick.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || p
        .peer_row("app", &flaky.addr())
        .state()
        == "up"));
    assert_eq!(spread(40), 20);
    assert!(p.error_log().contains("is up again"));
}

#[test]
fn a_killed_health_checker_is_restarted() {
    let up = Upstream::start("up");
    let p = Proxyd::start(
        1,
        &app_conf_at(
            &up.addr(),
            "health_check = { type = \"tcp\", interval = \"100ms\" }",
            "",
            "x",
        ),
    );
    assert!(wait_until(Duration::from_secs(5), || helper_pid(&p).is_some()));
    let first = helper_pid(&p).unwrap();
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || helper_pid(&p)
        .is_some_and(|h| h != first)));
    assert!(p
        .error_log()
        .contains(&format!("helper process {first} killed by signal")));
    // tcp checks connect and send nothing: the peer saw connections but no requests.
    let probes = |p: &Proxyd| p.peer_row("app", &up.addr()).n("PROBES");
    let before = probes(&p);
    assert!(wait_until(Duration::from_secs(5), || probes(&p) > before + 2));
    assert_eq!(up.requests(), 0);
    assert!(p.peer_row("app", &up.addr()).state() == "up");
}

/// Issue 19 item 10: with a health check, a peer was not up until its first probe passed, so a
/// backend still starting when proxyd did (a cold boot, `systemctl restart`) turned requests
/// away. Peers start up, as in nginx and HAProxy: a failed first probe is one of `fall`;
/// `initial = "down"` keeps a peer out until a probe passes.
#[test]
fn health_checked_peers_start_up() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let app = RawUpstream::start(move |r| {
        let status = if r.path() == "/healthz" && !h.load(Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        vec![bytes(format!(
            "HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok"
        ))]
    });
    let probes = |app: &RawUpstream| {
        app.requests()
            .iter()
            .filter(|r| r.path() == "/healthz")
            .count()
    };
    let conf = |initial: &str| {
        app_conf_at(
            &app.addr(),
            &format!("health_check = {{ path = \"/healthz\", interval = \"2s\", fall = 3, rise = 1{initial} }}"),
            "",
            "x",
        )
    };
    let p = Proxyd::start(1, &conf(""));
    // Before any probe and after the first failed one, requests go through.
    assert_eq!(get(&p.addr(), "/a").unwrap().status, 200);
    assert!(wait_until(Duration::from_secs(5), || probes(&app) >= 1));
    // Time for the helper to read the 503 and record it (the old code then refused).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&p.addr(), "/b").unwrap().status, 200);
    assert_ne!(
        p.peer_row("app", &app.addr()).state(),
        "down (health check)"
    );
    drop(p);

    // initial = "down": turned away until a probe passes, then served.
    app.clear();
    let p = Proxyd::start(1, &conf(", initial = \"down\""));
    assert_eq!(get(&p.addr(), "/c").unwrap().status, 503);
    assert!(wait_until(Duration::from_secs(5), || probes(&app) >= 1));
    assert_eq!(get(&p.addr(), "/d").unwrap().status, 503);
    healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(6), || p
        .peer_row("app", &app.addr())
        .state()
        == "up"));
    assert_eq!(get(&p.addr(), "/e").unwrap().status, 200);
}

/// Issue 20: reloads in quick succession (several a second) once left an old helper running,
/// when the stop signal reached it before it had reset the master's handlers (it was recorded
/// and ignored): probes doubled for good. Children are forked with signals blocked until
/// their handlers are reset, and every helper exit is logged.
#[test]
fn rapid_reloads_leave_exactly_one_helper() {
    let up = Upstream::start("up");
    let p = Proxyd::start(
        1,
        &app_conf_at(
            &up.addr(),
            "health_check = { path = \"/healthz\", interval = \"200ms\", timeout = \"1s\" }",
            "",
            "x",
        ),
    );
    assert!(wait_until(Duration::from_secs(5), || helper_pid(&p).is_some()));
    for _ in 0..50 {
        p.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Settled: one worker and one helper, nothing else left of the earlier generations.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let kids = children_of(p.pid());
            kids.len() == 2 && helper_pid(&p).is_some_and(|h| kids.contains(&h))
        }),
        "children: {:?}",
        children_of(p.pid())
    );
    // One probe per interval: about 10 in 2 s (two helpers would make about 20).
    let before = up.requests();
    std::thread::sleep(Duration::from_millis(2000));
    let probes = up.requests() - before;
    assert!((5..=14).contains(&probes), "{probes} probes in 2 s");
    // Each one stopped was reaped (no zombie is left) and its exit logged (the error log
    // limits its lines per second, so the first one is looked for).
    assert!(wait_until(Duration::from_secs(10), || all_children(
        p.pid()
    ) == 2));
    let log = p.error_log();
    let first = log
        .split("started helper process ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    assert!(
        log.contains(&format!("helper process {first} killed by signal SIGTERM")),
        "{log}"
    );
}

/// Children of `pid` in any state, zombies included.
fn all_children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            rest.split_whitespace().nth(1) == Some(&pid.to_string())
        })
        .count()
}
