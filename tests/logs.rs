//! Logs never block or flood: access-log lines are buffered and flushed within about a
//! second, at reopen and at exit; error-log lines from the data path are rate-limited.

mod common;

use common::client::{Body, Client};
use common::upstream::Upstream;
use common::*;
use std::time::Duration;

#[test]
fn buffered_access_lines_reach_the_file_within_a_second_and_at_exit() {
    let up = Upstream::start("up");
    let mut p = Proxyd::start(1, &app_conf(&up, "", "", "fixed"));
    let mut c = Client::connect(&p.addr()).unwrap();
    for _ in 0..50 {
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 200);
    }
    assert!(
        wait_until(Duration::from_millis(1500), || p
            .access_log()
            .lines()
            .count()
            == 50),
        "{}",
        p.access_log().lines().count()
    );
    // Lines still buffered when the worker exits are written on the way out.
    for _ in 0..30 {
        assert_eq!(c.request("GET", "/fixed", Body::None).unwrap().status, 200);
    }
    drop(c);
    p.signal(libc::SIGQUIT);
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(p.access_log().lines().count(), 80);
}

#[test]
fn upstream_outage_does_not_flood_the_error_log() {
    let dead = free_port();
    let conf = format!(
        "[[upstream]]\nname = \"dead\"\npeers = [\"127.0.0.1:{dead}\"]\n\n[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nkeepalive_requests = 100000\n[[server.route]]\npath = \"/\"\nupstream = \"dead\"\n"
    );
    let p = Proxyd::start(1, &conf);
    let mut c = Client::connect(&p.addr()).unwrap();
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(c.request("GET", "/", Body::None).unwrap().status, 502);
        n += 1;
    }
    std::thread::sleep(Duration::from_millis(1200));
    // Another request starts a new second, which reports what was dropped.
    assert_eq!(c.request("GET", "/", Body::None).unwrap().status, 502);
    let log = p.error_log();
    let lines = log.lines().count();
    assert!(
        n > 500,
        "only {n} requests; the test needs more to mean anything"
    );
    assert!(lines < n, "{lines} error-log lines for {n} failed requests");
    assert!(
        log.contains("error log lines suppressed in the last second"),
        "{log}"
    );
}

#[test]
fn lifecycle_events_reach_the_trace_sink() {
    let up = Upstream::start("up");
    let p = Proxyd::start_with(1, "", &app_conf(&up, "", "", "fixed"));
    // The standard header logs at info; a config with trace shows every event.
    let text = std::fs::read_to_string(&p.conf)
        .unwrap()
        .replace("level = \"info\"", "level = \"trace\"");
    std::fs::write(&p.conf, text).unwrap();
    assert!(p.ctl("reload").status.success());
    let mut c = Client::connect(&p.addr()).unwrap();
    assert_eq!(c.request("GET", "/x", Body::None).unwrap().status, 200);
    let log = p.error_log();
    for want in [
        "\"GET /x\" routed to server 0",
        "upstream 127.0.0.1:",
        "connected (reused: false)",
        "\"GET /x\": response 200 head after",
        "done 200 with 5 bytes",
    ] {
        assert!(
            wait_until(Duration::from_secs(2), || p.error_log().contains(want)),
            "{want}: {log}"
        );
    }
}

/// `level = "notice"` keeps what the node and its operators did (workers started, reloads,
/// signals) and drops info; `warn` drops notices too.
#[test]
fn notice_level_sits_between_info_and_warn() {
    let up = Upstream::start("up");
    let body = app_conf(&up, "", "client_header_timeout = \"300ms\"", "fixed");
    let p = Proxyd::start(1, &body);
    // A client that stalls in its head is closed with a line at info.
    let stall = |p: &Proxyd| {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n").unwrap();
        let mut b = [0u8; 64];
        let _ = std::io::Read::read(&mut s, &mut b);
    };
    stall(&p);
    let at_start = p.error_log();
    assert!(
        at_start.contains("[notice]") && at_start.contains("started worker process"),
        "{at_start}"
    );
    assert!(
        at_start.contains("[info]") && at_start.contains("timed out sending its request head"),
        "{at_start}"
    );

    let set_level = |level: &str| {
        let text = Proxyd::render(&p.dir, p.port, 1, "", &body)
            .replace("level = \"info\"", &format!("level = \"{level}\""));
        std::fs::write(&p.conf, text).unwrap();
        let len = p.error_log().len();
        let out = p.ctl("reload");
        assert!(out.status.success(), "{out:?}");
        len
    };
    let from = set_level("notice");
    stall(&p);
    p.signal(libc::SIGUSR1);
    assert!(wait_until(Duration::from_secs(5), || p.error_log()[from..]
        .contains("reopened log files")));
    let after = p.error_log()[from..].to_string();
    assert!(
        after.contains("[notice]") && after.contains("reload complete"),
        "{after}"
    );
    assert!(after.contains("SIGUSR1 received"), "{after}");
    assert!(!after.contains("[info]"), "{after}");

    let from = set_level("warn");
    p.signal(libc::SIGUSR1);
    stall(&p);
    let after = p.error_log()[from..].to_string();
    // "reload complete" may be written before the level changes; the reopen and the stall
    // that follow are surely under the new level.
    assert!(!after.contains("SIGUSR1 received"), "{after}");
    assert!(!after.contains("reopened log files"), "{after}");
    assert!(!after.contains("timed out"), "{after}");
}
