//! Reloads: in-flight requests survive, new config applies, broken configs are refused, and
//! nothing is lost under load.

mod common;

use common::client::get;
use common::load::Load;
use common::upstream::Upstream;
use common::*;
use std::time::Duration;

fn conf(up: &Upstream, fixed_body: &str) -> String {
    app_conf(up, "read_timeout = \"10s\"", "", fixed_body)
}

#[test]
fn sighup_keeps_in_flight_request_and_applies_new_config() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up, "old"));
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "old");
    let old_workers = p.worker_pids();
    let addr = p.addr();
    let slow = std::thread::spawn(move || get(&addr, "/sleep?ms=3000"));
    std::thread::sleep(Duration::from_millis(300));
    p.rewrite(2, "", &conf(&up, "new"));
    p.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || get(&p.addr(), "/fixed")
            .map(|r| r.text() == "new")
            .unwrap_or(false)),
        "new route not applied"
    );
    // The new workers answer as soon as they accept; the master names them serving once
    // every one of them reported in, which may be a moment later.
    let fresh = || {
        let new_workers = p.serving_pids();
        new_workers.len() == 2 && new_workers.iter().all(|w| !old_workers.contains(w))
    };
    assert!(
        wait_until(Duration::from_secs(5), fresh),
        "worker pids must change: {:?} then {:?}",
        old_workers,
        p.serving_pids()
    );
    let new_workers = p.serving_pids();
    let r = slow.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "in-flight request across reload");
    assert_eq!(r.text(), "slept");
    assert!(
        wait_until(Duration::from_secs(5), || old_workers
            .iter()
            .all(|w| !alive(*w))),
        "old workers did not exit after draining"
    );
    assert_eq!(p.worker_pids(), {
        let mut v = new_workers.clone();
        v.sort();
        v
    });
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn broken_config_reload_is_refused() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, "good"));
    let workers = p.worker_pids();
    let good = std::fs::read_to_string(&p.conf).unwrap();
    std::fs::write(
        &p.conf,
        good.replace("upstream = \"app\"", "upstream = \"missing\""),
    )
    .unwrap();
    let out = p.ctl("reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown upstream \"missing\""), "{err}");
    assert!(err.contains("proxyd.toml:"), "error names the file: {err}");
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "good");
    assert_eq!(get(&p.addr(), "/x").unwrap().text(), "up /x");
    assert_eq!(p.worker_pids(), workers, "old generation keeps serving");
    assert!(p.error_log().contains("reload failed"), "{}", p.error_log());
    assert!(
        p.error_log().contains("unknown upstream \"missing\""),
        "{}",
        p.error_log()
    );
    // A listener that cannot be bound also fails the reload as a whole.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = blocker.local_addr().unwrap().port();
    let text = good
        .replace(
            "listen = \"127.0.0.1:",
            &format!("listen = [\"127.0.0.1:{busy}\", \"127.0.0.1:"),
        )
        .replacen(&format!("{}\"\n", p.port), &format!("{}\"]\n", p.port), 1);
    std::fs::write(&p.conf, text).unwrap();
    let out = p.ctl("reload");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bind()"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "good");
    // And a good config reloads synchronously: when proxyctl returns, it serves.
    std::fs::write(
        &p.conf,
        good.replace("body = \"good\"", "body = \"better\""),
    )
    .unwrap();
    let out = p.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("generation 2 serving"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "better");
}

/// 50 clients (half keep-alive, half a new connection per request) during 10 reloads that
/// also change the number of workers.
#[test]
fn no_request_fails_during_reloads() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up, "gen0"));
    let load = Load::start(
        &p.addr(),
        50,
        |i, n| {
            if n.is_multiple_of(3) {
                "/fixed".to_string()
            } else {
                format!("/c{i}/{n}")
            }
        },
        |path, body| path == "/fixed" || body == format!("up {path}"),
    );
    std::thread::sleep(Duration::from_millis(300));
    for gen in 1..=10 {
        // The worker count changes too: sockets are added to the listening groups and
        // shared out anew, and none is closed.
        p.rewrite([2, 3, 1][gen % 3], "", &conf(&up, &format!("gen{gen}")));
        let out = p.ctl("reload");
        assert!(
            out.status.success(),
            "reload {gen}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    eprintln!(
        "reload stress: {ok} requests succeeded, {} failed over 10 reloads",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failures, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 1000, "only {ok} requests");
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "gen10");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn reload_adds_and_removes_listeners() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up, "one"));
    let second = free_port();
    let both = conf(&up, "two").replace(
        "listen = \"127.0.0.1:{port}\"",
        &format!("listen = [\"127.0.0.1:{{port}}\", \"127.0.0.1:{second}\"]"),
    );
    p.rewrite(1, "", &both);
    assert!(p.ctl("reload").status.success());
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "two");
    assert_eq!(
        get(&format!("127.0.0.1:{second}"), "/fixed")
            .unwrap()
            .text(),
        "two"
    );
    let only_second = conf(&up, "three").replace(
        "listen = \"127.0.0.1:{port}\"",
        &format!("listen = \"127.0.0.1:{second}\""),
    );
    p.rewrite(1, "", &only_second);
    assert!(p.ctl("reload").status.success());
    assert_eq!(
        get(&format!("127.0.0.1:{second}"), "/fixed")
            .unwrap()
            .text(),
        "three"
    );
    assert!(
        wait_until(Duration::from_secs(3), || std::net::TcpStream::connect(
            p.addr()
        )
        .is_err()),
        "the removed listener must be closed"
    );
}

/// Reloads under slow downloads do not pile up draining generations: past
/// `max_draining_generations` the oldest is told to finish (its idle connections closed, its
/// in-flight downloads cut after a short grace), and `proxyctl status` shows each draining
/// generation with its age, connections (a slow download: its client and upstream) and memory.
#[test]
fn draining_generations_stay_bounded() {
    let up = Upstream::start("up");
    let globals = "max_draining_generations = 2";
    let p = Proxyd::start_with(1, globals, &conf(&up, "gen0"));
    let mut slow = Vec::new();
    for gen in 1..=20 {
        // A download the client does not read: the worker keeps it in flight.
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        use std::io::Write;
        s.write_all(b"GET /big?n=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        slow.push(s);
        std::thread::sleep(Duration::from_millis(30));
        p.rewrite(1, globals, &conf(&up, &format!("gen{gen}")));
        let out = p.ctl("reload");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let draining = || {
        p.status()
            .lines()
            .filter(|l| l.starts_with("draining generation "))
            .count()
    };
    // Hurried generations get a second to finish what they have.
    assert!(
        wait_until(Duration::from_secs(5), || draining() <= 2
            && p.worker_pids().len() <= 3),
        "{} draining generations, {} workers:\n{}",
        draining(),
        p.worker_pids().len(),
        p.status()
    );
    let st = p.status();
    let line = st
        .lines()
        .find(|l| l.starts_with("draining generation "))
        .expect("the newest old generations still drain");
    assert!(
        line.contains("age ") && line.contains("connections 2") && line.contains("MiB"),
        "{line}"
    );
    assert!(p.error_log().contains("finishes now"), "{}", p.error_log());
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "gen20");
}
