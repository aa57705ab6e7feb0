//! The node's shared memory: peer health and counters live outside every worker, keyed by
//! name, so they survive a reload and a worker's crash; a reload needing more slots than the
//! region has is refused and the running generation keeps serving.

mod common;

use common::client::{get, Body, Client};
use common::upstream::Upstream;
use common::*;
use std::time::Duration;

fn conf(dead: u16, live: &Upstream, fixed: &str) -> String {
    app_conf_peers(
        &[format!("127.0.0.1:{dead}"), live.addr()],
        "",
        "keepalive_requests = 10000",
        fixed,
    )
}

fn requests_through(p: &Proxyd, n: usize) {
    let mut c = Client::connect(&p.addr()).unwrap();
    for i in 0..n {
        let r = c.request("GET", &format!("/r{i}"), Body::None).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some("live"));
    }
}

fn failed_connects(p: &Proxyd, dead: u16) -> usize {
    p.error_log()
        .lines()
        .filter(|l| l.contains(&format!("connect() to 127.0.0.1:{dead} failed")))
        .count()
}

#[test]
fn peer_health_and_counters_survive_reload_and_worker_crash() {
    let live = Upstream::start("live");
    let dead = free_port();
    let p = Proxyd::start(1, &conf(dead, &live, "gen1"));
    let la = live.addr();

    // The first request tries the dead peer (round-robin starts there), marks it down for
    // the node, and is retried on the live one.
    requests_through(&p, 10);
    assert_eq!(failed_connects(&p, dead), 1, "{}", p.error_log());
    let d = p.peer_row("app", &format!("127.0.0.1:{dead}"));
    assert!(d.state().starts_with("ejected ("), "{d:?}");
    assert_eq!((d.n("FAILURES"), d.n("EJECTIONS")), (1, 1), "{d:?}");
    let l = p.peer_row("app", &la);
    assert_eq!(l.state(), "up", "{l:?}");
    assert_eq!((l.n("REQUESTS"), l.n("ACTIVE")), (10, 0), "{l:?}");

    // A reload: new workers know the peer is down without trying it, and the counters go on.
    p.rewrite(1, "", &conf(dead, &live, "gen2"));
    let out = p.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "gen2");
    requests_through(&p, 10);
    assert_eq!(
        failed_connects(&p, dead),
        1,
        "the new generation tried the down peer"
    );
    assert_eq!(p.peer_row("app", &la).n("REQUESTS"), 20);
    assert!(p
        .peer_row("app", &format!("127.0.0.1:{dead}"))
        .state()
        .starts_with("ejected"));

    // A worker crash: the respawned worker sees the same, and no count goes backwards.
    let old = p.serving_pids();
    for pid in &old {
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(wait_until(Duration::from_secs(10), || {
        let now = p.serving_pids();
        !now.is_empty() && now.iter().all(|x| !old.contains(x)) && get(&p.addr(), "/fixed").is_ok()
    }));
    requests_through(&p, 10);
    assert_eq!(
        failed_connects(&p, dead),
        1,
        "the respawned worker tried the down peer"
    );
    let l = p.peer_row("app", &la);
    assert_eq!((l.n("REQUESTS"), l.n("ACTIVE")), (30, 0), "{l:?}");
    let d = p.peer_row("app", &format!("127.0.0.1:{dead}"));
    assert!(d.state().starts_with("ejected ("), "{d:?}");
    assert_eq!(d.n("FAILURES"), 1, "{d:?}");
    assert_eq!(live.requests(), 30);
}

fn many_peers(n: u16, base: u16) -> String {
    let peers: Vec<String> = (0..n)
        .map(|i| format!("\"127.0.0.1:{}\"", base + i))
        .collect();
    format!(
        r#"
[[upstream]]
name = "app"
peers = [{}]
[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
return = 200
body = "peers {n}"
"#,
        peers.join(", ")
    )
}

#[test]
fn a_reload_needing_more_slots_than_the_region_has_is_refused() {
    let globals = "shared_memory = { slots = 16 }";
    // A server, a route, an upstream and 3 peers: 6 slots of 16.
    let p = Proxyd::start_with(1, globals, &many_peers(3, 40000));
    assert_eq!(get(&p.addr(), "/").unwrap().text(), "peers 3");
    // 3 + 13 fits the region, but 13 of them are new and only 10 slots are free while
    // generation 1 serves.
    p.rewrite(1, globals, &many_peers(13, 41000));
    let out = p.ctl("reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("shared memory is full")
            && err.contains(
                "needs 13 new slots for servers, routes, upstreams and peers but only 10 of 16"
            )
            && err.contains("shared_memory.slots"),
        "{err}"
    );
    assert_eq!(get(&p.addr(), "/").unwrap().text(), "peers 3");
    // 9 new ones fit in what is left; then the first generation's peers may be recycled.
    p.rewrite(1, globals, &many_peers(9, 42000));
    assert!(p.ctl("reload").status.success());
    assert_eq!(get(&p.addr(), "/").unwrap().text(), "peers 9");
    // (Recycling waits until no worker of generation 1 is left.)
    assert!(wait_until(Duration::from_secs(10), || p
        .worker_pids()
        .len()
        == 1));
    p.rewrite(1, globals, &many_peers(3, 43000));
    let out = p.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&p.addr(), "/").unwrap().text(), "peers 3");
}

/// More servers, routes, upstreams and peers than slots is a config error, with file:line, for `-t` too.
#[test]
fn a_config_larger_than_the_region_does_not_start() {
    let dir = TempDir::new("shm-full");
    let port = free_port();
    let text = Proxyd::render(
        &dir,
        port,
        1,
        "shared_memory = { slots = 16 }",
        &many_peers(16, 44000),
    );
    let conf = dir.write("proxyd.toml", &text);
    let out = std::process::Command::new(bin("proxyd"))
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "proxyd.toml:6:17: 19 servers, routes, upstreams and peers need more shared memory slots than the 16"
        ),
        "{err}"
    );
    let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxyd.toml:6:17: 19 servers"));
}
