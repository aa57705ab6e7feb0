//! Service discovery: a peer given by host name is resolved (every address used) when the
//! config is loaded and again every `resolve_interval` by the helper process, once for the
//! node; changes reach every worker without a reload; a failing name server changes nothing;
//! `proxyctl -t` reports names that do not resolve. A DNS server written for the tests
//! (tests/common/dns.rs) answers on 127.0.0.1; the peers listen on other loopback addresses
//! (127.0.0.2-4) on one port, as one name's addresses would.

mod common;

use common::client::{Body, Client};
use common::dns::{Dns, Mode};
use common::upstream::Upstream;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

/// Three upstreams on 127.0.0.2, .3 and .4, on one port.
fn three() -> Vec<Upstream> {
    use std::net::TcpListener;
    for _ in 0..20 {
        let a = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if let (Ok(b), Ok(c)) = (
            TcpListener::bind(("127.0.0.3", port)),
            TcpListener::bind(("127.0.0.4", port)),
        ) {
            return vec![
                Upstream::on("a", a),
                Upstream::on("b", b),
                Upstream::on("c", c),
            ];
        }
    }
    panic!("no port free on 127.0.0.2-4");
}

fn globals(dns: &Dns) -> String {
    format!(
        "resolver = {{ servers = [\"{}\"], timeout = \"1s\", ipv6 = false }}",
        dns.addr()
    )
}

/// Three upstreams, a DNS server resolving "app.test" to `ips`, and proxyd with `workers`
/// in front of "app.test" on the upstreams' port, `extra` in its upstream table.
fn start(workers: usize, ips: &[&str], extra: &str) -> (Vec<Upstream>, Dns, Proxyd) {
    let ups = three();
    let dns = Dns::start();
    dns.set("app.test", ips);
    let conf = app_conf_at(&format!("app.test:{}", ups[0].port), extra, "", "x");
    let p = Proxyd::start_with(workers, &globals(&dns), &conf);
    (ups, dns, p)
}

