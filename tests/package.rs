//! The Debian package: built by `scripts/package.sh`, installed with `dpkg -i`, its config
//! tested and served as the unit would start it, upgraded over a locally edited config,
//! removed and purged. This changes the machine (it installs into /usr/sbin and /etc), so it
//! is `#[ignore]`d: run as root with `--ignored`, which scripts/test.sh does with
//! PROXYD_SYSTEM_TESTS=1 (`.ci/run` sets it as root). The packaged config itself is checked
//! everywhere.

mod common;

use common::client::get;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The packaged /etc/proxyd/proxyd.toml, pointed at a test directory, port and user.
fn packaged_config(dir: &Path, port: u16, user: &str) -> String {
    std::fs::read_to_string(root().join("packaging/proxyd.toml"))
        .unwrap()
        .replace("user = \"proxyd\"", &format!("user = \"{user}\""))
        .replace("/var/log/proxyd", &dir.display().to_string())
        .replace("/run/proxyd", &dir.display().to_string())
        .replacen(
            "\nlisten = [\"0.0.0.0:80\", \"[::]:80\"]",
            &format!("\nlisten = [\"127.0.0.1:{port}\"]"),
            1,
        )
}

#[test]
fn packaged_config_is_valid_and_serves_the_welcome_page() {
    let dir = TempDir::new("pkgconf");
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    // The shipped example site, included the way /etc/proxyd/conf.d would hold it.
    let example = std::fs::read_to_string(root().join("packaging/examples/site.toml"))
        .unwrap()
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{}", free_port()));
    std::fs::write(conf_d.join("site.toml"), example).unwrap();
    let port = free_port();
    let conf = dir.write("proxyd.toml", &packaged_config(dir.path(), port, "nobody"));
    let out = proxyctl(&["-t", "-q", "-c", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(bin("proxyd"))
        .args(["-c", conf.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get(&addr, "/").is_ok()));
    let r = get(&addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Welcome to proxyd"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let _ = proxyctl(&["-c", conf.to_str().unwrap(), "stop"]);
    let _ = child.wait();
}

/// Runs scripts/package.sh for `formats` at `version`; returns the packages' paths. Built
/// into a target directory of its own (the outer cargo holds this one's lock), one build at
/// a time (they share the staging tree).
fn package(formats: &[&str], version: &str) -> Vec<PathBuf> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    tools::need("strip", "binutils");
    for f in formats {
        match *f {
            "deb" => tools::need("dpkg-deb", "dpkg"),
            _ => tools::need("rpmbuild", "rpm"),
        }
    }
    let out = run(Command::new(root().join("scripts/package.sh"))
        .env("CARGO_TARGET_DIR", root().join("target/pkg-test"))
        .env("PKG_VERSION", version)
        .env("PKG_FORMATS", formats.join(" ")));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// The rpm: file list with modes, config-file flags (an upgrade keeps edits), the
/// scriptlets, and an install into a scratch root.
#[test]
fn rpm_files_config_flags_scriptlets_and_scratch_install() {
    let rpm = package(&["rpm"], "0.1.0").remove(0);
    assert!(rpm.to_string_lossy().ends_with(".rpm"), "{rpm:?}");
    let dump = run(Command::new("rpm").args(["-qp", "--dump"]).arg(&rpm));
    let dump = String::from_utf8_lossy(&dump.stdout);
    // path size mtime digest mode owner group isconfig isdoc ...
    let entry = |path: &str| -> Vec<String> {
        dump.lines()
            .find(|l| l.split_whitespace().next() == Some(path))
            .unwrap_or_else(|| panic!("{path} not in the rpm:\n{dump}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    for (path, mode, config) in [
        ("/usr/sbin/proxyd", "0100755", "0"),
        ("/usr/sbin/proxyctl", "0100755", "0"),
        ("/etc/proxyd/proxyd.toml", "0100644", "1"),
        ("/etc/logrotate.d/proxyd", "0100644", "1"),
        ("/etc/proxyd/conf.d", "040755", "0"),
        ("/usr/lib/systemd/system/proxyd.service", "0100644", "0"),
        ("/usr/share/man/man5/proxyd.toml.5.gz", "0100644", "0"),
        ("/usr/share/man/man8/proxyd.8.gz", "0100644", "0"),
        ("/usr/share/man/man8/proxyctl.8.gz", "0100644", "0"),
        ("/var/log/proxyd", "040750", "0"),
    ] {
        let e = entry(path);
        assert_eq!(
            (e[4].as_str(), e[7].as_str()),
            (mode, config),
            "{path}: {e:?}"
        );
    }
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
    let scripts = String::from_utf8_lossy(&scripts.stdout);
    for piece in [
        "useradd -r -g proxyd",
        "systemctl enable proxyd.service",
        "/usr/sbin/proxyctl -q upgrade",
        "systemctl disable --now proxyd.service",
        "rm -rf /var/log/proxyd",
    ] {
        assert!(
            scripts.contains(piece),
            "scriptlets lack {piece}:\n{scripts}"
        );
    }
    // Into a scratch root (scriptlets need the target system, so they do not run there).
    let scratch = TempDir::new("rpmroot");
    run(Command::new("rpm")
        .arg("--root")
        .arg(scratch.path())
        .args(["-i", "--nodeps", "--noscripts"])
        .arg(&rpm));
    for f in [
        "usr/sbin/proxyd",
        "etc/proxyd/proxyd.toml",
        "usr/lib/systemd/system/proxyd.service",
    ] {
        assert!(scratch.path().join(f).exists(), "{f} not installed");
    }
    let q = run(Command::new("rpm")
        .arg("--root")
        .arg(scratch.path())
        .args(["-q", "proxyd"]));
    assert!(String::from_utf8_lossy(&q.stdout).starts_with("proxyd-0.1.0-1."));
}

/// Removes the package (and what a failed run left running) however the test ends.
struct Installed {
    server: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A master started by an upgrade is not our child.
        if let Ok(pid) = std::fs::read_to_string("/run/proxyd/proxyd.pid") {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) with a pid read from proxyd's own pid file.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("dpkg").args(["-P", "proxyd"]).output();
    }
}

fn uid_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "installs the deb system-wide (/usr/sbin, /etc): run as root with `cargo test --test package -- --ignored`, as scripts/test.sh does with PROXYD_SYSTEM_TESTS=1"]
fn deb_installs_serves_upgrades_and_purges() {
    assert!(
        nix_is_root(),
        "installs a package system-wide: run as root (PROXYD_SYSTEM_TESTS=1 scripts/test.sh)"
    );
    let first = package(&["deb"], "0.1.0").remove(0);
    let newer = package(&["deb"], "0.1.0+upgrade1").remove(0);

    let _ = Command::new("dpkg").args(["-P", "proxyd"]).output();
    let mut installed = Installed { server: None };
    run(Command::new("dpkg").arg("-i").arg(&first));
    assert!(Path::new("/usr/sbin/proxyd").exists());
    run(Command::new("/usr/sbin/proxyctl").args(["-t", "-q"]));
    let proxyd_uid =
        String::from_utf8_lossy(&run(Command::new("id").args(["-u", "proxyd"])).stdout)
            .trim()
            .parse::<u32>()
            .unwrap();

    // A local edit: the operator moves the welcome page to a port of the test's choosing.
    let port = free_port();
    let etc = Path::new("/etc/proxyd/proxyd.toml");
    let edited = std::fs::read_to_string(etc).unwrap().replacen(
        "\nlisten = [\"0.0.0.0:80\", \"[::]:80\"]",
        &format!("\n# local edit\nlisten = [\"127.0.0.1:{port}\"]"),
        1,
    );
    std::fs::write(etc, &edited).unwrap();

    // Started the way the unit starts it (no systemd as PID 1 here).
    std::fs::create_dir_all("/run/proxyd").unwrap();
    run(Command::new("/usr/sbin/proxyctl").args(["-t", "-q"]));
    installed.server = Some(
        Command::new("/usr/sbin/proxyd")
            .args(["-c", "/etc/proxyd/proxyd.toml"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get(&addr, "/").is_ok()));
    assert!(get(&addr, "/")
        .unwrap()
        .text()
        .contains("Welcome to proxyd"));
    let master = installed.server.as_ref().unwrap().id();
    let workers = children_of(master);
    assert!(!workers.is_empty());
    for w in &workers {
        assert_eq!(uid_of(*w), proxyd_uid, "workers run as the proxyd user");
    }
    run(Command::new("/usr/sbin/proxyctl").arg("reload"));
    assert!(get(&addr, "/")
        .unwrap()
        .text()
        .contains("Welcome to proxyd"));
    assert!(std::fs::read_to_string("/var/log/proxyd/access.log")
        .unwrap()
        .contains("GET / HTTP/1.1"));

    // A newer package over the running service: the edit survives, and the postinst's
    // binary upgrade puts a master of the new binary in place of the old one, which
    // drains and exits; it kept serving throughout.
    run(Command::new("dpkg")
        .args(["-i", "--force-confold"])
        .arg(&newer));
    assert_eq!(std::fs::read_to_string(etc).unwrap(), edited);
    let new_master: u32 = std::fs::read_to_string("/run/proxyd/proxyd.pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        new_master, master,
        "the running proxyd was upgraded in place"
    );
    assert!(get(&addr, "/")
        .unwrap()
        .text()
        .contains("Welcome to proxyd"));
    assert!(
        !std::fs::read_link(format!("/proc/{new_master}/exe"))
            .unwrap()
            .to_string_lossy()
            .contains("(deleted)"),
        "the new master runs the installed binary"
    );
    let _ = installed.server.take().unwrap().wait();
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "proxyd"]));
    assert_eq!(String::from_utf8_lossy(&status.stdout), "0.1.0+upgrade1");

    // Remove stops nothing here (no systemd) but keeps the config; purge takes it and the
    // logs.
    run(Command::new("/usr/sbin/proxyctl").args(["-q", "quit"]));
    assert!(wait_until(Duration::from_secs(10), || !alive(new_master)));
    run(Command::new("dpkg").args(["-r", "proxyd"]));
    assert!(!Path::new("/usr/sbin/proxyd").exists());
    assert!(etc.exists(), "remove keeps the configuration");
    run(Command::new("dpkg").args(["-P", "proxyd"]));
    assert!(!etc.exists(), "purge removes the configuration");
    assert!(
        !Path::new("/var/log/proxyd").exists(),
        "purge removes the logs"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The shipped logrotate file rotates the logs and makes proxyd reopen them: after a forced
/// rotation, new requests are logged in a fresh access.log, the old lines stay in
/// access.log.1.
#[test]
fn logrotate_rotates_and_proxyd_reopens() {
    let up = common::upstream::Upstream::start("up");
    let p = Proxyd::start(1, &app_conf(&up, "", "", "fixed"));
    let dir = p.dir.path().display().to_string();
    get(&p.addr(), "/before").unwrap();
    let access = p.dir.path().join("access.log");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&access)
            .unwrap_or_default()
            .contains("/before")
    }));

    let mut conf = std::fs::read_to_string(root().join("packaging/logrotate"))
        .unwrap()
        .replace("/var/log/proxyd", &dir)
        .replace("[ ! -S /run/proxyd/proxyd.sock ] || ", "")
        .replace(
            "/usr/sbin/proxyctl -q reopen",
            &format!(
                "{} -q -c {} reopen",
                bin("proxyctl").display(),
                p.conf.display()
            ),
        );
    if !nix_is_root() {
        conf = conf.replace("create 0640 root adm", "create 0640");
    }
    let rotate = p.dir.write("logrotate.conf", &conf);
    let state = p.dir.path().join("logrotate.state");
    tools::need("logrotate", "logrotate");
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&rotate)
        .output()
        .expect("logrotate (Debian package logrotate; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    get(&p.addr(), "/after").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&access)
            .unwrap_or_default()
            .contains("/after")),
        "new lines go to the new access.log"
    );
    let old = std::fs::read_to_string(p.dir.path().join("access.log.1")).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    assert!(!std::fs::read_to_string(&access)
        .unwrap()
        .contains("/before"));
}

