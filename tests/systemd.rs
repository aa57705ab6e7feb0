//! systemd integration: the notification protocol over a real datagram socket (a path and an
//! abstract name), the unit file checked by `systemd-analyze verify`, and `proxyctl -q`.

mod common;

use common::upstream::Upstream;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn conf(up: &Upstream, fixed: &str) -> String {
    app_conf(up, "", "", fixed)
}

/// The next notification, as its lines.
fn next(sock: &UnixDatagram) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Notifications until one has `key`, which is returned.
fn until(sock: &UnixDatagram, key: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = next(sock);
        if m.iter().any(|l| l == key) {
            return m;
        }
        assert!(Instant::now() < deadline, "no {key}");
    }
}

fn status(m: &[String]) -> &str {
    m.iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
}

#[test]
fn notifies_ready_reloading_and_stopping() {
    let up = Upstream::start("up");
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut p = Proxyd::start_env(
        2,
        "",
        &conf(&up, "one"),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let m = until(&sock, "READY=1");
    assert!(status(&m).starts_with("generation 1 serving"), "{m:?}");
    assert!(m.contains(&format!("MAINPID={}", p.pid())), "{m:?}");

    p.rewrite(2, "", &conf(&up, "two"));
    assert!(p.ctl("reload").status.success());
    let m = until(&sock, "RELOADING=1");
    let usec: u64 = m
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let m = until(&sock, "READY=1");
    assert!(status(&m).starts_with("generation 2 serving"), "{m:?}");

    // A refused config: reloading, then ready again with the old generation and the reason.
    p.rewrite(2, "", "[[server]]\nlisten = \"nowhere\"\n");
    assert!(!p.ctl("reload").status.success());
    until(&sock, "RELOADING=1");
    let m = until(&sock, "READY=1");
    assert!(
        status(&m).starts_with("generation 2 serving; reload failed:"),
        "{m:?}"
    );

    p.signal(libc::SIGQUIT);
    let m = until(&sock, "STOPPING=1");
    assert!(status(&m).contains("stopping"), "{m:?}");
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn notifies_over_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("proxyd-test-{}-{}", std::process::id(), free_port());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let up = Upstream::start("up");
    let _p = Proxyd::start_env(
        1,
        "",
        &conf(&up, "x"),
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    );
    let m = until(&sock, "READY=1");
    assert!(status(&m).starts_with("generation 1 serving"), "{m:?}");
}

/// The shipped unit, with its binaries pointed at this build, passes `systemd-analyze verify`.
#[test]
fn unit_file_verifies() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/proxyd.service"),
    )
    .unwrap();
    for key in [
        "Type=notify",
        "ExecStartPre=/usr/sbin/proxyctl -t -q",
        "ExecReload=/usr/sbin/proxyctl -c /etc/proxyd/proxyd.toml reload",
        "KillSignal=SIGQUIT",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_KILL",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
    let dir = TempDir::new("unit");
    let bins = bin("proxyd").parent().unwrap().display().to_string();
    let local = dir.write("proxyd.service", &unit.replace("/usr/sbin", &bins));
    common::tools::need("systemd-analyze", "systemd");
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .output()
        .expect("systemd-analyze (Debian package systemd; .ci/run installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn proxyctl_quiet_prints_only_errors() {
    let dir = TempDir::new("quiet");
    let good = dir.write(
        "good.toml",
        "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 200\n",
    );
    let out = proxyctl(&["-t", "-q", "-c", good.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let bad = dir.write("bad.toml", "worker_processes = \"x\"\n");
    let out = proxyctl(&["-t", "-q", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:1:"));
}
