//! Binary upgrade (`proxyctl upgrade`, SIGUSR2): a new master from the binary on disk takes
//! over the listening sockets without refusing a connection; a binary that refuses the
//! config or dies while starting leaves the old master serving.

mod common;

use common::client::get;
use common::load::Load;
use common::upstream::Upstream;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The tests here copy binaries and then execute them; a fork in another test thread while
/// a copy is open would make that exec fail with ETXTBSY. One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Spawns a binary just written, retrying while some forked process still holds the
/// descriptor it was written through (ETXTBSY).
fn spawn_fresh(exe: &Path, conf: &Path) -> Child {
    for _ in 0..100 {
        match Command::new(exe)
            .arg("-c")
            .arg(conf)
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{}: {e}", exe.display()),
        }
    }
    panic!("{} stays busy", exe.display());
}

/// A master started from a copy of the binary that the test can replace.
struct Master {
    dir: TempDir,
    exe: PathBuf,
    conf: PathBuf,
    port: u16,
    /// The admin listener's port (bound again by each new master).
    admin: u16,
    child: Option<Child>,
}

impl Master {
    fn start(up: &Upstream) -> Master {
        Self::start_at(&up.addr())
    }

    fn start_at(upstream: &str) -> Master {
        let dir = TempDir::new("upgrade");
        let exe = dir.path().join("proxyd");
        std::fs::copy(bin("proxyd"), &exe).unwrap();
        let port = free_port();
        let admin = free_port();
        let globals =
            format!("admin = {{ listen = \"127.0.0.1:{admin}\", unauthenticated = true }}");
        let text = Proxyd::render(
            &dir,
            port,
            2,
            &globals,
            &app_conf_at(upstream, "", "", "fixed"),
        );
        let conf = dir.write("proxyd.toml", &text);
        let child = spawn_fresh(&exe, &conf);
        let m = Master {
            dir,
            exe,
            conf,
            port,
            admin,
            child: Some(child),
        };
        assert!(wait_until(Duration::from_secs(10), || m
            .status()
            .lines()
            .any(
                |l| l.starts_with("workers:") && l.split_whitespace().count() == 3
            )));
        m
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The master pid the admin listener's /api/status names (0 when it does not answer).
    fn admin_master_pid(&self) -> u64 {
        let addr = format!("127.0.0.1:{}", self.admin);
        let text = std::panic::catch_unwind(|| get_close(&addr, "/api/status", &addr, ""))
            .unwrap_or_default();
        let body = text.split_once("\r\n\r\n").map_or("", |b| b.1);
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["master_pid"].as_u64())
            .unwrap_or(0)
    }

    fn ctl(&self, cmd: &str) -> std::process::Output {
        proxyctl(&["-c", self.conf.to_str().unwrap(), cmd])
    }

    fn status(&self) -> String {
        String::from_utf8_lossy(&self.ctl("status").stdout).into_owned()
    }

