//! `/metrics` and the admin API in the detail an operator needs (issue 20): exact status
//! codes beside their class, client-connection states that sum to the open connections,
//! worker states, `process_*` per kind of process, each certificate's expiry, and each
//! health-checked peer's probes; the whole text read by Prometheus's parser and, when it is
//! installed, linted by promtool.

mod common;

use common::prom::{all, parse, promtool_check, sum, value, Sample};
use common::upstream::Upstream;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789";

fn admin(port: u16) -> String {
    format!("admin = {{ listen = \"127.0.0.1:{port}\", token = \"{TOKEN}\" }}")
}

/// The metrics text, parsed (and linted).
fn scrape(port: u16) -> Vec<Sample> {
    let (status, text) = admin_get(port, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    parse(&text)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A certificate's notAfter in seconds since the Unix epoch, as openssl and date read it.
fn not_after(cert: &std::path::Path) -> f64 {
    let out = Command::new("openssl")
        .args(["x509", "-enddate", "-noout", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text.trim().strip_prefix("notAfter=").unwrap().to_string();
    let out = Command::new("date")
        .args(["-d", &date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn codes_connections_workers_processes_and_certificates() {
    let up = Upstream::start("app");
    let admin_port = free_port();
    let tls_port = free_port();
    let certs = TempDir::new("certs");
    common::certs::cert(certs.path(), "site", &["tls.test"], false);
    let crt = certs.path().join("site.crt");
    let key = certs.path().join("site.key");
    let began = now();
    let p = Proxyd::start_with(
        2,
        &admin(admin_port),
        &format!(
            r#"
[[upstream]]
name = "app"
peers = ["{app}"]

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "site.test"
[[server.route]]
path = "/"
upstream = "app"

[[server]]
listen = "127.0.0.1:{tls_port}"
server_name = "tls.test"
tls = {{ cert = "{crt}", key = "{key}" }}
[[server.route]]
path = "/"
return = 204
"#,
            app = up.addr(),
            crt = crt.display(),
            key = key.display(),
        ),
    );
    // 599 and 418 are not in the table of codes: each counts as its class's "other".
    let sent = [(502, 2), (503, 1), (504, 3), (599, 1), (418, 1), (200, 2)];
    for (code, times) in sent {
        for _ in 0..times {
            let path = if code == 200 {
                "/a".to_string()
            } else {
                format!("/status?code={code}")
            };
            let r = get_close(&p.addr(), &path, "site.test", "");
            assert_eq!(r[9..12].parse::<u16>().unwrap(), code, "{r}");
        }
    }
    // Three idle keep-alive connections and one in the middle of a head.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("app /a") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        idle.push(s);
    }
    let mut partial = TcpStream::connect(p.addr()).unwrap();
    partial.write_all(b"GET /a HTTP/1.1\r\n").unwrap();

    // Gauges are published about once a second.
    let mut m = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        m = scrape(admin_port);
        sum(&m, "proxyd_connections", &[("state", "waiting")]) == 3.0
            && sum(&m, "proxyd_connections", &[("state", "reading")]) == 1.0
    }));
    let (_, text) = admin_get(admin_port, "/metrics", Some(TOKEN));
    promtool_check(&text);

    // Exact codes beside their class; a class's samples sum to its count.
    for (family, labels) in [
        ("proxyd_server_requests_total", ("server", "site.test")),
        ("proxyd_upstream_responses_total", ("upstream", "app")),
        ("proxyd_upstream_peer_responses_total", ("upstream", "app")),
    ] {
        let code = |class, code| value(&m, family, &[labels, ("class", class), ("code", code)]);
        assert_eq!(code("5xx", "502"), 2.0, "{family}");
        assert_eq!(code("5xx", "503"), 1.0, "{family}");
        assert_eq!(code("5xx", "504"), 3.0, "{family}");
        assert_eq!(code("5xx", "other"), 1.0, "{family}");
        assert_eq!(code("4xx", "other"), 1.0, "{family}");
        assert_eq!(sum(&m, family, &[labels, ("class", "5xx")]), 7.0);
        // Codes not seen have no sample: the label's values are the codes seen.
        assert!(all(&m, family, &[labels, ("code", "500")]).is_empty());
    }
    // The requests on the idle connections are 200s too.
    assert_eq!(
        value(&m, "proxyd_server_requests_total", &[("code", "200")]),
        5.0
    );

    // Connection states are a partition: they sum to the open connections, which the API
    // counts on its own.
    assert!(all(&m, "proxyd_connections", &[("state", "active")]).is_empty());
    assert_eq!(sum(&m, "proxyd_connections", &[]), 4.0);
    let (_, traffic) = admin_get(admin_port, "/api/traffic", Some(TOKEN));
    let traffic: serde_json::Value = serde_json::from_str(&traffic).unwrap();
    assert_eq!(traffic["connections"]["active"], 4, "{traffic}");

    // Worker states by name.
    assert_eq!(value(&m, "proxyd_workers", &[("state", "serving")]), 2.0);
    assert_eq!(value(&m, "proxyd_workers", &[("state", "starting")]), 0.0);
    assert_eq!(value(&m, "proxyd_workers", &[("state", "draining")]), 0.0);
    assert!(all(&m, "proxyd_workers", &[("state", "other")]).is_empty());

    // process_* per kind (no health check: no helper).
    let of = |name, kind| value(&m, name, &[("kind", kind)]);
    assert_eq!(of("proxyd_processes", "master"), 1.0);
    assert_eq!(of("proxyd_processes", "worker"), 2.0);
    assert!(all(&m, "proxyd_processes", &[("kind", "helper")]).is_empty());
    for kind in ["master", "worker"] {
        assert!(of("process_resident_memory_bytes", kind) > 1e6, "{kind}");
        assert!(of("process_open_fds", kind) >= 3.0, "{kind}");
        assert!(of("process_cpu_seconds_total", kind) >= 0.0, "{kind}");
        // Boot time is whole seconds: a second of slack either way.
        let start = of("process_start_time_seconds", kind);
        assert!(
            start >= began - 1.0 && start <= now() + 1.0,
            "{kind}: {start}"
        );
    }
    assert!(
        of("process_start_time_seconds", "master")
            <= of("process_start_time_seconds", "worker") + 1.0
    );
    // The master's open fds as /proc shows them (the scrape's own connection may come and
    // go between the two looks).
    let fds = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .unwrap()
        .count() as f64;
    assert!((of("process_open_fds", "master") - fds).abs() <= 2.0);

    // The certificate's notAfter as openssl reads it.
    let expiry = value(
        &m,
        "proxyd_tls_certificate_expiry_seconds",
        &[("server", "tls.test"), ("file", &crt.display().to_string())],
    );
    assert_eq!(expiry, not_after(&crt));
    assert_eq!(
        all(&m, "proxyd_tls_certificate_expiry_seconds", &[]).len(),
        1
    );

    // A worker's end leaves its CPU time counted.
    let cpu = of("process_cpu_seconds_total", "worker");
    drop(idle);
    drop(partial);
    let victim = p.worker_pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || {
        let w = p.worker_pids();
        w.len() == 2 && !w.contains(&victim)
    }));
    let m = scrape(admin_port);
    assert!(value(&m, "process_cpu_seconds_total", &[("kind", "worker")]) >= cpu);
    assert_eq!(value(&m, "proxyd_processes", &[("kind", "worker")]), 2.0);
}

#[test]
fn probes_are_counted_and_the_api_shows_the_last_one_and_latency() {
    let app = Upstream::start("app");
    let sick = Upstream::start("sick");
    let dead = free_port();
    let admin_port = free_port();
    let began = now();
    let p = Proxyd::start_with(
        1,
        &admin(admin_port),
        &format!(
            r#"
[[upstream]]
name = "app"
peers = ["{app}"]

[[upstream]]
name = "checked"
peers = ["{sick}", "127.0.0.1:{dead}"]
health_check = {{ path = "/healthz", interval = "100ms", timeout = "1s" }}

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "site.test"
[[server.route]]
path = "/"
upstream = "app"
"#,
            app = app.addr(),
            sick = sick.addr(),
        ),
    );
    for _ in 0..4 {
        get_close(&p.addr(), "/a", "site.test", "");
    }
    let sick_peer = sick.addr();
    let dead_peer = format!("127.0.0.1:{dead}");
    let probes = |m: &[Sample], peer: &str, result| {
        value(
            m,
            "proxyd_upstream_peer_probes_total",
            &[("upstream", "checked"), ("peer", peer), ("result", result)],
        )
    };
    let mut m = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        m = scrape(admin_port);
        probes(&m, &sick_peer, "ok") >= 2.0 && probes(&m, &dead_peer, "fail") >= 2.0
    }));
    let (_, text) = admin_get(admin_port, "/metrics", Some(TOKEN));
    promtool_check(&text);
    assert_eq!(probes(&m, &sick_peer, "fail"), 0.0);
    assert_eq!(probes(&m, &dead_peer, "ok"), 0.0);
    let last = |m: &[Sample], name, peer: &str| value(m, name, &[("peer", peer)]);
    assert_eq!(
        last(&m, "proxyd_upstream_peer_probe_success", &sick_peer),
        1.0
    );
    assert_eq!(
        last(&m, "proxyd_upstream_peer_probe_success", &dead_peer),
        0.0
    );
    for peer in [&sick_peer, &dead_peer] {
        let took = last(&m, "proxyd_upstream_peer_probe_duration_seconds", peer);
        // A probe ends by its timeout at the latest.
        assert!((0.0..=1.0).contains(&took), "{took}");
        let at = last(&m, "proxyd_upstream_peer_probe_timestamp_seconds", peer);
        assert!(at >= began && at <= now(), "{at}");
    }
    // No health check, no probe samples.
    assert!(all(
        &m,
        "proxyd_upstream_peer_probes_total",
        &[("upstream", "app")]
    )
    .is_empty());
    // Per-peer latency in /metrics too.
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_peer_response_duration_seconds_count",
            &[("upstream", "app")]
        ),
        4.0
    );

    // The peer goes away: its probes fail from then on.
    let ok_before = probes(&m, &sick_peer, "ok");
    drop(sick);
    assert!(wait_until(Duration::from_secs(10), || {
        m = scrape(admin_port);
        last(&m, "proxyd_upstream_peer_probe_success", &sick_peer) == 0.0
    }));
    assert!(probes(&m, &sick_peer, "fail") >= 1.0);
    assert!(probes(&m, &sick_peer, "ok") >= ok_before);

    // The API: each peer's last probe (result, reason, time, duration) and latency.
    let (_, body) = admin_get(admin_port, "/api/upstreams", Some(TOKEN));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let peer = |u: &str, p: &str| {
        v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == u)
            .and_then(|x| {
                x["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["peer"] == p)
            })
            .cloned()
            .unwrap_or_else(|| panic!("{u}/{p}: {body}"))
    };
    for p in [&sick_peer, &dead_peer] {
        let l = &peer("checked", p)["last_probe"];
        assert_eq!(l["ok"], false, "{l}");
        assert_eq!(l["result"], "connect failed", "{l}");
        let at = l["at_ms"].as_f64().unwrap() / 1e3;
        assert!(at >= began && at <= now(), "{l}");
        assert!(l["duration_seconds"].as_f64().unwrap() <= 1.0, "{l}");
        assert!(l["count"]["fail"].as_u64().unwrap() >= 1, "{l}");
    }
    let a = peer("app", &app.addr());
    assert!(a["last_probe"].is_null(), "{a}");
    let lat = &a["latency"]["response"];
    assert_eq!(lat["count"], 4, "{a}");
    assert_eq!(lat["le"].as_array().unwrap().last().unwrap(), 4, "{a}");
    let mean = lat["mean_seconds"].as_f64().unwrap();
    assert!(mean > 0.0 && mean * 4.0 <= lat["sum_seconds"].as_f64().unwrap() + 1e-9);
    assert_eq!(a["codes"]["200"], 4, "{a}");
    assert_eq!(v["le"].as_array().unwrap().len(), 11, "{body}");
    assert!(
        p.unexpected_errors(&["health check"]).is_empty(),
        "{}",
        p.error_log()
    );
}

