//! The control socket side of the master: accept `proxyctl` connections, read one
//! command line, act, and reply with one JSON line.

use super::{Life, Master, Stop, WorkerProc, CLIENT_BASE};
use crate::control::Reply;
use mio::net::UnixStream;
use mio::{Interest, Token};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Replies longer than this give their buffer back to the kernel once sent.
const TRIM_AFTER: usize = 1 << 20;
/// Longest a reply may wait for `proxyctl` to read it before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct ControlClient {
    pub(super) stream: UnixStream,
    pub(super) state: ClientState,
}

/// Where a control connection is.
pub(super) enum ClientState {
    /// Reading its command line.
    Reading(Vec<u8>),
    /// The command was taken; its reply comes when it is done (reload, upgrade).
    Waiting,
    /// Sending the reply: `out[at..]` is left, then `then`.
    Sending {
        out: Vec<u8>,
        at: usize,
        then: AfterReply,
        deadline: Instant,
    },
    /// Replied and held open until the master exits, which `proxyctl quit` waits for.
    Holding,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterReply {
    Close,
    Hold,
}

impl Master {
    pub(super) fn accept_control(&mut self) {
        loop {
            match self.control.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.clients.vacant_entry();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(CLIENT_BASE + entry.key()),
                            Interest::READABLE,
                        )
                        .is_ok()
                    {
                        entry.insert(ControlClient {
                            stream,
                            state: ClientState::Reading(Vec::new()),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("control accept failed: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn on_control_client(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        match c.state {
            ClientState::Reading(_) => self.read_command(key),
            ClientState::Sending { .. } => self.send_reply(key),
            ClientState::Waiting | ClientState::Holding => {}
        }
    }

    fn read_command(&mut self, key: usize) {
        let mut buf = [0u8; 256];
        let cmd = loop {
            let Some(c) = self.clients.get_mut(key) else {
                return;
            };
            let ClientState::Reading(input) = &mut c.state else {
                return;
            };
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    self.drop_client(key);
                    return;
                }
                Ok(n) => {
                    input.extend_from_slice(&buf[..n]);
                    if input.len() > 1024 {
                        self.drop_client(key);
                        return;
                    }
                    if let Some(pos) = input.iter().position(|&b| b == b'\n') {
                        break String::from_utf8_lossy(&input[..pos]).trim().to_string();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_client(key);
                    return;
                }
            }
        };
        if let Some(c) = self.clients.get_mut(key) {
            c.state = ClientState::Waiting;
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        if cmd.starts_with("status") {
            log::debug!("control command \"{cmd}\"");
        } else {
            crate::notice!("control command \"{cmd}\"");
        }
        match cmd.as_str() {
            "reload" => self.begin_reload(Some(key)),
            "quit" => {
                self.begin_stop(Stop::Graceful);
                self.reply_keep(key, "stopping gracefully");
            }
            "stop" => {
                self.begin_stop(Stop::Fast);
                self.reply_keep(key, "stopping");
            }
            "upgrade" => self.begin_upgrade(Some(key)),
            "reopen" => match self.reopen() {
                Ok(()) => self.reply(key, true, "log files reopened".into()),
                Err(e) => self.reply(key, false, e),
            },
            "status" => {
                let msg = self.status();
                self.reply(key, true, msg)
            }
            // What the admin API's status, upstreams and traffic say, in one JSON object
            // (`proxyctl status --json`, `proxyctl top`).
            "status json" => {
                let v = serde_json::json!({
                    "status": self.api_status(),
                    "upstreams": self.api_upstreams()["upstreams"],
                    "traffic": self.api_traffic(),
                });
                let msg = v.to_string();
                if msg.len() > crate::control::MAX_MESSAGE {
                    let why = format!(
                        "the status is {} bytes, more than the control socket carries ({}); use the admin API (GET /api/status, /api/upstreams)",
                        msg.len(),
                        crate::control::MAX_MESSAGE
                    );
                    self.reply(key, false, why)
                } else {
                    self.reply(key, true, msg)
                }
            }
            other => self.reply(key, false, format!("unknown command \"{other}\"")),
        }
    }

    pub(super) fn status(&self) -> String {
        let uptime = self.started.elapsed().unwrap_or_default().as_secs();
        let mut s = format!(
            "master pid: {}\ngeneration: {}\nworkers: {}\nuptime: {}\nconfig: {}\n",
            std::process::id(),
            self.generation,
            self.worker_pids(self.generation),
            crate::units::format_duration(Duration::from_secs(uptime)),
            self.cfg.path.display()
        );
        let draining: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.draining())
            .map(|(_, w)| w.pid.to_string())
            .collect();
        if !draining.is_empty() {
            s.push_str(&format!("draining: {}\n", draining.join(" ")));
        }
        for gen in self.draining_generations() {
            let ws: Vec<&WorkerProc> = self
                .workers
                .iter()
                .map(|(_, w)| w)
                .filter(|w| w.generation == gen && w.draining())
                .collect();
            let since = ws
                .iter()
                .filter_map(|w| match w.life {
                    Life::Draining(d) => Some(d.since),
                    _ => None,
                })
                .min();
            let age = since.map_or(0, |t| t.elapsed().as_secs());
            let pids: Vec<String> = ws.iter().map(|w| w.pid.to_string()).collect();
            let conns: usize = ws.iter().map(|w| proc_connections(w.pid)).sum();
            let rss: u64 = ws.iter().map(|w| proc_rss_kib(w.pid)).sum();
            s.push_str(&format!(
                "draining generation {gen}: age {}, workers {}, connections {conns}, rss {:.1} MiB\n",
                crate::units::format_duration(Duration::from_secs(age)),
                pids.join(" "),
                rss as f64 / 1024.0
            ));
        }
        if let Some(pid) = self.helper_pid() {
            s.push_str(&format!("helper: pid {pid}\n"));
        }
        s.push_str(&self.peer_status());
        s
    }

    /// Generations with draining workers, oldest first.
    pub(super) fn draining_generations(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.draining() && w.generation < self.generation)
            .map(|(_, w)| w.generation)
            .collect();
        gens.sort_unstable();
        gens.dedup();
        gens
    }

    /// Replies and closes the client connection once the reply is sent.
    pub(super) fn reply(&mut self, key: usize, ok: bool, message: String) {
        let line = Reply { ok, message }.line();
        self.start_reply(key, line, AfterReply::Close);
    }

    /// Replies and keeps the connection open until the master exits.
    pub(super) fn reply_keep(&mut self, key: usize, message: &str) {
        let line = Reply {
            ok: true,
            message: message.into(),
        }
        .line();
        self.start_reply(key, line, AfterReply::Hold);
    }

    fn start_reply(&mut self, key: usize, out: Vec<u8>, then: AfterReply) {
        // What the command built on its way to the reply (a status of thousands of sites
        // passes through tens of megabytes of JSON values and table cells) goes back to the
        // kernel now, before the client has its answer; the master would otherwise keep
        // it until the next reload.
        super::trim_heap();
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        c.state = ClientState::Sending {
            out,
            at: 0,
            then,
            deadline: Instant::now() + SEND_TIMEOUT,
        };
        self.send_reply(key);
    }

    /// Writes what the socket takes; a reply longer than the socket buffer (a status of
    /// thousands of sites) waits for it to drain rather than being cut.
    fn send_reply(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let ClientState::Sending { out, at, then, .. } = &mut c.state else {
            return;
        };
        while *at < out.len() {
            match c.stream.write(&out[*at..]) {
                Ok(0) => break,
                Ok(n) => *at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Registered for writing now (a command's client was deregistered
                    // once read); this registration is edge-triggered, so one call is
                    // enough until the buffer drains.
                    let token = Token(CLIENT_BASE + key);
                    let reg = self.poll.registry();
                    if reg
                        .reregister(&mut c.stream, token, Interest::WRITABLE)
                        .or_else(|_| reg.register(&mut c.stream, token, Interest::WRITABLE))
                        .is_err()
                    {
                        self.drop_client(key);
                    }
                    return;
                }
                Err(_) => break,
            }
        }
        let big = out.len() > TRIM_AFTER;
        match *then {
            AfterReply::Close => self.drop_client(key),
            AfterReply::Hold => c.state = ClientState::Holding,
        }
        if big {
            super::trim_heap();
        }
    }

    /// The earliest time a reply stops waiting for its reader.
    pub(super) fn control_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|(_, c)| match c.state {
                ClientState::Sending { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// Drops the connections whose reply was not read in time.
    pub(super) fn control_timers(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                matches!(c.state, ClientState::Sending { deadline, .. } if deadline <= now)
            })
            .map(|(k, _)| k)
            .collect();
        for key in late {
            log::warn!("control client did not read its reply in time; dropped");
            self.drop_client(key);
        }
    }

    pub(super) fn drop_client(&mut self, key: usize) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Open sockets of a worker other than its master channel: its client and upstream
/// connections (a draining worker has closed its listening sockets).
fn proc_connections(pid: nix::unistd::Pid) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
                .saturating_sub(1)
        })
        .unwrap_or(0)
}

fn proc_rss_kib(pid: nix::unistd::Pid) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
