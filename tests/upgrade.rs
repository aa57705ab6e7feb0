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
        let dir = TempDir::new("upgrade");
        let exe = dir.path().join("proxyd");
        std::fs::copy(bin("proxyd"), &exe).unwrap();
        let port = free_port();
        let admin = free_port();
        let globals =
            format!("admin = {{ listen = \"127.0.0.1:{admin}\", unauthenticated = true }}");
        let text = Proxyd::render(&dir, port, 2, &globals, &app_conf(up, "", "", "fixed"));
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

    // A binary that refuses the configuration is never started.
    m.replace_binary(b"#!/bin/sh\necho 'no such thing' >&2\nexit 1\n");
    let out = m.ctl("upgrade");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refuses the configuration"), "{err}");
    assert_eq!(m.pid(), pid);
    assert_eq!(get(&m.addr(), "/fixed").unwrap().text(), "fixed");

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
