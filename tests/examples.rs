//! conf/examples/: each example config loads with `proxyctl -t` and does what its comments
//! say, served through with real clients, once its addresses and paths are moved into a
//! scratch directory (listen ports, peers, certificates, logs, pid file). Every substitution
//! must apply, so an example that drifts from what the test knows fails here.

mod common;

use common::upstream::Upstream;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn example(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/examples")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `text` with each `(from, to)` replaced; each `from` must occur.
fn moved(text: &str, subs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in subs {
        assert!(out.contains(from), "the example no longer has {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// What every example has: a proxyd user, auto workers, /run and /var/log paths.
fn common_subs(dir: &TempDir) -> Vec<(&'static str, String)> {
    let d = dir.path().display().to_string();
    vec![
        ("user = \"proxyd\"\n", String::new()),
        ("worker_processes = \"auto\"", "worker_processes = 1".into()),
        ("/run/proxyd", d.clone()),
        ("/var/log/proxyd", d),
    ]
}

/// `"0.0.0.0:PORT", "[::]:PORT"` of an example, moved to 127.0.0.1:`to`.
fn listen(port: u16, to: u16) -> (String, String) {
    (
        format!("\"0.0.0.0:{port}\", \"[::]:{port}\""),
        format!("\"127.0.0.1:{to}\""),
    )
}

/// Loads the config with `proxyctl -t`, then starts proxyd on it.
fn check_and_start(dir: TempDir, conf: PathBuf, port: u16) -> Proxyd {
    let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Proxyd::start_file(dir, conf, port)
}

fn curl(args: &[&str]) -> String {
    tools::need("curl", "curl");
    let out = Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_site_redirects_to_https_and_sends_hsts() {
    let dir = TempDir::new("ex-tls");
    common::certs::cert(
        dir.path(),
        "site",
        &["example.com", "www.example.com"],
        false,
    );
    let app = Upstream::start("app");
    let (http, https) = (free_port(), free_port());
    let d = dir.path().display().to_string();
    let (l80, l443) = (listen(80, http), listen(443, https));
    let mut subs = common_subs(&dir);
    subs.extend([
        (l80.0.as_str(), l80.1.clone()),
        (l443.0.as_str(), l443.1.clone()),
        (
            "/etc/proxyd/tls/example.com/fullchain.pem",
            format!("{d}/site.crt"),
        ),
        (
            "/etc/proxyd/tls/example.com/privkey.pem",
            format!("{d}/site.key"),
        ),
        ("127.0.0.1:3000", app.addr()),
    ]);
    let text = moved(&example("tls-site.toml"), &subs);
    let conf = dir.write("proxyd.toml", &text);
    let p = check_and_start(dir, conf, http);
    // Plain HTTP: a 301 to the same path and query on https.
    let r = curl(&[
        "-H",
        "Host: www.example.com",
        &format!("http://127.0.0.1:{http}/a/b?x=1"),
    ]);
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert!(
        r.contains("Location: https://www.example.com/a/b?x=1\r\n"),
        "{r}"
    );
    // HTTPS: the application answers, with HSTS.
    let resolve = format!("example.com:{https}:127.0.0.1");
    let ca = format!("{}/site.crt", p.dir.path().display());
    let r = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
        &format!("https://example.com:{https}/a"),
    ]);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"),
        "{r}"
    );
    assert!(r.ends_with("app /a"), "{r}");
}

#[test]
fn load_balancing_spreads_and_survives_a_dead_peer() {
    let dir = TempDir::new("ex-lb");
    let (a, b, backup) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("backup"),
    );
    let port = free_port();
    let l80 = listen(80, port);
    let mut subs = common_subs(&dir);
    subs.extend([
        (l80.0.as_str(), l80.1.clone()),
        ("10.0.0.11:8080", a.addr()),
        ("10.0.0.12:8080", b.addr()),
        ("10.0.0.13:8080", backup.addr()),
    ]);
    let text = moved(&example("load-balancing.toml"), &subs);
    let conf = dir.write("proxyd.toml", &text);
    let p = check_and_start(dir, conf, port);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        let r = get_close(&p.addr(), "/", "app.example.com", "");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        *seen.entry(body_of(&r)).or_insert(0) += 1;
    }
    assert!(
        seen.contains_key("a /") && seen.contains_key("b /"),
        "{seen:?}"
    );
    assert!(!seen.contains_key("backup /"), "{seen:?}");
    // The helper probes /healthz on each peer.
    assert!(
        wait_until(std::time::Duration::from_secs(15), || a.requests() > 0
            && backup.requests() > 0
            && p.status().contains("up")),
        "{}",
        p.status()
    );
    // One primary gone: every request is still answered (retried on the other).
    let b_addr = b.addr();
    drop(b);
    for _ in 0..10 {
        let r = get_close(&p.addr(), "/", "app.example.com", "");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}\n{}", p.error_log());
        assert_eq!(body_of(&r), "a /");
    }
    assert!(p.error_log().contains(&b_addr), "{}", p.error_log());
}

