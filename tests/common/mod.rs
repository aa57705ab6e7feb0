//! Test harness: runs the real `proxyd` binary on a config in a temp dir, real upstream
//! servers on 127.0.0.1, and a small HTTP/1.1 client. Everything started is stopped on drop.
#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod dns;
pub mod load;
pub mod prom;
pub mod raw;
pub mod tools;
pub mod upstream;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn bin(name: &str) -> PathBuf {
    match name {
        "proxyd" => PathBuf::from(env!("CARGO_BIN_EXE_proxyd")),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_proxyctl")),
    }
}

/// A fresh temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "proxyd-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // Workers may run as nobody; let them read nothing here but let tests read logs.
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config most tests use: upstream "app" on `up`, a server on {port} proxying "/" to
/// it, and "/fixed" answered by proxyd with `fixed_body`. The extras go into the upstream
/// and server tables.
pub fn app_conf(
    up: &upstream::Upstream,
    upstream_extra: &str,
    server_extra: &str,
    fixed_body: &str,
) -> String {
    app_conf_at(&up.addr(), upstream_extra, server_extra, fixed_body)
}

/// `app_conf` for an upstream given by address.
pub fn app_conf_at(
    addr: &str,
    upstream_extra: &str,
    server_extra: &str,
    fixed_body: &str,
) -> String {
    app_conf_peers(
        &[addr.to_string()],
        upstream_extra,
        server_extra,
        fixed_body,
    )
}

/// `app_conf` for an upstream of several peers, given by address.
pub fn app_conf_peers(
    peers: &[String],
    upstream_extra: &str,
    server_extra: &str,
    fixed_body: &str,
) -> String {
    let peers = peers
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[upstream]]
name = "app"
peers = [{peers}]
{upstream_extra}

[[server]]
listen = "127.0.0.1:{{port}}"
{server_extra}

[[server.route]]
path = "/"
upstream = "app"

[[server.route]]
path = "/fixed"
return = 200
body = "{fixed_body}"
"#
    )
}

/// Sends `bytes` on a new connection to `addr` and returns all that comes back until the
/// server closes (send `Connection: close`).
pub fn send_raw(addr: &str, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    String::from_utf8_lossy(&v).to_string()
}

/// `GET path` for `host` with `extra` header lines (each ending in CRLF), on a connection
/// of its own: the whole response as text.
pub fn get_close(addr: &str, path: &str, host: &str, extra: &str) -> String {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// `GET path` on the admin listener at `port` (with a bearer token if given): status, body.
pub fn admin_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let text = send_raw(
        &format!("127.0.0.1:{port}"),
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n").as_bytes(),
    );
    let status = text[9..12].parse().unwrap();
    (status, body_of(&text))
}

