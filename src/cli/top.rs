//! `proxyctl top`: the node's live numbers in the terminal, for hosts where nobody opens a
//! browser: every interval it asks the master for `status json` (the admin API's status,
//! upstreams and traffic) and redraws one screen: workers, connections, request rate by
//! status class, and every peer with its state and request rate.

use crate::control;
use crate::text_table::Table;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `count` screens (None: until `q` or interrupted), `interval` apart. Returns the exit
/// code.
pub fn run(socket: &Path, interval: Duration, count: Option<u64>) -> i32 {
    let keys = Keys::new();
    let code = screens(socket, interval, count, &keys);
    drop(keys);
    code
}

fn screens(socket: &Path, interval: Duration, count: Option<u64>, keys: &Keys) -> i32 {
    // SAFETY: isatty only looks at the descriptor.
    let terminal = unsafe { libc::isatty(1) } == 1;
    let mut prev: Option<(Instant, Value)> = None;
    let mut shown = 0;
    loop {
        let reply = match control::request(socket, "status json", Duration::from_secs(10)) {
            Ok(r) if r.ok => r,
            Ok(r) => {
                eprintln!("proxyctl: top: {}", r.message);
                return 1;
            }
            Err(e) => {
                eprintln!("proxyctl: {e}");
                return 1;
            }
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(&reply.message) else {
            eprintln!("proxyctl: top: the master's status is not JSON");
            return 1;
        };
        let screen = render(&v, prev.as_ref().map(|(t, p)| (now.duration_since(*t), p)));
        let mut out = std::io::stdout().lock();
        // Clear and home, as top does; a pipe gets plain screens one after another.
        let _ = if terminal {
            write!(out, "\x1b[H\x1b[2J{screen}")
        } else {
            writeln!(out, "{screen}")
        };
        let _ = out.flush();
        prev = Some((now, v));
        shown += 1;
        if count.is_some_and(|c| shown >= c) || keys.quit_within(interval) {
            return 0;
        }
    }
}

/// Single keys from a terminal on stdin (`q` quits), its line mode restored on drop.
struct Keys {
    saved: Option<libc::termios>,
}

impl Keys {
    fn new() -> Keys {
        // SAFETY: isatty and tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return Keys { saved: None };
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Keys { saved: None };
            }
            let saved = t;
            // Keys without Enter and without echo; ^C still interrupts.
            t.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Keys { saved: Some(saved) }
        }
    }

    /// Waits `d` (the time between screens); true when `q` was pressed meanwhile.
    fn quit_within(&self, d: Duration) -> bool {
        if self.saved.is_none() {
            std::thread::sleep(d);
            return false;
        }
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own; the byte read goes into a local.
            let ready = unsafe { libc::poll(&mut fds, 1, left.as_millis().min(60_000) as i32) };
            if ready > 0 {
                let mut b = 0u8;
                let n = unsafe { libc::read(0, (&mut b as *mut u8).cast(), 1) };
                if n <= 0 || b == b'q' || b == b'Q' {
                    return true;
                }
            }
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Per second, between two readings.
fn rate(now: u64, before: Option<u64>, dt: Option<Duration>) -> String {
    match (before, dt) {
        (Some(b), Some(dt)) if dt.as_secs_f64() > 0.0 => {
            format!("{:.1}", now.saturating_sub(b) as f64 / dt.as_secs_f64())
        }
        _ => "-".into(),
    }
}

pub fn render(v: &Value, prev: Option<(Duration, &Value)>) -> String {
    let mut s = String::new();
    let st = &v["status"];
    let tr = &v["traffic"];
    let dt = prev.map(|(d, _)| d);
    let pv = prev.map(|(_, p)| p);
    s.push_str(&format!(
        "proxyd {}  master {}  generation {}  up {}s  reloads {} ok / {} failed  worker restarts {}\n",
        st["version"].as_str().unwrap_or("?"),
        st["master_pid"],
        st["generation"],
        st["uptime_seconds"],
        st["reloads"]["success"],
        st["reloads"]["failure"],
        st["worker_restarts"],
    ));
    let c = &tr["connections"];
    s.push_str(&format!(
        "connections: active {}  reading {}  writing {}  waiting {}   requests {} ({}/s)\n\n",
        c["active"],
        c["reading"],
        c["writing"],
        c["waiting"],
        tr["requests"],
        rate(
            u(&tr["requests"]),
            pv.map(|p| u(&p["traffic"]["requests"])),
            dt
        ),
    ));
    let mut servers = Table::new(&[
        "SERVER", ">REQ/S", ">2xx", ">3xx", ">4xx", ">5xx", ">p99(s)",
    ]);
    for srv in tr["servers"].as_array().into_iter().flatten() {
        let before = pv.and_then(|p| {
            p["traffic"]["servers"]
                .as_array()?
                .iter()
                .find(|x| x["server"] == srv["server"])
        });
        let total = |x: &Value| x["classes"].as_array().map_or(0, |a| a.iter().map(u).sum());
        let class = |i: usize| u(&srv["classes"][i]).to_string();
        servers.row(vec![
            srv["server"].as_str().unwrap_or("?").to_string(),
            rate(total(srv), before.map(total), dt),
            class(1),
            class(2),
            class(3),
            class(4),
            p99(&tr["le"], &srv["duration"], before.map(|b| &b["duration"])),
        ]);
    }
    s.push_str(&servers.render());
    let mut peers = Table::new(&[
        "UPSTREAM",
        "PEER",
        "STATE",
        ">WEIGHT",
        ">REQ/S",
        ">REQUESTS",
        ">FAILURES",
        ">ACTIVE",
        ">IDLE",
    ]);
    for up in v["upstreams"].as_array().into_iter().flatten() {
        for p in up["peers"].as_array().into_iter().flatten() {
            let before = pv.and_then(|pv| {
                pv["upstreams"]
                    .as_array()?
                    .iter()
                    .find(|x| x["name"] == up["name"])?["peers"]
                    .as_array()?
                    .iter()
                    .find(|x| x["peer"] == p["peer"])
            });
            peers.row(vec![
                up["name"].as_str().unwrap_or("?").to_string(),
                p["peer"].as_str().unwrap_or("?").to_string(),
                p["state"].as_str().unwrap_or("?").to_string(),
                u(&p["weight"]).to_string(),
                rate(u(&p["requests"]), before.map(|b| u(&b["requests"])), dt),
                u(&p["requests"]).to_string(),
                u(&p["failures"]).to_string(),
                u(&p["active"]).to_string(),
                u(&p["idle"]).to_string(),
            ]);
        }
    }
    s.push('\n');
    s.push_str(&peers.render());
    s
}

/// The 99th percentile of the requests between two readings (or since the start), from
/// the cumulative histogram: the upper bound of the bucket it falls in.
fn p99(le: &Value, now: &Value, before: Option<&Value>) -> String {
    let bounds: Vec<f64> = le
        .as_array()
        .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_f64).collect());
    let get = |h: Option<&Value>, i: usize| h.map_or(0, |h| u(&h["le"][i]));
    let count = u(&now["count"]).saturating_sub(before.map_or(0, |b| u(&b["count"])));
    if count == 0 {
        return "-".into();
    }
    let want = (count as f64 * 0.99).ceil() as u64;
    for (i, b) in bounds.iter().enumerate() {
        if get(Some(now), i).saturating_sub(get(before, i)) >= want {
            return format!("<{b}");
        }
    }
    ">10".into()
}
