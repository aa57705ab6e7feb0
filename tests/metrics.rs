//! `/metrics` on the admin listener: Prometheus text that Prometheus's own parser
//! (`prometheus_client`) reads, with counts that match the traffic sent, summed over
//! workers, kept across a reload and a worker crash; the token is required unless
//! `public_metrics`; bad admin settings are `-t` errors with file:line.

mod common;

use common::prom::{all, parse, sum, value};
use common::upstream::Upstream;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789";

fn send(p: &Proxyd, path: &str) -> u16 {
    get_close(&p.addr(), path, "site.test", "")[9..12]
        .parse()
        .unwrap()
}

fn conf(up: &Upstream, dead: u16, admin_port: u16, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
peers = ["{a}"]

[[upstream]]
name = "dead"
peers = ["127.0.0.1:{dead}"]

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "site.test"
[[server.route]]
name = "api"
path = "/"
upstream = "app"
[[server.route]]
path = "/fixed"
return = 204
[[server.route]]
path = "/dead"
upstream = "dead"
"#,
        a = up.addr()
    )
    .replace("[[upstream]]\nname = \"app\"", &format!("admin = {{ listen = \"127.0.0.1:{admin_port}\", token = \"{TOKEN}\"{extra} }}\n\n[[upstream]]\nname = \"app\""))
}

