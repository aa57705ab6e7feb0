//! The admin JSON API: status, upstreams and config as JSON; peers drained, marked down or
//! up and re-weighted without a reload (and the traffic follows at once), a reload started
//! and its result shown, overrides cleared by the reload; every action logged with who took
//! it; nothing without the token.

mod common;

use common::upstream::Upstream;
use common::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "api-token-0123456789";

fn call(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let text = send_raw(
        &format!("127.0.0.1:{port}"),
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    let status = text[9..12].parse().unwrap();
    let body = body_of(&text);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body.to_string())),
    )
}

fn bodies(p: &Proxyd, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        let t = get_close(&p.addr(), "/x", "t", "");
        if t.ends_with("a /x") {
            a += 1;
        } else if t.ends_with("b /x") {
            b += 1;
        } else {
            panic!("{t}");
        }
    }
    (a, b)
}

fn peer<'a>(v: &'a Value, key: &str) -> &'a Value {
    v["upstreams"][0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == key)
        .unwrap()
}

#[test]
fn peers_are_drained_downed_and_reweighted_at_run_time() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let admin = free_port();
    let conf = app_conf_peers(&[a.addr(), b.addr()], "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\" }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    assert_eq!(bodies(&p, 10), (5, 5));

    // Nothing without the token.
    assert_eq!(call(admin, "GET", "/api/status", None).0, 401);
    assert_eq!(
        call(
            admin,
            "POST",
            &format!("/api/upstreams/app/peers/{}/down", a.addr()),
            None
        )
        .0,
        401
    );

    let (s, st) = call(admin, "GET", "/api/status", Some(TOKEN));
    assert_eq!(s, 200);
    assert_eq!(st["generation"], 1);
    assert_eq!(st["master_pid"], p.pid());
    let pids: Vec<u64> = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pids,
        p.worker_pids()
            .iter()
            .map(|&x| x as u64)
            .collect::<Vec<_>>()
    );
    assert!(st["workers"][0]["connections"]["active"].is_u64());

    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(ups["upstreams"][0]["name"], "app");
    assert_eq!(peer(&ups, &a.addr())["state"], "up");
    assert_eq!(peer(&ups, &a.addr())["requests"], 5);
    assert_eq!(peer(&ups, &a.addr())["responses"]["2xx"], 5);

    // Down: all traffic to b at once, no reload.
    let (s, r) = call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/down", a.addr()),
        Some(TOKEN),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(bodies(&p, 6), (0, 6));
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(peer(&ups, &a.addr())["state"], "down (admin)");
    // /metrics agrees: the peer takes no requests.
    let up_line = |addr: &str| {
        format!("proxyd_upstream_peer_up{{upstream=\"app\",peer=\"{addr}\",address=\"{addr}\"}}")
    };
    let (_, m) = call(admin, "GET", "/metrics", Some(TOKEN));
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains(&format!("{} 0\n", up_line(&a.addr()))), "{m}");
    assert!(m.contains(&format!("{} 1\n", up_line(&b.addr()))), "{m}");
    // Up again, then drained.
    call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/up", a.addr()),
        Some(TOKEN),
    );
    let (x, y) = bodies(&p, 10);
    assert!(x > 0 && y > 0, "{x} {y}");
    assert_eq!(peer(&ups, &a.addr())["override"]["state"], "down");
    assert_eq!(peer(&ups, &b.addr())["override"], Value::Null);
    let (_, r) = call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/drain", b.addr()),
        Some(TOKEN),
    );
    assert_eq!(r["until"], "next reload", "{r}");
    assert_eq!(bodies(&p, 4), (4, 0));
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(peer(&ups, &b.addr())["state"], "draining (admin)");
    assert_eq!(
        peer(&ups, &b.addr())["override"],
        serde_json::json!({"state": "draining", "weight": null, "until": "next reload"})
    );
    call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/up", b.addr()),
        Some(TOKEN),
    );
    // Weight 3 against 1: smooth round-robin gives exactly 3 to 1.
    let (s, _) = call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/weight?value=3", a.addr()),
        Some(TOKEN),
    );
    assert_eq!(s, 200);
    assert_eq!(bodies(&p, 40), (30, 10));
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(peer(&ups, &a.addr())["weight"], 3);
    assert_eq!(peer(&ups, &a.addr())["weight_set_at_run_time"], true);
    assert_eq!(peer(&ups, &a.addr())["override"]["weight"], 3);
    // proxyctl status's table says so too, with what the traffic did.
    let row = p.peer_row("app", &a.addr());
    assert_eq!(row.get("WEIGHT"), "3*", "{row:?}");
    assert_eq!(row.state(), "up");
    assert!(p.status().contains("* weight set through the admin API"));
    // Bad input.
    assert_eq!(
        call(
            admin,
            "POST",
            &format!("/api/upstreams/app/peers/{}/weight?value=0", a.addr()),
            Some(TOKEN)
        )
        .0,
        400
    );
    assert_eq!(
        call(
            admin,
            "POST",
            "/api/upstreams/app/peers/10.9.9.9:1/down",
            Some(TOKEN)
        )
        .0,
        404
    );
    assert_eq!(
        call(
            admin,
            "POST",
            "/api/upstreams/nope/peers/x/down",
            Some(TOKEN)
        )
        .0,
        404
    );
    // A misspelt upstream or peer gets the nearest name (issue 20).
    let (s, r) = call(admin, "POST", "/api/upstreams/ap/peers/x/down", Some(TOKEN));
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("no upstream \"ap\"; did you mean \"app\"?"))
    );
    let typo = format!("{}0", a.addr());
    let (s, r) = call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{typo}/down"),
        Some(TOKEN),
    );
    let want = format!(
        "no peer \"{typo}\" in upstream \"app\"; did you mean \"{}\"?",
        a.addr()
    );
    assert_eq!((s, r["error"].as_str()), (404, Some(want.as_str())));
    assert_eq!(call(admin, "DELETE", "/api/status", Some(TOKEN)).0, 405);
    // Every action is in the error log, with who did it.
    let log = p.error_log();
    for what in [
        "marked down by 127.0.0.1:",
        "drained (no new requests) by 127.0.0.1:",
        "given weight 3 (the config says 1) by 127.0.0.1:",
        "(token), until the next reload",
    ] {
        assert!(log.contains(what), "{what}: {log}");
    }

    // A reload through the API: started, then its result in the status; the overrides go.
    let (s, _) = call(admin, "POST", "/api/reload", Some(TOKEN));
    assert_eq!(s, 202);
    assert!(wait_until(Duration::from_secs(10), || {
        call(admin, "GET", "/api/status", Some(TOKEN)).1["generation"] == 2
    }));
    let (_, st) = call(admin, "GET", "/api/status", Some(TOKEN));
    assert_eq!(st["last_reload"]["ok"], true, "{st}");
    assert_eq!(st["reloads"]["success"], 1);
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(peer(&ups, &a.addr())["weight"], 1);
    assert_eq!(peer(&ups, &a.addr())["weight_set_at_run_time"], false);
    assert_eq!(peer(&ups, &a.addr())["override"], Value::Null);
    // A failing reload: its error is the result.
    let good = std::fs::read_to_string(&p.conf).unwrap();
    std::fs::write(&p.conf, format!("{good}\nbogus = 1\n")).unwrap();
    assert_eq!(call(admin, "POST", "/api/reload", Some(TOKEN)).0, 202);
    assert!(wait_until(Duration::from_secs(10), || {
        call(admin, "GET", "/api/status", Some(TOKEN)).1["last_reload"]["ok"] == false
    }));
    let (_, st) = call(admin, "GET", "/api/status", Some(TOKEN));
    assert!(
        st["last_reload"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{st}"
    );
    assert_eq!(st["generation"], 2);
    std::fs::write(&p.conf, &good).unwrap();
    // The effective config.
    let (s, cfg) = call(admin, "GET", "/api/config", Some(TOKEN));
    assert_eq!(s, 200);
    assert_eq!(cfg["upstream"][0]["name"], "app");
    assert!(!cfg.to_string().contains(TOKEN), "the token is never shown");
    // Reopen.
    assert_eq!(call(admin, "POST", "/api/reopen", Some(TOKEN)).0, 200);
}