/// Two servers of one name (the plain one that redirects beside the TLS one, both
/// example.com) are counted apart: the second one's label adds its address. They were one
/// series, their counts summed (found by the outside attacker).
#[test]
fn servers_of_one_name_are_counted_apart() {
    let admin_port = free_port();
    let other = free_port();
    let p = Proxyd::start_with(
        1,
        &admin(admin_port),
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"dup.test\"\n[[server.route]]\nreturn = 200\n\
             [[server]]\nlisten = \"127.0.0.1:{other}\"\nserver_name = \"dup.test\"\n[[server.route]]\nreturn = 204\n"
        ),
    );
    for _ in 0..3 {
        assert!(get_close(&p.addr(), "/", "dup.test", "").starts_with("HTTP/1.1 200"));
    }
    for _ in 0..2 {
        let r = get_close(&format!("127.0.0.1:{other}"), "/", "dup.test", "");
        assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    }
    let m = scrape(admin_port);
    let second = format!("dup.test@127.0.0.1:{other}");
    assert_eq!(
        sum(
            &m,
            "proxyd_server_requests_total",
            &[("server", "dup.test")]
        ),
        3.0
    );
    assert_eq!(
        sum(&m, "proxyd_server_requests_total", &[("server", &second)]),
        2.0
    );
}