#[test]
fn metrics_count_the_traffic_and_survive_reloads_and_crashes() {
    let up = Upstream::start("up");
    let dead = free_port();
    let admin = free_port();
    let p = Proxyd::start(2, &conf(&up, dead, admin, ""));
    for _ in 0..10 {
        assert_eq!(send(&p, "/a"), 200);
    }
    for _ in 0..3 {
        assert_eq!(send(&p, "/fixed"), 204);
    }
    assert_eq!(send(&p, "/dead"), 502);
    // Without the token: 401 (and /metrics is not public by default).
    assert_eq!(admin_get(admin, "/metrics", None).0, 401);
    assert_eq!(
        admin_get(admin, "/metrics", Some("wrong-token-0123456789")).0,
        401
    );
    assert_eq!(admin_get(admin, "/nope", Some(TOKEN)).0, 404);
    // Gauges are published about once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, text) = admin_get(admin, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    let m = parse(&text);
    common::prom::promtool_check(&text);
    let server = |class| {
        sum(
            &m,
            "proxyd_server_requests_total",
            &[("server", "site.test"), ("class", class)],
        )
    };
    assert_eq!(server("2xx"), 13.0);
    assert_eq!(server("5xx"), 1.0);
    let code = |c| {
        value(
            &m,
            "proxyd_server_requests_total",
            &[("server", "site.test"), ("code", c)],
        )
    };
    assert_eq!((code("200"), code("204"), code("502")), (10.0, 3.0, 1.0));
    let route = |r, class| {
        value(
            &m,
            "proxyd_route_requests_total",
            &[("server", "site.test"), ("route", r), ("class", class)],
        )
    };
    assert_eq!(route("api", "2xx"), 10.0);
    assert_eq!(route("/fixed", "2xx"), 3.0);
    assert_eq!(route("/dead", "5xx"), 1.0);
    assert_eq!(
        value(
            &m,
            "proxyd_route_request_duration_seconds_count",
            &[("route", "api")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_route_request_duration_seconds_bucket",
            &[("route", "api"), ("le", "+Inf")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_responses_total",
            &[("upstream", "app"), ("class", "2xx")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_responses_total",
            &[("upstream", "dead"), ("class", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_connect_duration_seconds_count",
            &[("upstream", "app")]
        ),
        10.0
    );
    assert_eq!(
        value(&m, "proxyd_upstream_peer_up", &[("upstream", "app")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_peer_failures_total",
            &[("upstream", "dead")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_peer_requests_total",
            &[("upstream", "app")]
        ),
        10.0
    );
    assert!(
        value(
            &m,
            "proxyd_server_sent_bytes_total",
            &[("server", "site.test")]
        ) > 1000.0
    );
    assert_eq!(value(&m, "proxyd_requests_total", &[]), 14.0);
    // (and the test harness's readiness probe, which sends no request)
    assert!(value(&m, "proxyd_connections_accepted_total", &[]) >= 14.0);
    // The states are a partition: no "active" total beside them.
    assert!(all(&m, "proxyd_connections", &[("state", "active")]).is_empty());
    assert_eq!(sum(&m, "proxyd_connections", &[]), 0.0);
    assert_eq!(value(&m, "proxyd_config_generation", &[]), 1.0);
    assert_eq!(value(&m, "proxyd_workers", &[("state", "serving")]), 2.0);

    // A reload and a failed one: counted, and nothing is reset.
    assert!(p.ctl("reload").status.success());
    let good = std::fs::read_to_string(&p.conf).unwrap();
    std::fs::write(&p.conf, format!("{good}\nbogus = 1\n")).unwrap();
    assert!(!p.ctl("reload").status.success());
    std::fs::write(&p.conf, &good).unwrap();
    assert_eq!(send(&p, "/a"), 200);
    // A worker killed: its counts join the retired totals; it is restarted.
    let victim = p.worker_pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || {
        let w = p.worker_pids();
        w.len() == 2 && !w.contains(&victim)
    }));
    assert_eq!(send(&p, "/a"), 200);
    let m = parse(&admin_get(admin, "/metrics", Some(TOKEN)).1);
    assert_eq!(
        sum(&m, "proxyd_server_requests_total", &[("class", "2xx")]),
        15.0
    );
    // Exact codes are kept through a worker's end too.
    assert_eq!(
        value(&m, "proxyd_server_requests_total", &[("code", "200")]),
        12.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_route_requests_total",
            &[("route", "api"), ("class", "2xx")]
        ),
        12.0
    );
    assert_eq!(
        value(
            &m,
            "proxyd_upstream_peer_requests_total",
            &[("upstream", "app")]
        ),
        12.0
    );
    assert_eq!(value(&m, "proxyd_requests_total", &[]), 16.0);
    assert_eq!(value(&m, "proxyd_config_generation", &[]), 2.0);
    assert_eq!(
        value(&m, "proxyd_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        value(&m, "proxyd_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(value(&m, "proxyd_worker_restarts_total", &[]), 1.0);
}

#[test]
fn metrics_may_be_public_while_the_rest_needs_the_token() {
    let up = Upstream::start("up");
    let admin = free_port();
    let p = Proxyd::start(1, &conf(&up, free_port(), admin, ", public_metrics = true"));
    assert_eq!(send(&p, "/a"), 200);
    let (status, text) = admin_get(admin, "/metrics", None);
    assert_eq!(status, 200);
    let m = parse(&text);
    assert_eq!(
        value(&m, "proxyd_server_requests_total", &[("class", "2xx")]),
        1.0
    );
    assert_eq!(admin_get(admin, "/api/status", None).0, 401);
    // HTTP/1.0 has no chunked framing: the text ends with the connection.
    let old = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{admin}\r\n\r\n").as_bytes(),
    );
    assert!(old.starts_with("HTTP/1.1 200"), "{old}");
    assert!(
        !old.to_ascii_lowercase().contains("transfer-encoding"),
        "{old}"
    );
    assert_eq!(parse(&body_of(&old)).len(), m.len());
    // A slow client is cut after the deadline and does not hold up the others.
    let _silent = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    assert_eq!(admin_get(admin, "/metrics", None).0, 200);
    // A head too big gets 400, and the listener goes on.
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    let _ = s
        .write_all(format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20000)).as_bytes());
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    assert!(
        String::from_utf8_lossy(&v).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&v)
    );
    assert_eq!(admin_get(admin, "/metrics", None).0, 200);
}

#[test]
fn admin_settings_are_checked() {
    let dir = TempDir::new("admin");
    for (admin, want) in [
        ("{ listen = \"127.0.0.1:9180\" }", "admin needs a token"),
        (
            "{ listen = \"0.0.0.0:9180\", unauthenticated = true }",
            "or a unix socket only",
        ),
        (
            "{ listen = \"127.0.0.1:9180\", token = \"short\" }",
            "at least 16",
        ),
        (
            "{ listen = \"nowhere\", token = \"0123456789abcdef\" }",
            "neither an address:port",
        ),
    ] {
        let text = format!("admin = {admin}\n\n[[server]]\nlisten = \"127.0.0.1:1\"\n");
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok, "{text}");
        assert!(
            out.contains("main.toml:1:") && out.contains(want),
            "{want}: {out}"
        );
    }
    let (ok, out) = config_test(&dir, "admin = { listen = \"127.0.0.1:9180\", unauthenticated = true }\n\n[[server]]\nlisten = \"127.0.0.1:1\"\n");
    assert!(ok, "{out}");
}

#[test]
fn proxyctl_status_json_and_top_show_the_same_numbers() {
    let up = Upstream::start("up");
    let admin = free_port();
    let p = Proxyd::start(2, &conf(&up, free_port(), admin, ""));
    for _ in 0..7 {
        assert_eq!(send(&p, "/a"), 200);
    }
    let pid_file = p.dir.path().join("proxyd.pid");
    let pid_file = pid_file.to_str().unwrap();
    let (v, _) = status_json(pid_file);
    assert_eq!(v["status"]["generation"], 1);
    assert_eq!(v["status"]["workers"].as_array().unwrap().len(), 2);
    assert_eq!(v["traffic"]["requests"], 7);
    let app = v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "app")
        .unwrap();
    assert_eq!(app["peers"][0]["requests"], 7);
    assert_eq!(app["peers"][0]["state"], "up");
    // top: two screens, the second with rates; the peer table has its row.
    let out = proxyctl(&["-p", pid_file, "top", "-n", "2", "-d", "0.3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Not a terminal: plain screens one after another, no screen-clearing escapes.
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.matches("\nproxyd ").count() >= 1, "{text}");
    let last = text.rsplit("\nproxyd ").next().unwrap();
    assert!(last.contains("generation 1"), "{last}");
    let row = last
        .lines()
        .find(|l| l.starts_with("app ") && l.contains(&up.addr()))
        .unwrap_or_else(|| panic!("{last}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2], "up", "{row}");
    assert_eq!(cols[5], "7", "{row}");
    assert!(
        last.lines()
            .any(|l| l.starts_with("site.test ") && l.split_whitespace().nth(2) == Some("7")),
        "{last}"
    );

    // On a terminal (a pty from script(1)): screens are redrawn in place, and `q` quits.
    common::tools::need("script", "bsdutils");
    let ctl = bin("proxyctl");
    let mut top = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{} -p {pid_file} top -d 0.2", ctl.display()))
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut screen = std::io::BufReader::new(top.stdout.take().unwrap());
    let mut first = Vec::new();
    std::io::BufRead::read_until(&mut screen, b'\n', &mut first).unwrap();
    assert!(
        first.starts_with(b"\x1b[H\x1b[2J"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    std::io::Write::write_all(top.stdin.as_mut().unwrap(), b"q").unwrap();
    // Generous: this is about whether it quits, not how fast.
    let quit = wait_until(Duration::from_secs(20), || {
        top.try_wait().unwrap().is_some()
    });
    if !quit {
        let _ = top.kill();
    }
    assert!(quit, "proxyctl top did not quit on q");
    assert!(top.wait().unwrap().success());
}

/// `proxyctl status --json`, parsed, and its size.
fn status_json(pid_file: &str) -> (serde_json::Value, usize) {
    let out = proxyctl(&["-p", pid_file, "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        out.stdout.len(),
    )
}

/// `n` upstreams of one dead peer each, and a server routing to the first.
fn many_upstreams(n: usize, dead: u16) -> String {
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!(
            "[[upstream]]\nname = \"upstream-number-{i}\"\npeers = [\"127.0.0.1:{dead}\"]\n\n"
        ));
    }
    body.push_str("[[server]]\nlisten = \"127.0.0.1:{port}\"\n[[server.route]]\npath = \"/\"\nupstream = \"upstream-number-0\"\n");
    body
}

/// Public /metrics on a big config: 2,000 upstreams make megabytes of text. Clients that ask
/// and never read cost the master a bounded piece each, not the text each (it held 64 copies
/// of 15 MB); past a few of them public scrapes get 503 while a client with the token is
/// still answered in full; the stalled ones are closed after the send timeout, and public
/// scrapes are answered again.
#[test]
fn public_metrics_on_a_big_config_stay_bounded() {
    let admin = free_port();
    let dead = free_port();
    let body = many_upstreams(2000, dead);
    let p = Proxyd::start_with(
        1,
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\", public_metrics = true }}"),
        &body,
    );
    let (status, full) = admin_get(admin, "/metrics", Some(TOKEN));
    assert_eq!(status, 200);
    assert!(full.len() > 4 << 20, "{} bytes", full.len());
    assert!(full.contains("upstream=\"upstream-number-1999\""));
    let base = rss_kib(p.pid());

    let mut stalled = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\n\r\n"
        )
        .unwrap();
        stalled.push(s);
    }
    // Accepted after them: by its answer the master has taken every one of them in hand.
    let (status, again) = admin_get(admin, "/metrics", Some(TOKEN));
    assert_eq!(status, 200);
    assert!(again.ends_with(&format!(
        "proxyd_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(again.lines().count(), full.lines().count());
    let grown = rss_kib(p.pid()).saturating_sub(base);
    // One copy of the text is the bound (the old master held one per client).
    let text_kib = full.len() as u64 / 1024;
    assert!(
        grown < text_kib,
        "the master grew by {grown} KiB; the text is {text_kib} KiB"
    );
    // Public scrapes wait for a free slot (the stalled ones hold them)...
    assert_eq!(admin_get(admin, "/metrics", None).0, 503);
    // ...until the send timeout closes the stalled ones.
    assert!(wait_until(Duration::from_secs(120), || admin_get(
        admin, "/metrics", None
    )
    .0 == 200));
    drop(stalled);
}

/// `proxyctl status --json` on 3,000 upstreams: megabytes, more than a socket buffer. The
/// master sends it as the socket drains, while a client that asked and never reads waits
/// aside without holding anyone else up; asking again and again (the JSON or the text)
/// does not grow the master.
#[test]
fn status_json_of_thousands_of_upstreams_arrives_whole() {
    let dead = free_port();
    let body = many_upstreams(3000, dead);
    let p = Proxyd::start_with(1, "", &body);
    let pid_file = p.dir.path().join("proxyd.pid");
    let pid_file = pid_file.to_str().unwrap();
    let sock = proxyd::config::control_socket_for_pid_file(std::path::Path::new(pid_file));
    // Asks and never reads.
    let mut stalled = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    stalled.write_all(b"status json\n").unwrap();

    let ask = || {
        let (v, size) = status_json(pid_file);
        let ups = v["upstreams"].as_array().unwrap();
        assert_eq!(ups.len(), 3000);
        assert!(ups.iter().any(|u| u["name"] == "upstream-number-2999"));
        size
    };
    let size = ask();
    assert!(size > 1 << 20, "{size} bytes");
    let base = rss_kib(p.pid());
    for _ in 0..10 {
        ask();
        assert!(p.status().contains("upstream-number-2999"));
    }
    let grown = rss_kib(p.pid()).saturating_sub(base);
    // One reply's worth is the bound: what a status builds goes back before it is sent
    // (the reply's own buffer may still be on its way out).
    assert!(
        grown < size as u64 / 1024,
        "the master grew by {grown} KiB over 10 statuses of {} KiB",
        size / 1024
    );
    // The stalled one's reply waits, cut short by nothing: it reads it whole, late.
    let mut all = Vec::new();
    stalled.read_to_end(&mut all).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&all).unwrap();
    assert_eq!(reply["ok"], true);
    assert!(p.status().contains("generation: 1"));
}

/// The connection gauges follow the connections after traffic stops: a worker that goes
/// quiet right after a burst still wakes to count them (they are counted once a second),
/// rather than showing the burst until its next event.
#[test]
fn connection_gauges_settle_when_traffic_stops() {
    let up = Upstream::start("up");
    let admin = free_port();
    let p = Proxyd::start(1, &conf(&up, free_port(), admin, ""));
    let gauge = |state: &str| {
        let m = parse(&admin_get(admin, "/metrics", Some(TOKEN)).1);
        value(&m, "proxyd_connections", &[("state", state)])
    };
    // Five keep-alive connections, each after one answered request: idle ("waiting").
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.write_all(b"GET /fixed HTTP/1.1\r\nHost: site.test\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 204"));
        conns.push(s);
    }
    // (the admin listener is the master's: these scrapes wake no worker)
    assert!(
        wait_until(Duration::from_secs(10), || gauge("waiting") == 5.0),
        "waiting: {}",
        gauge("waiting")
    );
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(10), || gauge("waiting") == 0.0),
        "waiting: {}",
        gauge("waiting")
    );
    assert_eq!(gauge("reading") + gauge("writing"), 0.0);
}