#[test]
fn websocket_app_tunnels_the_socket_and_serves_the_pages() {
    tools::need_python("websockets", "websockets>=13");
    let dir = TempDir::new("ex-ws");
    let web = Upstream::start("web");
    let mut echo = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/ws/echo_server.py"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(echo.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let echo_port: u16 = line.trim().parse().expect("echo server port");
    let port = free_port();
    let l80 = listen(80, port);
    let mut subs = common_subs(&dir);
    subs.extend([
        (l80.0.as_str(), l80.1.clone()),
        ("127.0.0.1:3000", web.addr()),
        ("127.0.0.1:3001", format!("127.0.0.1:{echo_port}")),
    ]);
    let text = moved(&example("websocket.toml"), &subs);
    let conf = dir.write("proxyd.toml", &text);
    let p = check_and_start(dir, conf, port);
    let r = get_close(&p.addr(), "/index.html", "chat.example.com", "");
    assert!(
        r.starts_with("HTTP/1.1 200") && body_of(&r) == "web /index.html",
        "{r}"
    );
    // A real WebSocket client through the tunnel: echoes, a 1 MB message, a clean close.
    let mut client = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws/client.py"))
        .arg(format!("ws://127.0.0.1:{port}/ws/chat"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = client.wait_with_output().unwrap();
    let _ = echo.kill();
    let _ = echo.wait();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("READY") && out.contains("OK"), "{out}");
    drop(p);
}

#[test]
fn multi_site_routes_by_host_through_conf_d() {
    let dir = TempDir::new("ex-multi");
    let (blog, api, web) = (
        Upstream::start("blog"),
        Upstream::start("shop_api"),
        Upstream::start("shop_web"),
    );
    let port = free_port();
    let l80 = listen(80, port);
    let mut subs = common_subs(&dir);
    subs.push((l80.0.as_str(), l80.1.clone()));
    let main = moved(&example("multi-site/proxyd.toml"), &subs);
    let conf = dir.write("proxyd.toml", &main);
    let site = |name: &str, peers: &[(&str, String)]| {
        let mut subs = vec![(l80.0.as_str(), l80.1.clone())];
        subs.extend(peers.iter().cloned());
        let text = moved(&example(&format!("multi-site/conf.d/{name}")), &subs);
        dir.write(&format!("conf.d/{name}"), &text);
    };
    site("blog.example.com.toml", &[("127.0.0.1:4000", blog.addr())]);
    site(
        "shop.example.com.toml",
        &[
            ("127.0.0.1:5000", api.addr()),
            ("127.0.0.1:5001", web.addr()),
        ],
    );
    let p = check_and_start(dir, conf, port);
    for (host, path, want) in [
        ("blog.example.com", "/post/1", "blog /post/1"),
        ("shop.example.com", "/api/cart", "shop_api /api/cart"),
        ("www.shop.example.com", "/", "shop_web /"),
        ("other.example.com", "/", "no such site\n"),
    ] {
        let r = get_close(&p.addr(), path, host, "");
        assert_eq!(body_of(&r), want, "{host}{path}: {r}");
    }
}
