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
/// Longest a client may take to send its command line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most control connections at once; more are closed as they come (the master's file
/// descriptors are for workers and listeners first).
const MAX_CLIENTS: usize = 64;
/// Most reply octets waiting for their readers, over every client; a long reply that
/// would pass it is refused with a short one, so clients that ask and never read cannot
/// pin the master's memory.
const MAX_PENDING: usize = 64 << 20;
const BUSY: &str = "too many replies are waiting to be read; try again";

pub(crate) struct ControlClient {
    pub(super) stream: UnixStream,
    pub(super) state: ClientState,
}

/// Where a control connection is.
pub(super) enum ClientState {
    /// Reading its command line.
    Reading { input: Vec<u8>, deadline: Instant },
    /// Its command is read and waits its turn: the master runs one command per loop
    /// turn, so signals, workers and timers are seen between two costly statuses.
    Queued { cmd: String, since: Instant },
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
                    if self.clients.len() >= MAX_CLIENTS {
                        log::warn!("control connection closed: {MAX_CLIENTS} are open already");
                        continue;
                    }
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
                            state: ClientState::Reading {
                                input: Vec::new(),
                                deadline: Instant::now() + READ_TIMEOUT,
                            },
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
            ClientState::Reading { .. } => self.read_command(key),
            ClientState::Sending { .. } => self.send_reply(key),
            ClientState::Queued { .. } | ClientState::Waiting | ClientState::Holding => {}
        }
    }

    fn read_command(&mut self, key: usize) {
        let mut buf = [0u8; 256];
        let cmd = loop {
            let Some(c) = self.clients.get_mut(key) else {
                return;
            };
            let ClientState::Reading { input, .. } = &mut c.state else {
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
            c.state = ClientState::Queued {
                cmd,
                since: Instant::now(),
            };
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Runs the command that has waited longest, if any (one per master loop turn).
    pub(super) fn run_control_command(&mut self) {
        let Some(key) = self
            .clients
            .iter()
            .filter_map(|(k, c)| match c.state {
                ClientState::Queued { since, .. } => Some((since, k)),
                _ => None,
            })
            .min()
            .map(|(_, k)| k)
        else {
            return;
        };
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let cmd = match std::mem::replace(&mut c.state, ClientState::Waiting) {
            ClientState::Queued { cmd, .. } => cmd,
            _ => return,
        };
        // A client that asked and hung up is not worth a status of thousands of sites.
        if hung_up(&c.stream) {
            self.drop_client(key);
            return;
        }
        // Escaped: the line is the client's bytes, and the log is read on terminals.
        let shown = cmd.escape_debug();
        if cmd.starts_with("status") {
            log::debug!("control command \"{shown}\"");
        } else {
            crate::notice!("control command \"{shown}\"");
        }
        // Replies nobody reads already fill the room: a status is refused before it is
        // built, not after (at thousands of sites a build costs the master a quarter of
        // a second).
        if cmd.starts_with("status") && self.pending_bytes() >= MAX_PENDING {
            self.reply(key, false, BUSY.into());
            return;
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
                // What the status built (tens of megabytes of JSON values and table cells
                // at thousands of sites) goes back to the kernel before the reply goes out.
                super::trim_heap();
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
                drop(v);
                super::trim_heap();
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

    fn start_reply(&mut self, key: usize, mut out: Vec<u8>, then: AfterReply) {
        if out.len() > 64 << 10 && self.pending_bytes() + out.len() > MAX_PENDING {
            out = Reply {
                ok: false,
                message: BUSY.into(),
            }
            .line();
        }
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

    /// Reply octets not yet read, over every client.
    fn pending_bytes(&self) -> usize {
        self.clients
            .iter()
            .map(|(_, c)| match &c.state {
                ClientState::Sending { out, at, .. } => out.len() - at,
                _ => 0,
            })
            .sum()
    }

    /// When the control clients next need the loop: at once for a queued command, else
    /// the earliest read or send deadline.
    pub(super) fn control_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|(_, c)| match c.state {
                ClientState::Queued { since, .. } => Some(since),
                ClientState::Reading { deadline, .. } | ClientState::Sending { deadline, .. } => {
                    Some(deadline)
                }
                _ => None,
            })
            .min()
    }

    /// Drops the connections that did not send their command, or read their reply, in
    /// time.
    pub(super) fn control_timers(&mut self) {
        let now = Instant::now();
        let late: Vec<(usize, &str)> = self
            .clients
            .iter()
            .filter_map(|(k, c)| match c.state {
                ClientState::Reading { deadline, .. } if deadline <= now => {
                    Some((k, "send its command"))
                }
                ClientState::Sending { deadline, .. } if deadline <= now => {
                    Some((k, "read its reply"))
                }
                _ => None,
            })
            .collect();
        for (key, what) in late {
            log::warn!("control client did not {what} in time; dropped");
            self.drop_client(key);
        }
    }

    pub(super) fn drop_client(&mut self, key: usize) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Whether the peer of a control connection closed it (a read would see end of file).
fn hung_up(s: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = 0u8;
    // SAFETY: a one-octet peek into a live local, on a socket this side owns.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
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
