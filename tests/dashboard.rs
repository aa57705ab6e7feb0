//! The dashboard in a real browser: headless Chromium loads `GET /` from the admin listener
//! of a proxyd carrying traffic, runs the page's script (which polls the JSON API with the
//! token from the URL fragment), and the DOM it leaves shows the upstreams, their peers and
//! non-zero counters. Screenshots at desktop and phone widths land in the test's directory
//! (and in $DASHBOARD_SHOTS when set), full-page ones from the DevTools protocol too.

mod common;

use common::upstream::Upstream;
use common::*;
use std::process::Command;

const TOKEN: &str = "dash-token-0123456789";

fn chromium(args: &[&str]) -> String {
    common::tools::need("chromium", "chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .expect("chromium (apt-get install -y chromium)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_dashboard_shows_upstreams_and_live_counters_in_a_browser() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let admin = free_port();
    let conf = app_conf_peers(&[a.addr(), b.addr()], "", "server_name = \"shop.test\"", "fixed")
        .replace(
            "[[upstream]]\nname = \"app\"",
            &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\" }}\n\n[[upstream]]\nname = \"app\""),
        );
    let p = Proxyd::start(2, &conf);
    for i in 0..40 {
        let path = if i % 10 == 0 { "/fixed" } else { "/x" };
        get_close(&p.addr(), path, "shop.test", "");
    }
    // Without the token, the page asks for it and shows no data.
    let dom = chromium(&[
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("http://127.0.0.1:{admin}/"),
    ]);
    assert!(dom.contains("This admin listener needs its token"), "{dom}");
    assert!(!dom.contains(&a.addr()), "{dom}");

    let url = format!("http://127.0.0.1:{admin}/#token={TOKEN}");
    // Traffic while the page runs, so that its rates and percentiles have something to show.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), p.addr());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = if n.is_multiple_of(7) {
                    "/sleep?ms=30"
                } else {
                    "/sleep?ms=2"
                };
                get_close(&addr, path, "shop.test", "");
                n += 1;
            }
            n
        })
    };
    // Real time this time (the page polls every second): rates need two polls.
    let dom = chromium(&[
        "--virtual-time-budget=4000",
        "--run-all-compositor-stages-before-draw",
        "--dump-dom",
        &url,
    ]);
    let shot_url = url.clone();
    assert!(
        dom.contains("<td data-label=\"upstream\">app</td>"),
        "{dom}"
    );
    for peer in [a.addr(), b.addr()] {
        assert!(
            dom.contains(&format!("class=\"peer card-wide\">{peer}</td>")),
            "{peer}: {dom}"
        );
    }
    let number = |id: &str| -> f64 {
        dom.split(&format!("id=\"{id}\">"))
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|n| n.trim_end_matches('k').parse().ok())
            .unwrap_or(-1.0)
    };
    let total: u64 = dom
        .split("id=\"total-requests\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(total >= 40, "{dom}");
    // Each peer's request count, as the table shows it.
    let peer_requests: Vec<u64> = dom
        .split("class=\"n peer-requests\">")
        .skip(1)
        .filter_map(|s| s.split('<').next()?.parse().ok())
        .collect();
    assert!(peer_requests.iter().sum::<u64>() >= 36, "{dom}");
    assert!(peer_requests.iter().all(|&n| n > 0), "{peer_requests:?}");
    assert!(
        dom.contains("class=\"state-up peer-state card-wide\"><span>up</span></td>"),
        "{dom}"
    );
    assert!(dom.contains("id=\"generation\">1<"), "{dom}");
    // The workers and the error log's last lines.
    for pid in p.worker_pids() {
        assert!(
            dom.contains(&format!("<td>{pid}</td>")),
            "worker {pid}: {dom}"
        );
    }
    assert!(dom.contains("generation 1 serving"), "{dom}");

    assert!(number("conn-active") >= 0.0, "{dom}");
    for (name, size) in [("desktop", "1280,900"), ("phone", "390,844")] {
        let shot = p.dir.path().join(format!("dashboard-{name}.png"));
        chromium(&[
            "--virtual-time-budget=5000",
            &format!("--window-size={size}"),
            &format!("--screenshot={}", shot.display()),
            &shot_url,
        ]);
        let len = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(len > 10_000, "{name} screenshot: {len} bytes");
        if let Ok(dir) = std::env::var("DASHBOARD_SHOTS") {
            std::fs::copy(&shot, format!("{dir}/dashboard-{name}.png")).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.join().unwrap() > 0);
}

/// With basic-auth users, the page offers to sign in; a browser that signed in at `/login`
/// is sent back to the page, and the page's calls carry its credentials.
#[test]
fn a_basic_auth_user_signs_in_to_the_dashboard() {
    // bcrypt of "secret" at cost 4.
    const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";
    let a = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf(&a, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", basic_auth = {{ ops = \"{BCRYPT}\" }} }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    for _ in 0..5 {
        get_close(&p.addr(), "/x", "t", "");
    }
    let dom = chromium(&[
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("http://127.0.0.1:{admin}/"),
    ]);
    assert!(
        dom.contains("<span id=\"basic\">, or <a href=\"/login\">sign in</a>"),
        "{dom}"
    );
    assert!(!dom.contains(&a.addr()), "{dom}");
    let dom = chromium(&[
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("http://ops:secret@127.0.0.1:{admin}/login"),
    ]);
    assert!(
        dom.contains(&format!("class=\"peer card-wide\">{}</td>", a.addr())),
        "{dom}"
    );
    assert!(p.error_log().contains("[notice]"));
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
/// messages ended by NUL on descriptors 3 and 4), to click the dashboard's own buttons and
/// to run pages of another site against the admin listener.
struct Browser {
    child: std::process::Child,
    to: std::fs::File,
    from: std::io::BufReader<std::fs::File>,
    next: u64,
    _profile: TempDir,
}

impl Browser {
    /// `extra`: more command-line switches.
    fn launch(extra: &[&str]) -> Browser {
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        let mut to_browser = [0i32; 2];
        let mut from_browser = [0i32; 2];
        unsafe {
            assert_eq!(libc::pipe2(to_browser.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(from_browser.as_mut_ptr(), libc::O_CLOEXEC), 0);
            // The child dup2s the pipe onto fds 3 and 4. A pipe end that already is 3 or 4
            // would be a no-op dup2 that keeps O_CLOEXEC (the browser then never sees it) or
            // be clobbered by the other dup2; CI's fresh test process hands out exactly those
            // numbers. Move every end to 5 or above first.
            for fd in to_browser.iter_mut().chain(from_browser.iter_mut()) {
                let high = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 5);
                assert!(high >= 5);
                libc::close(*fd);
                *fd = high;
            }
        }
        common::tools::need("chromium", "chromium");
        let profile = TempDir::new("chromium");
        let (r, w) = (to_browser[0], from_browser[1]);
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg("about:blank")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(profile.path().join("stderr")).unwrap());
        // SAFETY: only async-signal-safe dup2 calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium (apt-get install -y chromium)");
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        Browser {
            child,
            to: unsafe { std::fs::File::from_raw_fd(to_browser[1]) },
            from: std::io::BufReader::new(unsafe { std::fs::File::from_raw_fd(from_browser[0]) }),
            next: 1,
            _profile: profile,
        }
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        use std::io::{BufRead, Write};
        let id = self.next;
        self.next += 1;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes) {
            let said = std::fs::read_to_string(self._profile.path().join("stderr"));
            panic!(
                "chromium went away ({e}): {:?}: {said:?}",
                self.child.try_wait()
            );
        }
        loop {
            let mut buf = Vec::new();
            assert!(
                self.from.read_until(0, &mut buf).unwrap() > 0,
                "chromium went away"
            );
            buf.pop();
            let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab; returns the tab's session.
    fn open(&mut self, url: &str) -> String {
        let t = self.call(None, "Target.createTarget", serde_json::json!({"url": url}));
        let s = self.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({"targetId": t["targetId"], "flatten": true}),
        );
        s["sessionId"].as_str().unwrap().to_string()
    }

    /// Evaluates `expr` in the tab (awaiting a promise); its value as JSON.
    fn eval(&mut self, session: &str, expr: &str) -> serde_json::Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits (up to a minute: this is about whether, not how fast) until `expr` is true.
    fn wait_for(&mut self, session: &str, expr: &str) -> bool {
        wait_until(std::time::Duration::from_secs(60), || {
            self.eval(session, expr) == serde_json::Value::Bool(true)
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page of another site: every request gets `html`.
fn serve_page(html: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut b = [0u8; 4096];
                    let _ = s.read(&mut b);
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    );
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    });
    (port, stop)
}

fn peer_state(admin: u16, peer: &str) -> String {
    let text = get_close(
        &format!("127.0.0.1:{admin}"),
        "/api/upstreams",
        &format!("127.0.0.1:{admin}"),
        "",
    );
    let v: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    v["upstreams"][0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == peer)
        .map(|p| p["state"].as_str().unwrap().to_string())
        .unwrap()
}

/// CSRF: with `unauthenticated = true` (the worst case: the browser needs no credential),
/// another site's page that submits a form, `fetch`es without CORS, or `fetch`es with the
/// dashboard's header cannot act; the dashboard's own buttons still can.
#[test]
fn csrf_cross_site_form_and_fetch_are_refused_in_a_browser() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let admin = free_port();
    let conf = app_conf_peers(&[a.addr(), b.addr()], "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", unauthenticated = true }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    let target =
        |peer: &str| format!("http://127.0.0.1:{admin}/api/upstreams/app/peers/{peer}/down");
    // Served from http://localhost:PORT: another site than http://127.0.0.1:ADMIN.
    let page = format!(
        r#"<!doctype html><body><iframe name="sink"></iframe>
<form id="form" method="POST" target="sink" action="{form}"><input name="x" value="1"></form>
<script>
window.results = {{}};
async function attack() {{
  try {{ const r = await fetch("{simple}", {{ method: "POST", mode: "no-cors" }}); results.simple = "sent " + r.type; }}
  catch (e) {{ results.simple = "blocked " + e; }}
  try {{ const r = await fetch("{custom}", {{ method: "POST", headers: {{ "X-Proxyd-Dashboard": "1" }} }}); results.custom = "answered " + r.status; }}
  catch (e) {{ results.custom = "blocked " + e; }}
  document.getElementById("form").submit();
  results.done = true;
}}
attack();
</script></body>"#,
        form = target(&a.addr()),
        simple = target(&b.addr()),
        custom = target(&a.addr()),
    );
    let (evil, stop) = serve_page(page.clone());
    // rebound.test resolves to the admin address, as a rebinding attacker's name would.
    let mut browser = Browser::launch(&["--host-resolver-rules=MAP rebound.test 127.0.0.1"]);
    let tab = browser.open(&format!("http://localhost:{evil}/"));
    assert!(browser.wait_for(&tab, "window.results && results.done === true"));
    // The form's answer lands in the frame (cross-origin: the page cannot read it).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let results = browser.eval(&tab, "JSON.stringify(results)");
    // Wait until the attempts reached the proxy: refused (logged), or done (a peer down).
    let refused = || p.error_log().matches("refused: CrossSite").count();
    wait_until(std::time::Duration::from_secs(10), || {
        refused() >= 3
            || peer_state(admin, &a.addr()) != "up"
            || peer_state(admin, &b.addr()) != "up"
    });
    assert_eq!(peer_state(admin, &a.addr()), "up", "form: {results}");
    assert_eq!(peer_state(admin, &b.addr()), "up", "fetch: {results}");
    // The form, the no-cors fetch, and the other fetch's preflight.
    assert!(refused() >= 3, "{results}\n{}", p.error_log());
    assert!(
        results.as_str().unwrap().contains("\"custom\":\"blocked"),
        "{results}"
    );
    for _ in 0..4 {
        assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
    }

    // DNS rebinding: a page of rebound.test (now resolving to the admin address) is the
    // same origin as its requests, but names rebound.test in Host: nothing is served.
    let rebound = browser.open(&format!("http://rebound.test:{admin}/"));
    // A new tab is about:blank, complete, until the navigation lands: wait for the host.
    assert!(browser.wait_for(
        &rebound,
        "location.hostname === 'rebound.test' && document.readyState === 'complete' && document.body !== null"
    ));
    let text = browser.eval(
        &rebound,
        "fetch('/api/upstreams').then(r => r.status + ' ' + document.body.textContent)",
    );
    assert!(
        text.as_str().unwrap().starts_with("421 Host is not"),
        "{text}"
    );
    assert!(!text.as_str().unwrap().contains(&a.addr()), "{text}");

    // The dashboard's own "down" button works.
    let dash = browser.open(&format!("http://127.0.0.1:{admin}/"));
    let button = format!(
        "document.querySelector('button[data-a=\"down\"][data-p=\"{}\"]')",
        a.addr()
    );
    assert!(browser.wait_for(&dash, &format!("{button} !== null")));
    browser.eval(&dash, &format!("{button}.click()"));
    assert!(wait_until(
        std::time::Duration::from_secs(10),
        || peer_state(admin, &a.addr()) == "down (admin)"
    ));
    assert!(browser.wait_for(&dash, "document.body.textContent.includes('down (admin)')"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// An admin API call with the token; (status, body).
fn admin_call(admin: u16, method: &str, path: &str) -> (u16, serde_json::Value) {
    let text = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    let status = text[9..12].parse().unwrap();
    (
        status,
        serde_json::from_str(&body_of(&text)).unwrap_or_default(),
    )
}

/// What the page shows, read by a script in the page after it drew: charts, tables, where
/// the first drain button is, and which table boxes are narrower than their tables.
const LOOK: &str = r##"(() => {
  const r = (sel) => [...document.querySelectorAll(sel)];
  const text = (row, cls) => { const c = row.querySelector("." + cls); return c ? c.textContent : null; };
  const button = document.querySelector("button[data-a=drain]").getBoundingClientRect();
  return JSON.stringify({
    width: window.innerWidth,
    page_width: document.documentElement.scrollWidth,
    first_points: Object.fromEntries(r("canvas").map(c => [c.id, Number(c.dataset.firstPoints)])),
    routes: r("#routes tbody tr").map(row => ({ server: row.dataset.server, route: row.dataset.route || null,
      requests: text(row, "route-requests"), p99: text(row, "route-p99") })),
    peers: r("#upstreams tbody tr").map(row => ({ peer: row.dataset.peer, state: text(row, "peer-state"),
      latency: text(row, "peer-latency"), probe: text(row, "peer-probe") })),
    drain: { left: button.left, right: button.right, width: button.width },
    drain_box_scrolls: (() => { const s = document.querySelector("button[data-a=drain]").closest(".scroll");
      return s.scrollWidth > s.clientWidth; })(),
    upstream_head: getComputedStyle(document.querySelector("#upstreams thead")).display,
    boxes: r(".scrollbox").map(b => { const s = b.querySelector(".scroll"), h = b.querySelector(".hint");
      return { table: s.querySelector("table").id, cut: s.scrollWidth > s.clientWidth,
               scrolls: b.classList.contains("scrolls"), more: b.classList.contains("more"),
               hint_shown: h.offsetParent !== null && h.textContent.includes("scroll") }; }),
  });
})()"##;

/// The dashboard of a master that has been sampling: at desktop and phone widths the
/// charts are drawn from history on the first render, each server and route has its row,
/// each peer its latency and last health check, an admin drain says it holds until the
/// next reload (and is gone after one), and nothing is cut without a cue: the drain
/// buttons are on screen, and a table wider than its box shows "scroll" and a fade.
#[test]
fn the_dashboard_opens_with_history_routes_peer_latency_probes_and_overrides_at_both_widths() {
    use base64::Engine;
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let admin = free_port();
    let conf = app_conf_peers(
        &[a.addr(), b.addr()],
        "health_check = { path = \"/healthz\", interval = \"250ms\", timeout = \"1s\" }",
        "server_name = \"shop.test\"",
        "fixed",
    )
    .replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\" }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    let history = || {
        admin_call(admin, "GET", "/api/history").1["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // Two batches in two sampling intervals (one every 5 s): two points of each chart.
    for batch in 0..2 {
        for i in 0..19 {
            let path = if i % 5 == 0 { "/fixed" } else { "/sleep?ms=3" };
            assert!(get_close(&p.addr(), path, "shop.test", "").starts_with("HTTP/1.1 200"));
        }
        let done = 19 * (batch + 1);
        assert!(wait_until(std::time::Duration::from_secs(60), || {
            history().last().is_some_and(|s| s["requests"] == done)
        }));
    }
    let (s, r) = admin_call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/drain", b.addr()),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["until"], "next reload", "{r}");
    let (s, r) = admin_call(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/weight?value=3", a.addr()),
    );
    assert_eq!(s, 200, "{r}");
    assert!(p.error_log().contains("until the next reload"));

    let url = format!("http://127.0.0.1:{admin}/#token={TOKEN}");
    let mut browser = Browser::launch(&["--hide-scrollbars"]);
    let mut phone_tab = String::new();
    for (name, width, height, mobile) in [("desktop", 1280, 900, false), ("phone", 390, 844, true)]
    {
        let tab = browser.open("about:blank");
        browser.call(
            Some(&tab),
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        browser.call(Some(&tab), "Page.navigate", serde_json::json!({"url": url}));
        assert!(browser.wait_for(
            &tab,
            "document.querySelector('#routes tbody tr') !== null && document.getElementById('c-conn').dataset.firstPoints !== undefined"
        ));
        let look: serde_json::Value =
            serde_json::from_str(browser.eval(&tab, LOOK).as_str().unwrap()).unwrap();
        let shot = browser.call(
            Some(&tab),
            "Page.captureScreenshot",
            serde_json::json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let file = p.dir.path().join(format!("dashboard-full-{name}.png"));
        std::fs::write(&file, &png).unwrap();
        if let Ok(dir) = std::env::var("DASHBOARD_SHOTS") {
            std::fs::copy(&file, format!("{dir}/dashboard-full-{name}.png")).unwrap();
        }

        assert_eq!(look["width"], width, "{look}");
        // Charts full at once: drawn from the master's samples, not from this page's polls.
        for chart in ["c-rate", "c-lat", "c-conn"] {
            assert!(
                look["first_points"][chart].as_u64().unwrap() > 1,
                "{chart}: {look}"
            );
        }
        // The server's row and its routes', with the requests each took.
        let row = |route: Option<&str>| {
            look["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["server"] == "shop.test" && r["route"].as_str() == route)
                .unwrap_or_else(|| panic!("{route:?}: {look}"))
                .clone()
        };
        assert_eq!(row(None)["requests"], "38", "{look}");
        assert_eq!(row(Some("/"))["requests"], "30", "{look}");
        assert_eq!(row(Some("/fixed"))["requests"], "8", "{look}");
        assert!(
            row(Some("/"))["p99"].as_str().unwrap().ends_with(" ms"),
            "{look}"
        );
        let peer = |addr: &str| {
            look["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["peer"] == addr)
                .unwrap_or_else(|| panic!("{addr}: {look}"))
                .clone()
        };
        for addr in [a.addr(), b.addr()] {
            let row = peer(&addr);
            // "4.1 ms / 9.8 ms": mean and p99 of its responses.
            let latency = row["latency"].as_str().unwrap();
            assert!(
                latency.contains(" ms / ") && latency.ends_with(" ms"),
                "{row}"
            );
            let probe = row["probe"].as_str().unwrap();
            assert!(
                probe.starts_with("ok, ") && probe.ends_with(" ago"),
                "{row}"
            );
        }
        assert_eq!(
            peer(&a.addr())["state"],
            "up \u{2014} weight 3 until next reload",
            "{look}"
        );
        assert_eq!(
            peer(&b.addr())["state"],
            "draining (admin) \u{2014} until next reload",
            "{look}"
        );
        // Nothing wider than the screen; the drain button on it, not in a cut-off column.
        assert!(
            look["page_width"].as_u64() <= look["width"].as_u64(),
            "{look}"
        );
        let drain = &look["drain"];
        assert!(drain["width"].as_f64().unwrap() > 0.0, "{look}");
        assert!(drain["left"].as_f64().unwrap() >= 0.0, "{look}");
        assert!(drain["right"].as_f64().unwrap() <= width as f64, "{look}");
        assert_eq!(look["drain_box_scrolls"], false, "{look}");
        // Any table wider than its box says so.
        for b in look["boxes"].as_array().unwrap() {
            if b["cut"] == true {
                assert!(
                    b["scrolls"] == true && b["more"] == true && b["hint_shown"] == true,
                    "{b}: {look}"
                );
            } else {
                assert!(b["hint_shown"] == false, "{b}: {look}");
            }
        }
        if mobile {
            // Peers as cards; the route table scrolls, with its cue.
            assert_eq!(look["upstream_head"], "none", "{look}");
            let routes = look["boxes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["table"] == "routes")
                .unwrap()
                .clone();
            assert_eq!(routes["cut"], true, "{look}");
            phone_tab = tab;
        } else {
            assert_eq!(look["upstream_head"], "table-header-group", "{look}");
        }
    }
    // A reload ends the drain; the page, polling, shows it.
    assert_eq!(admin_call(admin, "POST", "/api/reload").0, 202);
    let state = format!(
        "document.querySelector('tr[data-peer=\"{}\"] .peer-state').textContent",
        b.addr()
    );
    assert!(
        browser.wait_for(&phone_tab, &format!("{state} === 'up'")),
        "{}",
        browser.eval(&phone_tab, &state)
    );
}
