//! The process model: master and workers, privilege drop, respawn, master death, signals.

mod common;

use common::client::{get, Body, Client};
use common::upstream::Upstream;
use common::*;
use std::time::{Duration, Instant};

fn conf(up: &Upstream) -> String {
    app_conf(up, "", "", "fixed")
}

fn uid_of(pid: u32) -> u32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn master_and_two_workers_with_privilege_drop() {
    let up = Upstream::start("up");
    let p = Proxyd::start_with(2, "user = \"nobody\"", &conf(&up));
    let workers = p.worker_pids();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let root = unsafe { libc::geteuid() } == 0;
    let nobody = nix_uid("nobody");
    for w in &workers {
        if root {
            assert_eq!(uid_of(*w), nobody, "worker {w} must run as nobody");
        }
    }
    if root {
        assert_eq!(uid_of(p.pid()), 0, "the master keeps root");
    } else {
        eprintln!("not root: privilege drop not checked");
    }
    assert_eq!(get(&p.addr(), "/x").unwrap().text(), "up /x");
    let st = p.status();
    assert!(st.contains(&format!("master pid: {}", p.pid())), "{st}");
    assert!(st.contains("generation: 1"), "{st}");
    assert!(st.contains("uptime: "), "{st}");
    assert!(
        st.contains(&format!("config: {}", p.conf.display())),
        "{st}"
    );
    for w in &workers {
        assert!(st.contains(&w.to_string()), "{st}");
    }
}

/// User plus system CPU time of a process, in clock ticks (normally 1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn nix_uid(name: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn killed_worker_is_replaced_within_a_second() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up));
    let before = p.worker_pids();
    let victim = before[0];
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || {
            let now = p.worker_pids();
            now.len() == 2 && !now.contains(&victim)
        }),
        "no replacement within 1s: {:?}",
        p.worker_pids()
    );
    eprintln!("worker replaced after {:?}", start.elapsed());
    for i in 0..50 {
        let r = get(&p.addr(), &format!("/after{i}")).unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(p.error_log().contains("unexpectedly"), "{}", p.error_log());
}

#[test]
fn workers_exit_when_master_is_killed() {
    let up = Upstream::start("up");
    let mut p = Proxyd::start(2, &conf(&up));
    let workers = p.worker_pids();
    p.child.as_mut().unwrap().kill().unwrap();
    p.child.as_mut().unwrap().wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || workers
            .iter()
            .all(|w| !alive(*w))),
        "workers still alive after master death"
    );
}