/// The control socket against clients that hold it: past 64 connections more are closed
/// at once; one that never finishes its command line is dropped after 10 s; replies that
/// nobody reads stop being built past 64 MiB waiting (3,000 upstreams: 2 MB each), with a
/// short refusal instead, so the master's memory stays bounded; through all of it a
/// well-behaved `proxyctl` is answered.
#[test]
fn control_clients_that_hold_the_socket_are_bounded() {
    use std::os::unix::net::UnixStream;
    let p = Proxyd::start_with(1, "", &many_upstreams(3000, free_port()));
    let pid_file = p.dir.path().join("proxyd.pid");
    let sock = proxyd::config::control_socket_for_pid_file(&pid_file);
    // 63 never finish their line; the 64th is proxyctl's, and is answered.
    let mut idle = Vec::new();
    for _ in 0..63 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"sta").unwrap();
        idle.push(s);
    }
    assert!(p.status().contains("generation: 1"));
    // With 64 held, a 65th is closed at once, unanswered.
    let extra = UnixStream::connect(&sock).unwrap();
    let mut over = UnixStream::connect(&sock).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = over.write_all(b"status\n");
    let mut got = Vec::new();
    assert_eq!(
        over.read_to_end(&mut got).map(|_| got.len()).unwrap_or(0),
        0
    );
    drop(extra);
    // The idle ones are dropped after their 10 s.
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    }
    assert!(std::fs::read_to_string(p.dir.path().join("error.log"))
        .unwrap()
        .contains("control client did not send its command in time"));
    // 40 ask for the big status and never read: the replies waiting stop at 64 MiB.
    let base = rss_kib(p.pid());
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"status json\n").unwrap();
        stalled.push(s);
    }
    // Answered once its turn comes, behind the statuses queued before it (each a
    // fraction of a second to build; longer on a loaded machine).
    assert!(wait_until(Duration::from_secs(120), || p
        .status()
        .contains("generation: 1")));
    let grown = rss_kib(p.pid()).saturating_sub(base);
    assert!(grown < 150 << 10, "the master grew by {grown} KiB");
    let (mut whole, mut refused) = (0, 0);
    for mut s in stalled {
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&all).unwrap();
        if v["ok"] == true {
            whole += 1;
        } else {
            assert!(
                v["message"].as_str().unwrap().contains("too many replies"),
                "{v}"
            );
            refused += 1;
        }
    }
    assert!(
        whole >= 10 && refused >= 1,
        "{whole} whole, {refused} refused"
    );
}