/// lintian finds nothing in the deb; rpmlint finds only the tags packaging/README.md
/// explains (each is a choice or a false positive of Debian's rpmlint configuration).
#[test]
fn packages_pass_lintian_and_rpmlint() {
    let pkgs = package(&["deb", "rpm"], "0.1.0");
    let deb = pkgs
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".deb"))
        .unwrap();
    let rpm = pkgs
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".rpm"))
        .unwrap();
    tools::need("lintian", "lintian");
    tools::need("rpmlint", "rpmlint");
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .expect("lintian (Debian package lintian; .ci/run installs it)");
    let tags = String::from_utf8_lossy(&out.stdout);
    assert!(
        !tags
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{tags}"
    );
    let out = Command::new("rpmlint")
        .arg(rpm)
        .output()
        .expect("rpmlint (Debian package rpmlint; .ci/run installs it)");
    let explained = std::fs::read_to_string(root().join("packaging/README.md")).unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    for line in report.lines().filter(|l| l.starts_with("proxyd.")) {
        let tag = line
            .split(": ")
            .nth(2)
            .and_then(|t| t.split_whitespace().next())
            .unwrap();
        assert!(
            explained.contains(&format!("`{tag}`")),
            "rpmlint tag {tag} is not explained in packaging/README.md:\n{report}"
        );
    }
}