#[test]
fn quit_waits_for_in_flight_request() {
    let up = Upstream::start("up");
    let mut p = Proxyd::start(1, &conf(&up));
    let addr = p.addr();
    let worker = p.worker_pids()[0];
    let t = std::thread::spawn(move || get(&addr, "/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGQUIT);
    let cpu_before = cpu_ticks(worker);
    std::thread::sleep(Duration::from_millis(1000));
    // A draining worker waits in epoll; one that spins would burn the whole second.
    let spent = cpu_ticks(worker) - cpu_before;
    assert!(
        spent < 50,
        "draining worker used {spent} ticks of CPU in 1s"
    );
    let r = t.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept");
    assert!(
        r.closes(),
        "a draining worker answers with Connection: close"
    );
    assert!(
        p.wait_exit(Duration::from_secs(5)).is_some(),
        "master did not exit after QUIT"
    );
    assert!(
        !p.dir.path().join("proxyd.pid").exists(),
        "pid file removed"
    );
}

#[test]
fn term_exits_within_a_second() {
    let up = Upstream::start("up");
    let mut p = Proxyd::start(2, &conf(&up));
    let workers = p.worker_pids();
    let addr = p.addr();
    let _slow = std::thread::spawn(move || get(&addr, "/sleep?ms=5000"));
    std::thread::sleep(Duration::from_millis(200));
    p.signal(libc::SIGTERM);
    let took = p
        .wait_exit(Duration::from_secs(3))
        .expect("master did not exit after TERM");
    eprintln!("TERM: master exited after {took:?}");
    assert!(took < Duration::from_secs(1), "TERM took {took:?}");
    assert!(workers.iter().all(|w| !alive(*w)));
}

#[test]
fn usr1_reopens_access_log() {
    let up = Upstream::start("up");
    let p = Proxyd::start(2, &conf(&up));
    assert_eq!(get(&p.addr(), "/one").unwrap().status, 200);
    let log = p.dir.path().join("access.log");
    let rotated = p.dir.path().join("access.log.1");
    assert!(wait_until(Duration::from_secs(2), || p
        .access_log()
        .contains("/one")));
    std::fs::rename(&log, &rotated).unwrap();
    p.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(2), || log.exists()),
        "log not recreated"
    );
    // Every worker must have switched: send enough requests to reach both.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..20 {
        assert_eq!(get(&p.addr(), &format!("/two{i}")).unwrap().status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(2), || p.access_log().lines().count()
            == 20),
        "{}",
        p.access_log()
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/one") && !old.contains("/two"), "{old}");
    assert!(p.error_log().contains("reopen"), "{}", p.error_log());
    // proxyctl reopen works the same way.
    let out = p.ctl("reopen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keep_alive_client_survives_many_requests() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up));
    let mut c = Client::connect(&p.addr()).unwrap();
    for i in 0..100 {
        let r = c.request("GET", "/fixed", Body::None).unwrap();
        assert_eq!(r.text(), "fixed", "request {i}");
    }
}

#[test]
fn crashing_worker_is_respawned_with_backoff() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up));
    for round in 0..4 {
        let pids = p.worker_pids();
        assert_eq!(pids.len(), 1, "round {round}: {pids:?}");
        unsafe {
            libc::kill(pids[0] as i32, libc::SIGKILL);
        }
        assert!(
            wait_until(Duration::from_secs(5), || {
                let now = p.worker_pids();
                now.len() == 1 && now[0] != pids[0]
            }),
            "round {round}: not respawned"
        );
    }
    assert!(
        p.error_log().contains("keeps crashing: respawning in"),
        "{}",
        p.error_log()
    );
    assert_eq!(get(&p.addr(), "/x").unwrap().status, 200);
}

#[test]
fn proxyctl_quit_and_stop_return_after_exit() {
    let up = Upstream::start("up");
    let mut p = Proxyd::start(2, &conf(&up));
    let out = proxyctl(&[
        "-p",
        p.dir.path().join("proxyd.pid").to_str().unwrap(),
        "status",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("master pid: {}", p.pid())));
    let out = p.ctl("quit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        p.wait_exit(Duration::from_millis(500)).is_some(),
        "proxyctl quit returned before the master exited"
    );
    let out = p.ctl("status");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is proxyd running?"));

    let mut q = Proxyd::start(1, &conf(&up));
    let out = q.ctl("stop");
    assert!(out.status.success());
    assert!(q.wait_exit(Duration::from_millis(500)).is_some());
}

#[test]
fn second_instance_on_same_config_is_refused() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up));
    let out = std::process::Command::new(bin("proxyd"))
        .arg("-c")
        .arg(&p.conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bind()") || err.contains("another master"),
        "{err}"
    );
    // The first one is untouched.
    assert_eq!(get(&p.addr(), "/x").unwrap().status, 200);
    assert!(p.dir.path().join("proxyd.pid").exists());
}

