//! The dashboard in a real browser: headless Chromium loads `GET /` from the admin listener
//! of a proxyd carrying traffic, runs the page's script (which polls the JSON API with the
//! token from the URL fragment), and the DOM it leaves shows the upstreams, their peers and
//! non-zero counters. Screenshots at desktop and phone widths land in the test's directory.

mod common;

use common::upstream::Upstream;
use common::*;
use std::process::Command;

const TOKEN: &str = "dash-token-0123456789";

fn chromium(args: &[&str]) -> String {
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
    assert!(dom.contains("<td>app</td>"), "{dom}");
    for peer in [a.addr(), b.addr()] {
        assert!(dom.contains(&format!("<td>{peer}</td>")), "{peer}: {dom}");
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
    assert!(dom.contains("class=\"state-up\">up</td>"), "{dom}");
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
    assert!(dom.contains(&format!("<td>{}</td>", a.addr())), "{dom}");
    assert!(p.error_log().contains("[notice]"));
}