/// `GET /api/history`: the master's samples of the node's totals (every 5 s, 15 minutes
/// kept), oldest first, counting what the traffic did; a reload does not cut them.
#[test]
fn the_master_keeps_the_last_minutes_of_traffic_across_a_reload() {
    let a = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf(&a, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\" }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    assert_eq!(call(admin, "GET", "/api/history", None).0, 401);
    for _ in 0..12 {
        assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    }
    let history = || call(admin, "GET", "/api/history", Some(TOKEN)).1;
    // A sample taken after the requests: wait for it (one every 5 s).
    assert!(wait_until(Duration::from_secs(30), || {
        history()["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["requests"] == 12)
    }));
    let h = history();
    assert_eq!(h["interval_seconds"], 5);
    assert_eq!(h["capacity"], 180);
    assert_eq!(h["le"].as_array().unwrap().len(), 11);
    let samples = h["samples"].as_array().unwrap().clone();
    let last = samples.last().unwrap();
    // Twelve 2xx, and the histogram counts twelve.
    assert_eq!(last["classes"], serde_json::json!([0, 12, 0, 0, 0]), "{h}");
    assert_eq!(last["duration"]["count"], 12, "{h}");
    let le: Vec<u64> = last["duration"]["le"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(le.windows(2).all(|w| w[0] <= w[1]), "cumulative: {le:?}");
    assert_eq!(*le.last().unwrap(), 12, "{le:?}");
    for k in ["active", "reading", "writing", "waiting"] {
        assert!(last["connections"][k].is_u64(), "{k}: {h}");
    }
    // /api/traffic has each route's share.
    let (_, tr) = call(admin, "GET", "/api/traffic", Some(TOKEN));
    let routes = tr["servers"][0]["routes"].as_array().unwrap();
    assert_eq!(routes[0]["route"], "/", "{tr}");
    assert_eq!(routes[0]["classes"][1], 12, "{tr}");
    assert_eq!(routes[0]["duration"]["count"], 12, "{tr}");
    assert_eq!(routes[1]["route"], "/fixed", "{tr}");
    assert_eq!(routes[1]["duration"]["count"], 0, "{tr}");
    let at = |s: &Value| s["at_ms"].as_u64().unwrap();
    assert!(samples.windows(2).all(|w| at(&w[0]) < at(&w[1])), "{h}");

    // A reload: the samples taken before it stay, later ones follow, counts go on.
    assert_eq!(call(admin, "POST", "/api/reload", Some(TOKEN)).0, 202);
    assert!(wait_until(Duration::from_secs(10), || {
        call(admin, "GET", "/api/status", Some(TOKEN)).1["generation"] == 2
    }));
    get_close(&p.addr(), "/x", "t", "");
    assert!(wait_until(Duration::from_secs(30), || {
        history()["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["requests"] == 13)
    }));
    let after = history()["samples"].as_array().unwrap().clone();
    assert_eq!(after[0], samples[0], "the oldest sample is still there");
    assert!(after.len() > samples.len());
    assert_eq!(after.last().unwrap()["classes"][1], 13);
}

#[test]
fn a_unix_socket_admin_listener_may_go_without_a_token() {
    use std::io::{Read, Write};
    let up = Upstream::start("a");
    let conf = app_conf(&up, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        "admin = { listen = \"unix:{dir}/admin.sock\", unauthenticated = true }\n\n[[upstream]]\nname = \"app\"",
    );
    let p = Proxyd::start(1, &conf);
    assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    let sock = p.dir.path().join("admin.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let ask = |path: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut v = String::new();
        s.read_to_string(&mut v).unwrap();
        v
    };
    let st = ask("/api/status");
    assert!(st.starts_with("HTTP/1.1 200"), "{st}");
    assert!(st.contains(&format!("\"master_pid\":{}", p.pid())), "{st}");
    assert!(ask("/metrics").contains("proxyd_server_requests_total{server=\"127.0.0.1:"));
    // A socket in a directory that does not exist is a -t error.
    let dir = TempDir::new("admin-unix");
    let (ok, out) = config_test(&dir, "admin = { listen = \"unix:/nonexistent-dir/a.sock\", unauthenticated = true }\n\n[[server]]\nlisten = \"127.0.0.1:1\"\n");
    assert!(
        !ok && out.contains("main.toml:1:") && out.contains("does not exist"),
        "{out}"
    );
    // The socket file goes with the master.
    drop(p);
    assert!(wait_until(Duration::from_secs(5), || !sock.exists()));
}

/// curl's status code for `method url` with extra arguments.
fn curl_code(method: &str, url: &str, args: &[&str]) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

/// CSRF and DNS rebinding: a Host that is neither the listener's address nor one of
/// `server_names` is refused (public pages too); an action needs the dashboard's header
/// (or the bearer token) and no other site's Origin, and no form body type.
#[test]
fn csrf_and_dns_rebinding_are_refused() {
    // bcrypt of "secret" at cost 4.
    const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";
    let a = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf(&a, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\", basic_auth = {{ ops = \"{BCRYPT}\" }}, server_names = [\"admin.test\"] }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    let base = format!("http://127.0.0.1:{admin}");
    let status = format!("{base}/api/status");
    let user = ["-u", "ops:secret"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["-u", "ops:secret"];
        v.extend_from_slice(extra);
        v
    };
    // Rebinding: the page's own name in Host. Refused with the right password, and for the
    // public dashboard page.
    assert_eq!(
        curl_code("GET", &status, &with(&["-H", "Host: evil.test"])),
        421
    );
    let evil_host = format!("Host: evil.test:{admin}");
    assert_eq!(
        curl_code("GET", &status, &["-u", "ops:secret", "-H", &evil_host]),
        421
    );
    assert_eq!(
        curl_code("GET", &format!("{base}/"), &["-H", &evil_host]),
        421
    );
    assert_eq!(
        curl_code(
            "GET",
            &status,
            &[
                "-H",
                &evil_host,
                "-H",
                &format!("Authorization: Bearer {TOKEN}")
            ]
        ),
        421
    );
    // Its own address, localhost, a configured name, and no Host at all (not a browser).
    assert_eq!(curl_code("GET", &status, &user), 200);
    let localhost = format!("Host: localhost:{admin}");
    assert_eq!(
        curl_code("GET", &status, &["-u", "ops:secret", "-H", &localhost]),
        200
    );
    assert_eq!(
        curl_code("GET", &status, &with(&["-H", "Host: ADMIN.test"])),
        200
    );
    assert_eq!(curl_code("GET", &status, &with(&["-H", "Host:"])), 200);
    let raw = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nHost: evil.test\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 421"), "{raw}");

    // CSRF: a signed-in browser's credential alone does not act.
    let down = format!("{base}/api/upstreams/app/peers/{}/down", a.addr());
    let up = format!("{base}/api/upstreams/app/peers/{}/up", a.addr());
    assert_eq!(curl_code("POST", &down, &user), 403);
    let dash = ["-H", "X-Proxyd-Dashboard: 1"];
    for (extra, want) in [
        (&["-H", "Origin: http://evil.test"][..], 403),
        (&["-H", "Sec-Fetch-Site: cross-site"], 403),
        (&["-d", "x=1"], 415),
        (&["-H", "Content-Type: text/plain", "-d", "x"], 415),
    ] {
        let args: Vec<&str> = dash.iter().chain(extra).copied().collect();
        assert_eq!(curl_code("POST", &down, &with(&args)), want, "{extra:?}");
    }
    assert_eq!(curl_code("POST", &format!("{base}/api/reload"), &user), 403);
    assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    assert_eq!(
        peer(
            &call(admin, "GET", "/api/upstreams", Some(TOKEN)).1,
            &a.addr()
        )["state"],
        "up"
    );
    // The dashboard's header, a same-origin Origin, or the bearer token: done.
    assert_eq!(
        curl_code("POST", &down, &with(&["-H", "X-Proxyd-Dashboard: 1"])),
        200
    );
    assert_eq!(
        peer(
            &call(admin, "GET", "/api/upstreams", Some(TOKEN)).1,
            &a.addr()
        )["state"],
        "down (admin)"
    );
    let origin = format!("Origin: http://127.0.0.1:{admin}");
    assert_eq!(
        curl_code("POST", &up, &["-u", "ops:secret", "-H", &origin]),
        200
    );
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(curl_code("POST", &down, &["-H", &bearer]), 200);
    assert_eq!(
        curl_code(
            "POST",
            &up,
            &["-H", &bearer, "-H", "Origin: http://evil.test"]
        ),
        403
    );
    assert!(p.error_log().contains("refused: CrossSite"));

    // unauthenticated = true: no credential at all, so the header is all that stands.
    let b = Upstream::start("b");
    let admin2 = free_port();
    let conf = app_conf(&b, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin2}\", unauthenticated = true }}\n\n[[upstream]]\nname = \"app\""),
    );
    let _q = Proxyd::start(1, &conf);
    let down = format!(
        "http://127.0.0.1:{admin2}/api/upstreams/app/peers/{}/down",
        b.addr()
    );
    assert_eq!(curl_code("POST", &down, &[]), 403);
    assert_eq!(
        curl_code(
            "POST",
            &down,
            &[
                "-H",
                &format!("Host: rebound.test:{admin2}"),
                "-H",
                "X-Proxyd-Dashboard: 1"
            ]
        ),
        421
    );
    assert_eq!(
        curl_code("POST", &down, &["-H", "X-Proxyd-Dashboard: 1"]),
        200
    );

    // server_names are host names; -t says where one is not.
    let dir = TempDir::new("admin-names");
    let (ok, out) = config_test(&dir, "[[server]]\nlisten = \"127.0.0.1:1\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nunauthenticated = true\nserver_names = [\"ok.test\", \"bad.test:80\"]\n");
    assert!(
        !ok && out.contains("main.toml:7:") && out.contains("\"bad.test:80\" is not a host name"),
        "{out}"
    );
}

/// Occurrences of each of `needles` in the private writable memory of process `pid` (heap,
/// stacks, data: where a copy made at run time can be; the shared-memory region and the
/// mapped files are left out).
fn memory_hits(pid: u32, needles: &[&[u8]]) -> Vec<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = vec![0; needles.len()];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        if !perms.starts_with("rw") || !perms.ends_with('p') {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        for (i, &byte) in buf.iter().enumerate() {
            for (n, needle) in needles.iter().enumerate() {
                if byte == needle[0] && buf[i..].starts_with(needle) {
                    hits[n] += 1;
                }
            }
        }
    }
    hits
}

/// Workers hold no admin secrets: the token and the basic-auth hashes are the master's
/// alone. A worker's whole memory is searched for them, after a reload too.
#[test]
fn workers_hold_no_admin_secrets() {
    // bcrypt of "secret" at cost 4.
    const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";
    let token = format!("admin-secret-{}-Zq7", std::process::id());
    let a = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf(&a, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{token}\", basic_auth = {{ ops = \"{BCRYPT}\" }} }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(2, &conf);
    assert_eq!(call(admin, "GET", "/api/status", Some(&token)).0, 200);
    assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    // The token, the hash, and the hash without its prefix (as a parser may keep it).
    let needles = [token.as_bytes(), BCRYPT.as_bytes(), &BCRYPT.as_bytes()[7..]];
    // The master has them (the search finds what is there).
    assert!(memory_hits(p.pid(), &needles).iter().all(|&n| n > 0));
    let check = |when: &str| {
        for pid in p.serving_pids() {
            assert_eq!(
                memory_hits(pid, &needles),
                [0, 0, 0],
                "{when}: worker {pid}"
            );
        }
    };
    check("at start");
    assert!(p.ctl("reload").status.success());
    assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    check("after a reload");
    // A reload asked for through the API (whose own request carries the token), and a
    // signal after a request with the token (its bytes were on the master's stack).
    let before = p.serving_pids();
    assert_eq!(call(admin, "POST", "/api/reload", Some(&token)).0, 202);
    assert!(wait_until(Duration::from_secs(10), || {
        let s = p.serving_pids();
        s.len() == 2 && s.iter().all(|pid| !before.contains(pid))
    }));
    check("after a reload through the API");
    assert_eq!(call(admin, "GET", "/api/status", Some(&token)).0, 200);
    let before = p.serving_pids();
    p.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || {
        let s = p.serving_pids();
        s.len() == 2 && s.iter().all(|pid| !before.contains(pid))
    }));
    check("after SIGHUP following a token request");
    // A respawned worker too.
    let victim = p.serving_pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || {
        let s = p.serving_pids();
        s.len() == 2 && !s.contains(&victim)
    }));
    check("after a respawn");
}