    /// The master pid in the pid file.
    fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("proxyd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Replaces the binary on disk the way a package manager does (a new file renamed over
    /// the old one; the running one keeps its inode).
    fn replace_binary(&self, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = self.dir.path().join("proxyd.new");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &self.exe).unwrap();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.ctl("stop");
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("proxyd.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn upgrade_under_load_refuses_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    let m = Master::start(&up);
    let first = m.pid();
    let load = Load::start(
        &m.addr(),
        20,
        |i, n| format!("/c{i}/{n}"),
        |path, body| body == format!("up {path}"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut pids = vec![first];
    for round in 0..3 {
        let out = m.ctl("upgrade");
        assert!(
            out.status.success(),
            "upgrade {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = m.pid();
        assert!(!pids.contains(&now), "a new master after upgrade {round}");
        let oldbin = m.dir.path().join("proxyd.pid.oldbin");
        let old = *pids.last().unwrap();
        assert!(
            !alive(old)
                || std::fs::read_to_string(&oldbin).is_ok_and(|t| t.trim() == old.to_string()),
            "the draining old master's pid is in proxyd.pid.oldbin"
        );
        assert!(m.status().contains(&format!("master pid: {now}")));
        pids.push(now);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    eprintln!(
        "upgrades under load: {ok} requests, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{:?}", &failed[..failed.len().min(5)]);
    assert!(ok > 500, "only {ok} requests");
    // The old masters drain and exit, and take their .oldbin with them.
    for old in &pids[..3] {
        assert!(
            wait_until(Duration::from_secs(15), || !alive(*old)),
            "old master {old} still alive"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || !m
        .dir
        .path()
        .join("proxyd.pid.oldbin")
        .exists()));
    // The admin listener moved to the newest master once the old one let the port go.
    let newest = *pids.last().unwrap() as u64;
    assert!(
        wait_until(Duration::from_secs(5), || m.admin_master_pid() == newest),
        "admin answers for {} instead of {newest}",
        m.admin_master_pid()
    );
}

#[test]
fn a_failing_new_binary_leaves_the_old_master_serving() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    let m = Master::start(&up);
    let pid = m.pid();
    traffic(&m, 10);

    // A binary that refuses the configuration is never started.
    m.replace_binary(b"#!/bin/sh\necho 'no such thing' >&2\nexit 1\n");
    let out = m.ctl("upgrade");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refuses the configuration"), "{err}");
    assert_eq!(m.pid(), pid);
    assert_eq!(get(&m.addr(), "/fixed").unwrap().text(), "fixed");
    let before = seen_at_least(&m, 11);

    // One that passes the test but dies while starting: the old master takes its pid file
    // and control socket back.
    let real = bin("proxyd");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in -t) exec {} \"$@\";; esac\nexit 3\n",
        real.display()
    );
    m.replace_binary(script.as_bytes());
    let out = m.ctl("upgrade");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited before it was ready"), "{err}");
    assert_eq!(m.pid(), pid);
    assert!(m.status().contains(&format!("master pid: {pid}")));
    // Nothing counted was lost or counted twice, and the generation is the old master's.
    assert_eq!(seen(&m), before);
    assert_eq!(get(&m.addr(), "/fixed").unwrap().text(), "fixed");

    // And with a good binary back, SIGUSR2 upgrades.
    std::fs::copy(&real, m.dir.path().join("good")).unwrap();
    std::fs::rename(m.dir.path().join("good"), &m.exe).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGUSR2) };
    assert!(wait_until(Duration::from_secs(10), || m.pid() != pid));
    assert!(wait_until(Duration::from_secs(10), || m
        .status()
        .contains(&format!("master pid: {}", m.pid()))));
    assert_eq!(get(&m.addr(), "/fixed").unwrap().text(), "fixed");
}

impl Master {
    /// The admin listener's /metrics and /api/status once the master in the pid file
    /// answers there (an old master keeps the port until it exits).
    fn scrape(&self) -> (String, serde_json::Value) {
        let addr = format!("127.0.0.1:{}", self.admin);
        let pid = self.pid() as u64;
        assert!(
            wait_until(Duration::from_secs(20), || self.admin_master_pid() == pid),
            "admin answers for {} instead of {pid}",
            self.admin_master_pid()
        );
        let status = body_of(&get_close(&addr, "/api/status", &addr, ""));
        let metrics = body_of(&get_close(&addr, "/metrics", &addr, ""));
        (metrics, serde_json::from_str(&status).unwrap())
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `proxyctl upgrade`, which must succeed, then waits for the old master to exit.
    fn upgrade_and_wait(&self) {
        let old = self.pid();
        let out = self.ctl("upgrade");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(wait_until(Duration::from_secs(15), || !alive(old)));
    }
}

/// The sum of every sample of `name` (over all its labels) in Prometheus text.
fn sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The numbers an upgrade must carry on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    requests: u64,
    peer_requests: u64,
    durations: u64,
    generation: u64,
    api_generation: u64,
    reloads: u64,
}

fn seen(m: &Master) -> Seen {
    let (text, status) = m.scrape();
    Seen {
        requests: sum(&text, "proxyd_server_requests_total"),
        peer_requests: sum(&text, "proxyd_upstream_peer_requests_total"),
        durations: sum(&text, "proxyd_server_request_duration_seconds_count"),
        generation: sum(&text, "proxyd_config_generation"),
        api_generation: status["generation"].as_u64().unwrap(),
        reloads: sum(&text, "proxyd_reloads_total"),
    }
}

fn traffic(m: &Master, n: usize) {
    for i in 0..n {
        assert_eq!(
            get(&m.addr(), &format!("/t{i}")).unwrap().text(),
            format!("up /t{i}")
        );
    }
}

/// Waits until the counters show at least `n` requests (a worker counts a request as it
/// finishes, which may be just after the client read the answer).
fn seen_at_least(m: &Master, n: u64) -> Seen {
    let mut s = seen(m);
    assert!(
        wait_until(Duration::from_secs(10), || {
            s = seen(m);
            s.requests >= n
        }),
        "{s:?}: fewer than {n} requests counted"
    );
    s
}

#[test]
fn counters_and_the_generation_go_on_across_an_upgrade() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    let m = Master::start(&up);
    traffic(&m, 20);
    let out = m.ctl("reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    traffic(&m, 10);
    let mut before = seen_at_least(&m, 30);
    assert_eq!((before.generation, before.api_generation), (2, 2));
    assert_eq!(before.reloads, 1);
    assert_eq!((before.peer_requests, before.durations), (30, 30));

    for round in 1..=2 {
        m.upgrade_and_wait();
        // The new master answers with what the old one had, nothing lost and nothing
        // counted twice: no counter reset for Prometheus to see, and the next generation.
        let after = seen(&m);
        assert_eq!(after.requests, before.requests, "{before:?} then {after:?}");
        assert_eq!(after.peer_requests, before.peer_requests);
        assert_eq!(after.durations, before.durations);
        assert_eq!(after.generation, before.generation + 1);
        assert_eq!(after.api_generation, after.generation);
        assert_eq!(after.reloads, before.reloads);
        // And they go on from there.
        traffic(&m, 10);
        let more = seen_at_least(&m, after.requests + 10);
        assert_eq!(
            more.requests,
            after.requests + 10,
            "{after:?} then {more:?}"
        );
        assert_eq!(
            more.durations,
            after.durations + 10,
            "{after:?} then {more:?}"
        );
        assert_eq!(more.peer_requests, after.peer_requests + 10);
        assert_eq!(more.generation, 2 + round);
        assert!(m
            .error_log()
            .contains("adopted the old master's shared memory"));
        before = more;
    }
}

#[test]
fn a_killed_old_masters_draining_worker_is_still_counted() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // "/slow" is answered once the test lets it go.
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let gate = release.clone();
    let up = common::raw::RawUpstream::start(move |r| {
        while r.path() == "/slow" && !gate.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        common::raw::ok(r.path())
    });
    let m = Master::start_at(&format!("127.0.0.1:{}", up.port));
    for i in 0..5 {
        assert_eq!(
            get(&m.addr(), &format!("/r{i}")).unwrap().text(),
            format!("/r{i}")
        );
    }
    let addr = m.addr();
    let slow = std::thread::spawn(move || get(&addr, "/slow").map(|r| r.text()));
    assert!(wait_until(Duration::from_secs(10), || up
        .requests()
        .iter()
        .any(|r| r.path() == "/slow")));
    let old = m.pid();
    let out = m.ctl("upgrade");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The old master dies while its worker drains the slow request; the worker finishes it
    // and counts it in the shared memory, and the new master retires its block.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    release.store(true, SeqCst);
    let got = slow.join().unwrap();
    assert_eq!(
        got.as_ref().map(String::as_str).ok(),
        Some("/slow"),
        "{got:?}\n{}",
        m.error_log()
    );
    assert!(
        wait_until(Duration::from_secs(15), || m
            .error_log()
            .contains("of exited process")),
        "{}",
        m.error_log()
    );
    let s = seen_at_least(&m, 6);
    assert_eq!((s.requests, s.peer_requests, s.durations), (6, 6, 6));
    for i in 0..4 {
        assert_eq!(
            get(&m.addr(), &format!("/s{i}")).unwrap().text(),
            format!("/s{i}")
        );
    }
    assert_eq!(seen_at_least(&m, 10).requests, 10);
}