/// Which upstream answered each of `n` requests (new connections, spread over workers).
fn spread(p: &Proxyd, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        let mut c = Client::connect(&p.addr()).unwrap();
        let r = c.request("GET", &format!("/r{i}"), Body::None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let who = r.text().split(' ').next().unwrap().to_string();
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

#[test]
fn every_address_is_used_and_dns_changes_apply_without_a_reload() {
    let (ups, dns, p) = start(
        2,
        &["127.0.0.2", "127.0.0.3"],
        "resolve_interval = \"200ms\"",
    );
    let port = ups[0].port;
    let workers = p.serving_pids();
    let seen = spread(&p, 40);
    assert_eq!(seen.len(), 2, "both addresses serve: {seen:?}");
    assert!(seen["a"] >= 10 && seen["b"] >= 10, "{seen:?}");
    let status = p.status();
    assert!(
        up_at(
            &status,
            &format!("app.test:{port}#0"),
            &format!("127.0.0.2:{port}")
        ),
        "{status}"
    );
    assert!(
        up_at(
            &status,
            &format!("app.test:{port}#1"),
            &format!("127.0.0.3:{port}")
        ),
        "{status}"
    );

    // .2 leaves the name, .4 joins: on the next resolution every worker follows, with a
    // keep-alive client too (its pooled connections to .2 are not reused).
    let mut kept = Client::connect(&p.addr()).unwrap();
    assert_eq!(kept.request("GET", "/k", Body::None).unwrap().status, 200);
    dns.set("app.test", &["127.0.0.3", "127.0.0.4"]);
    let moved = format!("added [127.0.0.4:{port}], removed [127.0.0.2:{port}]");
    assert!(
        wait_until(Duration::from_secs(5), || p.error_log().contains(&moved)),
        "{}",
        p.error_log()
    );
    let before_a = ups[0].requests();
    let seen = spread(&p, 40);
    assert_eq!(
        seen.get("a"),
        None,
        "the removed address gets nothing: {seen:?}"
    );
    assert!(seen["b"] >= 10 && seen["c"] >= 10, "{seen:?}");
    for i in 0..10 {
        let r = kept.request("GET", &format!("/k{i}"), Body::None).unwrap();
        assert_ne!(r.text().split(' ').next(), Some("a"), "{}", r.text());
    }
    assert_eq!(ups[0].requests(), before_a);
    assert_eq!(p.serving_pids(), workers, "no reload, no new workers");
    // The address that stayed kept its slot (#1); the new one took the free one (#0).
    let status = p.status();
    assert!(
        up_at(
            &status,
            &format!("app.test:{port}#1"),
            &format!("127.0.0.3:{port}")
        ),
        "{status}"
    );
    assert!(
        up_at(
            &status,
            &format!("app.test:{port}#0"),
            &format!("127.0.0.4:{port}")
        ),
        "{status}"
    );

    // A reload resolves again and keeps every address in its slot.
    let out = p.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = p.status();
    assert!(
        up_at(
            &again,
            &format!("app.test:{port}#1"),
            &format!("127.0.0.3:{port}")
        ),
        "{again}"
    );
    assert!(
        up_at(
            &again,
            &format!("app.test:{port}#0"),
            &format!("127.0.0.4:{port}")
        ),
        "{again}"
    );
    // The helper follows a name server that truncates its UDP answers (over TCP).
    dns.mode(Mode::Truncate);
    dns.set("app.test", &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let added = format!("added [127.0.0.2:{port}], removed []");
    assert!(
        wait_until(Duration::from_secs(5), || p.error_log().contains(&added)),
        "{}",
        p.error_log()
    );
    assert!(dns.tcp_queries() > 0);
    assert_eq!(spread(&p, 30).len(), 3);
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn a_failing_name_server_changes_nothing() {
    let (ups, dns, p) = start(
        1,
        &["127.0.0.2", "127.0.0.3"],
        "resolve_interval = \"100ms\"",
    );
    let port = ups[0].port;
    let lines = |what: &str| p.error_log().matches(what).count();
    let cases = [
        (
            Mode::Silent,
            "timed out; 1 failures in a row): its addresses stay as they were",
        ),
        (
            Mode::Fail,
            "ServerFailure; 1 failures in a row): its addresses stay as they were",
        ),
        // No such name any more: the last addresses known stay too.
        (
            Mode::Answer,
            "not found; 1 failures in a row): its addresses stay as they were",
        ),
    ];
    for (i, (mode, said)) in cases.into_iter().enumerate() {
        dns.mode(mode);
        if mode == Mode::Answer {
            dns.set("app.test", &[]);
        }
        assert!(
            wait_until(Duration::from_secs(10), || lines(said) == 1),
            "{}",
            p.error_log()
        );
        // Still failing: both addresses keep serving, and the log does not repeat itself
        // at every interval (once a minute at most).
        let seen = spread(&p, 20);
        assert!(seen["a"] >= 4 && seen["b"] >= 4, "{seen:?}");
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(lines("failures in a row"), i + 1, "{}", p.error_log());
        dns.mode(Mode::Answer);
        dns.set("app.test", &["127.0.0.2", "127.0.0.3"]);
        assert!(
            wait_until(Duration::from_secs(5), || lines("resolves again") == i + 1),
            "{}",
            p.error_log()
        );
    }
    // The name resolves to one address now.
    dns.set("app.test", &["127.0.0.4"]);
    assert!(wait_until(Duration::from_secs(5), || p
        .error_log()
        .contains(&format!(
            "added [127.0.0.4:{port}], removed [127.0.0.2:{port}, 127.0.0.3:{port}]"
        ))));
    assert_eq!(spread(&p, 5).get("c"), Some(&5));
}

#[test]
fn one_lookup_per_interval_for_the_whole_node() {
    let (_ups, dns, p) = start(4, &["127.0.0.2"], "resolve_interval = \"250ms\"");
    let at_start = dns.queries("app.test");
    std::thread::sleep(Duration::from_millis(2600));
    // 2.6 s at one lookup (one A query) per 250 ms is about 10; four workers resolving
    // would be about 40.
    let n = dns.queries("app.test") - at_start;
    eprintln!("lookups in 2.6 s with 4 workers: {n}");
    assert!((5..=14).contains(&n), "{n} lookups");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
}

#[test]
fn config_test_reports_names_that_do_not_resolve() {
    let dns = Dns::start();
    dns.set("app.test", &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    dns.set("empty.test", &[]);
    let dir = TempDir::new("discovery");
    let conf = |peers: &str, extra: &str| {
        format!(
            "{}\npid_file = \"{d}/p.pid\"\n[[upstream]]\nname = \"app\"\npeers = [{peers}]\n{extra}\n\
             [[server]]\nlisten = \"127.0.0.1:{port}\"\n[[server.route]]\npath = \"/\"\nupstream = \"app\"\n",
            globals(&dns),
            d = dir.path().display(),
            port = free_port(),
        )
    };
    let check = |text: &str| config_test(&dir, text);
    let (ok, out) = check(&conf("\"nope.test:80\"", ""));
    assert!(!ok, "{out}");
    assert!(out.contains("main.toml:5:"), "{out}");
    assert!(
        out.contains("cannot resolve peer \"nope.test:80\": \"nope.test\" not found"),
        "{out}"
    );
    let (ok, out) = check(&conf("\"app.test:80\", \"bad..name:80\"", ""));
    assert!(
        !ok && out.contains("invalid peer address \"bad..name:80\""),
        "{out}"
    );
    // A name with more addresses than a UDP answer carries: the server truncates it, and the
    // lookup asks again over TCP and gets them all.
    let many: Vec<String> = (1..=120).map(|i| format!("127.0.1.{i}")).collect();
    dns.set(
        "many.test",
        &many.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    dns.mode(Mode::Truncate);
    let (ok, out) = check(&conf("\"many.test:80\"", "max_addresses = 200"));
    assert!(ok, "{out}");
    assert!(dns.tcp_queries() >= 1);
    let (ok, out) = check(&conf("\"many.test:80\"", "max_addresses = 100"));
    assert!(
        ok && out.contains("resolves to 120 addresses; only the first 100 are used"),
        "{out}"
    );
    dns.mode(Mode::Answer);
    // More addresses than max_addresses: a warning, not an error.
    let (ok, out) = check(&conf("\"app.test:80\"", "max_addresses = 2"));
    assert!(ok, "{out}");
    assert!(
        out.contains("warning:")
            && out.contains("resolves to 3 addresses; only the first 2 are used"),
        "{out}"
    );
    // No name server answering: every name's lookup runs out of time (together: the test
    // takes one timeout, not three), and each says so.
    dns.mode(Mode::Silent);
    let (ok, out) = check(&conf("\"app.test:80\", \"b.test:80\", \"c.test:80\"", ""));
    assert!(!ok, "{out}");
    for name in ["app.test:80", "b.test:80", "c.test:80"] {
        assert!(
            out.contains(&format!(
                "cannot resolve peer \"{name}\": name server {} timed out",
                dns.addr()
            )),
            "{out}"
        );
    }
    // The hosts file is read first (so no name server is asked).
    let hosts = dir.write("hosts", "127.0.0.5 db.test db\n");
    let with_hosts = conf("\"db.test:80\", \"DB:81\"", "").replace(
        "ipv6 = false",
        &format!("ipv6 = false, hosts = \"{}\"", hosts.display()),
    );
    let (ok, out) = check(&with_hosts);
    assert!(ok, "{out}");
    assert_eq!(dns.queries("db.test"), 0);
    let (ok, out) = check(
        &with_hosts
            .replace("\"db.test:80\"", "\"x.test:80\"")
            .replace(&*hosts.to_string_lossy(), "/nonexistent/hosts"),
    );
    assert!(
        !ok && out.contains("main.toml:1:")
            && out.contains("cannot read hosts file /nonexistent/hosts"),
        "{out}"
    );
}

#[test]
fn each_address_has_its_own_health() {
    // Nothing listens on 127.0.0.5.
    let (ups, dns, p) = start(2, &["127.0.0.2", "127.0.0.5"], "resolve_interval = \"200ms\"\nhealth_check = { type = \"tcp\", interval = \"100ms\", timeout = \"1s\" }");
    let port = ups[0].port;
    let state_of = |addr: &str| {
        let status = p.status();
        ["#0", "#1"].iter().find_map(|slot| {
            let row = PeerRow::find(&status, "app", &format!("app.test:{port}{slot}"))?;
            (row.get("ADDRESS") == addr).then(|| row.state().to_string())
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || state_of(&format!(
            "127.0.0.5:{port}"
        ))
        .as_deref()
            == Some("down (health check)")),
        "{}",
        p.status()
    );
    assert_eq!(
        state_of(&format!("127.0.0.2:{port}")).as_deref(),
        Some("up"),
        "{}",
        p.status()
    );
    // Every request goes to the live address; the dead one's health is its own.
    assert_eq!(spread(&p, 20).get("a"), Some(&20));
    let log = p.error_log();
    assert!(
        log.contains(&format!(
            "health check: peer app.test:{port} (127.0.0.5:{port}) of upstream \"app\" is down"
        )),
        "{log}"
    );
    // It goes away from DNS: its slot is emptied, and no line is shown for it any more.
    dns.set("app.test", &["127.0.0.2"]);
    assert!(wait_until(Duration::from_secs(5), || !p
        .status()
        .contains("127.0.0.5")));
}

/// Whether `proxyctl status` shows peer `key` of upstream "app" at `addr`, up.
fn up_at(status: &str, key: &str, addr: &str) -> bool {
    PeerRow::find(status, "app", key).is_some_and(|r| r.get("ADDRESS") == addr && r.state() == "up")
}