/// The names in an action's path are percent-decoded, as the dashboard encodes them: an
/// upstream whose name has a space, a host name's entry (`localhost:PORT#0`), lower-case
/// escapes. Only `%5B`, `%5D` and `%3A` were decoded, so the dashboard's buttons did nothing
/// (404) for every host-name peer.
#[test]
fn actions_reach_names_that_need_escaping() {
    let a = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf_peers(&[format!("localhost:{}", a.port)], "", "", "fixed")
        .replace("name = \"app\"", "name = \"my app\"")
        .replace("upstream = \"app\"", "upstream = \"my app\"")
        .replace(
            "[[upstream]]",
            &format!(
                "admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\" }}\n\n[[upstream]]"
            ),
        );
    let p = Proxyd::start(1, &conf);
    assert!(get_close(&p.addr(), "/x", "t", "").ends_with("a /x"));
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    let entry = ups["upstreams"][0]["peers"][0]["peer"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(entry, format!("localhost:{}#0", a.port));
    let path = format!(
        "/api/upstreams/my%20app/peers/localhost%3a{}%230/down",
        a.port
    );
    let (s, r) = call(admin, "POST", &path, Some(TOKEN));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["peer"], entry.as_str());
    let (_, ups) = call(admin, "GET", "/api/upstreams", Some(TOKEN));
    assert_eq!(
        ups["upstreams"][0]["peers"][0]["state"], "down (admin)",
        "{ups}"
    );
    let (s, _) = call(
        admin,
        "POST",
        "/api/upstreams/my%ff/peers/x/down",
        Some(TOKEN),
    );
    assert_eq!(s, 400);
    drop(p);
}