/// The body of a whole response as `send_raw` returns it, chunked framing removed (and
/// checked: a cut chunked body panics).
pub fn body_of(response: &str) -> String {
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    if !head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            assert_eq!(after, "\r\n", "after the last chunk");
            return out;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").expect("CRLF after a chunk");
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `proxyctl -t` on `text` written to DIR/main.toml: whether it passed, and all it printed.
pub fn config_test(dir: &TempDir, text: &str) -> (bool, String) {
    let path = dir.write("main.toml", text);
    let out = proxyctl(&["-t", "-c", path.to_str().unwrap()]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

pub fn proxyctl(args: &[&str]) -> Output {
    Command::new(bin("proxyctl")).args(args).output().unwrap()
}

/// A running proxyd master.
pub struct Proxyd {
    pub dir: TempDir,
    pub conf: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
}

impl Proxyd {
    /// Writes `body` (which may use {port} and {dir}) after a standard global header and
    /// starts proxyd on it. The header sets pid file, logs and `workers`.
    pub fn start(workers: usize, body: &str) -> Proxyd {
        Self::start_with(workers, "", body)
    }

    pub fn start_with(workers: usize, globals: &str, body: &str) -> Proxyd {
        Self::start_env(workers, globals, body, &[])
    }

    /// `start_with`, with extra environment variables for the master.
    pub fn start_env(workers: usize, globals: &str, body: &str, env: &[(&str, &str)]) -> Proxyd {
        let dir = TempDir::new("proxyd");
        let port = free_port();
        let text = Self::render(&dir, port, workers, globals, body);
        let conf = dir.write("proxyd.toml", &text);
        let mut p = Proxyd {
            dir,
            conf,
            port,
            child: None,
        };
        p.spawn(env);
        p
    }

    /// Starts proxyd on a complete config file the test wrote into `dir` (with its error
    /// log at `dir/error.log` and its pid file in `dir`), one of whose servers listens on `port`.
    pub fn start_file(dir: TempDir, conf: PathBuf, port: u16) -> Proxyd {
        let mut p = Proxyd {
            dir,
            conf,
            port,
            child: None,
        };
        p.spawn(&[]);
        p
    }

    pub fn render(dir: &TempDir, port: u16, workers: usize, globals: &str, body: &str) -> String {
        let d = dir.path().display().to_string();
        format!(
            "worker_processes = {workers}\npid_file = \"{d}/proxyd.pid\"\nerror_log = {{ path = \"{d}/error.log\", level = \"info\" }}\naccess_log = \"{d}/access.log\"\nshutdown_timeout = \"10s\"\n{globals}\n{}",
            body.replace("{port}", &port.to_string()).replace("{dir}", &d)
        )
    }

    /// Rewrites the config file (for reload tests).
    pub fn rewrite(&self, workers: usize, globals: &str, body: &str) {
        let text = Self::render(&self.dir, self.port, workers, globals, body);
        std::fs::write(&self.conf, text).unwrap();
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let child = Command::new(bin("proxyd"))
            .arg("-c")
            .arg(&self.conf)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let want = self.workers_configured();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                let _ = self
                    .child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!(
                    "proxyd exited early ({status}): {err}\n{}",
                    self.error_log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.worker_pids().len() >= want
                && self.error_log().matches("started worker").count() >= want
            {
                // Ready means every worker reported in; status shows the generation's pids.
                let st = self.status();
                if st.contains("workers:")
                    && st
                        .lines()
                        .find(|l| l.starts_with("workers:"))
                        .unwrap()
                        .split_whitespace()
                        .count()
                        > want
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "proxyd did not start: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn workers_configured(&self) -> usize {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("worker_processes = "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Live children of the master (its workers, including draining ones).
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    pub fn ctl(&self, cmd: &str) -> Output {
        proxyctl(&["-c", self.conf.to_str().unwrap(), cmd])
    }

    pub fn status(&self) -> String {
        String::from_utf8_lossy(&self.ctl("status").stdout).into_owned()
    }

    /// Worker pids of the serving generation, from `proxyctl status`.
    pub fn serving_pids(&self) -> Vec<u32> {
        self.status()
            .lines()
            .find_map(|l| l.strip_prefix("workers:"))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for the master to exit; returns how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The row of peer `peer` of upstream `upstream` in `proxyctl status`'s peer table.
    pub fn peer_row(&self, upstream: &str, peer: &str) -> PeerRow {
        let status = self.status();
        PeerRow::find(&status, upstream, peer)
            .unwrap_or_else(|| panic!("no row for {upstream}/{peer} in:\n{status}"))
    }

    /// Error-log lines at [error] or worse that are not in `allowed`.
    pub fn unexpected_errors(&self, allowed: &[&str]) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| l.contains("[error]") || l.contains("[emerg]"))
            .filter(|l| !allowed.iter().any(|a| l.contains(a)))
            .map(String::from)
            .collect()
    }
}

impl Drop for Proxyd {
    fn drop(&mut self) {
        let workers = self.worker_pids();
        if let Some(c) = &mut self.child {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for w in workers {
            unsafe {
                libc::kill(w as i32, libc::SIGKILL);
            }
        }
    }
}

pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name: state ppid ...
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("");
            let ppid: u32 = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            if ppid == pid && state != "Z" {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// One row of `proxyctl status`'s peer table, by column name.
#[derive(Debug)]
pub struct PeerRow {
    cells: Vec<(String, String)>,
}

impl PeerRow {
    pub fn find(status: &str, upstream: &str, peer: &str) -> Option<PeerRow> {
        let split = |l: &str| -> Vec<String> {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        let mut lines = status.lines().skip_while(|l| !l.starts_with("UPSTREAM "));
        let header = split(lines.next()?);
        lines
            .map(split)
            .find(|r| r.len() == header.len() && r[0] == upstream && r[1] == peer)
            .map(|r| PeerRow {
                cells: header.iter().cloned().zip(r).collect(),
            })
    }

    pub fn get(&self, column: &str) -> &str {
        self.cells
            .iter()
            .find(|(h, _)| h == column)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no column {column} in {self:?}"))
    }

    pub fn state(&self) -> &str {
        self.get("STATE")
    }

    pub fn n(&self, column: &str) -> u64 {
        self.get(column)
            .trim_end_matches('*')
            .parse()
            .unwrap_or_else(|_| panic!("{column} of {self:?}"))
    }
}