#[test]
fn a_region_of_another_layout_is_not_adopted_and_the_log_says_so() {
    use std::os::unix::fs::FileExt;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    let m = Master::start(&up);
    traffic(&m, 20);
    let before = seen_at_least(&m, 20);
    // The running master's memfd, through /proc: its header's layout version (after the
    // 8-byte magic) becomes one no binary has.
    let fd = std::fs::read_dir(format!("/proc/{}/fd", m.pid()))
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("memfd:proxyd-shared"))
        })
        .expect("the master holds its shared memory's memfd");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(fd.path())
        .unwrap();
    f.write_all_at(&0xfff0_u32.to_ne_bytes(), 8).unwrap();

    m.upgrade_and_wait();
    let log = m.error_log();
    assert!(
        log.contains(
            "shared memory is not adopted (its layout version is 65520 and this binary's is"
        ),
        "{log}"
    );
    assert!(log.contains("start from zero"), "{log}");
    // A fresh start for the counters, but the generation still goes on.
    let after = seen(&m);
    assert!(
        after.requests < before.requests,
        "{before:?} then {after:?}"
    );
    assert_eq!(after.generation, before.generation + 1);
    traffic(&m, 5);
    seen_at_least(&m, after.requests + 5);
}

#[test]
fn an_upgrade_that_resizes_the_shared_memory_copies_the_counts() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    let m = Master::start(&up);
    traffic(&m, 10);
    let before = seen_at_least(&m, 10);
    let text = std::fs::read_to_string(&m.conf).unwrap().replacen(
        "admin = {",
        "shared_memory = { slots = 5000 }\nadmin = {",
        1,
    );
    std::fs::write(&m.conf, text).unwrap();
    m.upgrade_and_wait();
    let log = m.error_log();
    assert!(
        log.contains("shared memory is resized (4096 to 5000 slots"),
        "{log}"
    );
    let after = seen(&m);
    assert_eq!(
        (after.requests, after.peer_requests, after.durations),
        (before.requests, before.peer_requests, before.durations)
    );
    assert_eq!(after.generation, before.generation + 1);
    traffic(&m, 5);
    assert_eq!(seen_at_least(&m, 15).requests, 15);
}