#[test]
fn usr1_reaches_draining_workers_too() {
    let up = Upstream::start("up");
    let p = Proxyd::start(1, &conf(&up));
    let addr = p.addr();
    let slow = std::thread::spawn(move || get(&addr, "/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.ctl("reload").status.success());
    let log = p.dir.path().join("access.log");
    std::fs::rename(&log, p.dir.path().join("access.log.1")).unwrap();
    p.signal(libc::SIGUSR1);
    assert!(wait_until(Duration::from_secs(2), || log.exists()));
    assert_eq!(slow.join().unwrap().unwrap().status, 200);
    assert!(
        wait_until(Duration::from_secs(2), || p
            .access_log()
            .contains("/sleep?ms=1500")),
        "the draining worker must log into the new file: {}",
        p.access_log()
    );
}

/// Issue 20: `proxyctl -h` lists every command it takes.
#[test]
fn proxyctl_help_lists_every_command() {
    let out = proxyctl(&["-h"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for cmd in [
        "-t", "-T", "reload", "upgrade", "quit", "stop", "reopen", "status", "top", "-c", "-p",
        "-q",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing:\n{text}"
        );
    }
}

/// What `ps -o args` shows of a process: its /proc/PID/cmdline, NULs as spaces, trailing
/// ones dropped.
fn title(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&raw[..end]).replace('\0', " ")
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The master's children by title.
fn titled(master: u32) -> Vec<(u32, String)> {
    children_of(master)
        .into_iter()
        .map(|p| (p, title(p)))
        .collect()
}

#[test]
fn processes_say_what_they_are_in_ps() {
    common::tools::need("ps", "procps");
    const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";
    // "/slow" is answered once the test lets it go: a request in flight for as long as the
    // test needs one.
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = release.clone();
    let up = common::raw::RawUpstream::start(move |r| {
        while r.path() == "/slow" && !gate.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        common::raw::ok(r.path())
    });
    let dir = TempDir::new("titles");
    let notify = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let admin = free_port();
    // A health check makes a helper process, a basic-auth user a hashing process.
    let p = Proxyd::start_env(
        2,
        &format!(
            "admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{}\", basic_auth = {{ ops = \"{BCRYPT}\" }} }}",
            "t".repeat(32)
        ),
        &app_conf_at(
            &format!("127.0.0.1:{}", up.port),
            "health_check = { path = \"/healthz\", interval = \"1s\", timeout = \"1s\" }",
            "",
            "fixed",
        ),
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
    );
    let master = p.pid();
    let want = format!(
        "proxyd: master process {} -c {}",
        bin("proxyd").display(),
        p.conf.display()
    );
    assert_eq!(title(master), want);
    // ps shows the same, and the short name is still proxyd (pkill, systemd).
    let ps = std::process::Command::new("ps")
        .args(["-o", "args=", "-p", &master.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), want);
    assert_eq!(comm(master), "proxyd");
    // NOTIFY_SOCKET was read from the environment after the title covered its memory.
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("READY=1 on NOTIFY_SOCKET");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    let kinds = |want: &str| {
        titled(master)
            .into_iter()
            .filter(|(_, t)| t == want)
            .map(|(p, _)| p)
            .collect::<Vec<u32>>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || kinds("proxyd: helper process")
            .len()
            == 1
            && kinds("proxyd: hashing process").len() == 1),
        "{:?}",
        titled(master)
    );
    let old = kinds("proxyd: worker process (gen 1)");
    assert_eq!(old.len(), 2, "{:?}", titled(master));
    let mut serving = p.serving_pids();
    serving.sort();
    assert_eq!(old, serving);
    for (pid, _) in titled(master) {
        assert_eq!(comm(pid), "proxyd");
    }

    // A reload while a request is in flight: the old worker that has it drains and says so.
    let addr = p.addr();
    let slow = std::thread::spawn(move || get(&addr, "/slow").unwrap().text());
    assert!(wait_until(Duration::from_secs(10), || up
        .requests()
        .iter()
        .any(|r| r.path() == "/slow")));
    p.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || kinds(
            "proxyd: worker process (gen 2)"
        )
        .len()
            == 2
            && !kinds("proxyd: worker process is shutting down").is_empty()),
        "{:?}",
        titled(master)
    );
    let draining = kinds("proxyd: worker process is shutting down");
    assert!(draining.iter().all(|d| old.contains(d)), "{draining:?}");
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(slow.join().unwrap(), "/slow");
    assert!(wait_until(Duration::from_secs(10), || kinds(
        "proxyd: worker process is shutting down"
    )
    .is_empty()));
    assert_eq!(title(master), want);
}