/// PROXYD_UPGRADE set by hand, or left in an environment, is not trusted: its descriptors
/// are taken only when the ready one is a pipe the parent holds and each socket listens on
/// its address. A master started with a bogus value starts as a new master (it aborted on
/// "-1", and on "3" wrote into and closed its own shared memory), and a second process with
/// one does not take a running master's pid file and control socket (it did, then removed
/// them when it exited).
#[test]
fn a_bogus_upgrade_variable_is_ignored() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = Upstream::start("up");
    for bogus in ["-1", "3", "2147483647", "0;127.0.0.1:1=0", "garbage"] {
        let p = Proxyd::start_env(
            1,
            "",
            &app_conf(&up, "", "", "fixed"),
            &[("PROXYD_UPGRADE", bogus)],
        );
        assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "fixed", "{bogus}");
        assert!(
            p.error_log().contains("PROXYD_UPGRADE ignored ("),
            "{bogus}: {}",
            p.error_log()
        );
        // The second one, beside a running master, is refused; the first keeps its files.
        let out = std::process::Command::new(bin("proxyd"))
            .args(["-c", p.conf.to_str().unwrap()])
            .env("PROXYD_UPGRADE", format!("0;{}=0", p.addr()))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        // Refused before it touches anything: its listen address is the running master's.
        assert!(err.contains("Address already in use"), "{err}");
        assert!(p.status().contains(&format!("master pid: {}", p.pid())));
        assert_eq!(get(&p.addr(), "/fixed").unwrap().text(), "fixed");
    }
    // A parent that holds a pipe (a supervisor capturing output) is not an old master, and
    // the hand-over state alone, with absurd numbers, is dropped (it overflowed).
    let dir = TempDir::new("bogus-parent");
    let d = dir.path().display();
    let conf = dir.write(
        "proxyd.toml",
        &format!(
            "worker_processes = 1\npid_file = \"{d}/proxyd.pid\"\nerror_log = {{ path = \"{d}/error.log\", level = \"info\" }}\n{}",
            app_conf(&up, "", "", "fixed").replace("{port}", &free_port().to_string())
        ),
    );
    let script = "import os, subprocess, sys\nr, w = os.pipe()\nenv = dict(os.environ, PROXYD_UPGRADE=f'{w};', PROXYD_UPGRADE_STATE='generation=18446744073709551615')\np = subprocess.Popen([sys.argv[1], '-c', sys.argv[2]], env=env, pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE)\nprint(p.pid, flush=True)\nsys.stdin.read()\np.terminate()\np.wait()\n";
    let mut parent = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(bin("proxyd"))
        .arg(&conf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = dir.path().join("error.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || read()
            .contains("generation 1 serving")),
        "{}",
        read()
    );
    assert!(
        read().contains("PROXYD_UPGRADE ignored (the parent process is not a proxyd master"),
        "{}",
        read()
    );
    drop(parent.stdin.take());
    let _ = parent.wait();
}
