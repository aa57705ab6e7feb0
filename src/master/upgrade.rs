//! Binary upgrade (SIGUSR2, `proxyctl upgrade`), nginx's way: the running master tests the
//! binary now on disk against the config, then forks a child that executes it with the
//! listening sockets inherited (descriptors named in PROXYD_UPGRADE) and the write end of a
//! pipe. The new master starts its workers on those same sockets and, once they are ready,
//! takes over the pid file and control socket and writes "ready" into the pipe. Only then
//! does the old master tell systemd the new main pid (MAINPID=), answer `proxyctl upgrade`,
//! and drain its workers and exit. No socket is ever closed, so no connection is refused.
//! A new master that fails before it is ready closes the pipe by dying; the old one takes its
//! pid file and control socket back and keeps serving.
//!
//! The shared memory region's memfd and the master's own counts go across too
//! (PROXYD_UPGRADE_STATE): the new master adopts the same pages, so counters, histograms and
//! the generation number go on rather than restart. Both masters claim worker blocks in the
//! region itself, and sum every block held, so the old workers' counts are neither lost nor
//! counted twice while they drain, and a rollback finds the region as it was.

use super::{Master, Stop, READY_TIMEOUT};
use crate::listeners::set_cloexec;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

pub(super) const UPGRADE: Token = Token(2);
const ENV: &str = "PROXYD_UPGRADE";
/// What goes on across the upgrade besides sockets; a binary that does not know this
/// variable ignores it, so an upgrade to an older binary still works (and starts afresh).
const STATE_ENV: &str = "PROXYD_UPGRADE_STATE";

/// Where a binary upgrade stands, in the old master.
pub(crate) enum Upgrade {
    Idle,
    /// The new master runs and has not said it is ready.
    Starting {
        pid: Pid,
        ready: std::fs::File,
        waiters: Vec<usize>,
        deadline: Instant,
    },
    /// The new master serves; this one drains and exits, leaving it the pid file and the
    /// control socket.
    HandedOver,
}

/// What a new master inherits.
pub(crate) struct Inherited {
    pub(super) sockets: HashMap<SocketAddr, Vec<RawFd>>,
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Reads (and removes) PROXYD_UPGRADE: "READY_FD;ADDR=FD,FD;ADDR=FD". Taken only when
    /// every descriptor is what an old master hands over: the ready descriptor a pipe whose
    /// other end the parent holds (so the parent is the master that started this upgrade),
    /// each socket one listening on its address. Anything else (a variable set by hand, a
    /// stale one in a service's environment) is ignored with a warning: adopting a wrong
    /// descriptor would close or write into one of this process's own, and skipping the
    /// check for a running master would let this process take over its pid file and
    /// control socket.
    /// The second value is the warning to log when the variable was ignored (once the
    /// error log is open, so that it lands there).
    pub(super) fn from_env() -> (Option<Inherited>, Option<String>) {
        let Ok(v) = std::env::var(ENV) else {
            return (None, None);
        };
        std::env::remove_var(ENV);
        match Self::parse(&v) {
            Ok(i) => (Some(i), None),
            Err(why) => (
                None,
                Some(format!("{ENV} ignored ({why}): started as a new master")),
            ),
        }
    }

    fn parse(v: &str) -> Result<Inherited, String> {
        let mut parts = v.split(';');
        // 0, 1 and 2 are never handed over (they may be a supervisor's pipes).
        let ready_fd: RawFd = parts
            .next()
            .and_then(|f| f.parse().ok())
            .filter(|&f| f > 2)
            .ok_or("no ready descriptor")?;
        if !parent_is_master_binary() {
            return Err("the parent process is not a proxyd master of this binary".into());
        }
        if !writes_to_parent_pipe(ready_fd) {
            return Err(format!(
                "descriptor {ready_fd} is not the write end of a pipe from the parent process"
            ));
        }
        let mut seen = vec![ready_fd];
        let mut sockets = HashMap::new();
        for part in parts.filter(|p| !p.is_empty()) {
            let (addr, fds) = part.rsplit_once('=').ok_or("no ADDR=FD")?;
            let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
            let mut list = Vec::new();
            for f in fds.split(',') {
                let fd: RawFd = f.parse().map_err(|_| format!("bad descriptor {f}"))?;
                // Each descriptor is owned once: a second owner would close it twice.
                if fd <= 2 || seen.contains(&fd) {
                    return Err(format!("descriptor {fd} given twice or a standard one"));
                }
                seen.push(fd);
                if !listens_on(fd, addr) {
                    return Err(format!(
                        "descriptor {fd} is not a socket listening on {addr}"
                    ));
                }
                list.push(fd);
            }
            sockets.insert(addr, list);
        }
        let _ = set_cloexec(ready_fd, true);
        Ok(Inherited {
            sockets,
            // SAFETY: checked above: a pipe the old master (our parent) made for us alone.
            ready: Some(unsafe { OwnedFd::from_raw_fd(ready_fd) }),
        })
    }

    /// Tells the old master that this one serves (once).
    pub(super) fn announce_ready(&mut self) {
        if let Some(fd) = self.ready.take() {
            let mut f = std::fs::File::from(fd);
            let _ = std::io::Write::write_all(&mut f, b"ready");
        }
    }
}

/// Whether `fd` is the write end of a pipe whose other end the parent process holds (the old
/// master, which made it for this one). Read through /proc: no descriptor is taken before it
/// is known.
fn writes_to_parent_pipe(fd: RawFd) -> bool {
    let Some(mine) = fd_target(fd).filter(|t| t.starts_with("pipe:[")) else {
        return false;
    };
    // SAFETY: fcntl(F_GETFL) on a descriptor just seen open; nothing is taken or changed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_WRONLY {
        return false;
    }
    let parent = nix::unistd::getppid();
    std::fs::read_dir(format!("/proc/{parent}/fd")).is_ok_and(|d| {
        d.flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == mine))
    })
}

/// Whether the parent process runs the binary this one runs: an old master execs the binary
/// on disk at its own path (`binary()`), so the paths are the same, the parent's perhaps
/// marked " (deleted)" when a package replaced the file. A supervisor that captures the
/// output through a pipe (and so holds one) is not it.
fn parent_is_master_binary() -> bool {
    let exe = |pid: String| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| {
                let p = p.to_string_lossy().into_owned();
                p.strip_suffix(" (deleted)")
                    .map(str::to_string)
                    .unwrap_or(p)
            })
    };
    let parent = nix::unistd::getppid().to_string();
    matches!((exe("self".into()), exe(parent)), (Some(a), Some(b)) if a == b)
}

/// What this process's descriptor `fd` refers to (`pipe:[N]`, `socket:[N]`, a path), as /proc
/// shows it: a descriptor is looked at this way before anything takes it.
fn fd_target(fd: RawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

/// Whether `fd` is a socket listening on `addr`.
fn listens_on(fd: RawFd, addr: SocketAddr) -> bool {
    if !fd_target(fd).is_some_and(|t| t.starts_with("socket:[")) {
        return false;
    }
    // SAFETY: the descriptor is open (just seen in /proc) and only borrowed for the calls.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    let listening = sock.is_listener().unwrap_or(false);
    let at = sock.local_addr().ok().and_then(|a| a.as_socket());
    listening && at == Some(addr)
}

/// The state a new master carries on from the old one, so that what Prometheus sees after
/// an upgrade is a continuation, not a restart: the shared memory region (every counter and
/// histogram), the generation number and the master's own counters.
#[derive(Default)]
pub(crate) struct Handover {
    /// The old master's shared memory (a memfd); adopted if its layout is this binary's.
    pub(super) shm: Option<OwnedFd>,
    /// The old master's generation; this master's first is the next one.
    pub(super) generation: u64,
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) worker_restarts: u64,
    /// When the first master of this run of upgrades started (seconds since the epoch).
    pub(super) service_started: Option<u64>,
    /// The old master: while it runs its workers hold blocks of the region.
    pub(super) old_master: Option<Pid>,
}

impl Handover {
    /// Reads (and removes) PROXYD_UPGRADE_STATE: "key=value" pairs separated by spaces;
    /// only when `trusted` (PROXYD_UPGRADE came from a real old master), else it is dropped.
    pub(super) fn from_env(trusted: bool) -> Handover {
        let Ok(v) = std::env::var(STATE_ENV) else {
            return Handover::default();
        };
        std::env::remove_var(STATE_ENV);
        if !trusted {
            return Handover::default();
        }
        let mut h = Handover {
            old_master: Some(nix::unistd::getppid()),
            ..Handover::default()
        };
        for (k, v) in v.split(' ').filter_map(|kv| kv.split_once('=')) {
            let Ok(n) = v.parse::<u64>() else { continue };
            match k {
                "shm" => {
                    let fd = n as RawFd;
                    // Owned (and closed on drop) only if it is the memfd: were the number
                    // anything else, it would be a socket of ours.
                    let memfd =
                        fd_target(fd).is_some_and(|t| t.starts_with("/memfd:proxyd-shared"));
                    if memfd {
                        let _ = set_cloexec(fd, true);
                        // SAFETY: the old master passed this descriptor for us alone.
                        h.shm = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                    } else {
                        log::warn!(
                            "upgrade: descriptor {fd} is not the old master's shared memory"
                        );
                    }
                }
                "generation" => h.generation = n,
                "reloads_ok" => h.reloads_ok = n,
                "reloads_failed" => h.reloads_failed = n,
                "worker_restarts" => h.worker_restarts = n,
                "service_started" => h.service_started = Some(n.min(super::api::epoch_secs())),
                _ => {}
            }
        }
        h
    }
}

/// The binary to execute: the one this process was started from, as it is on disk now (a
/// package upgrade replaced it; /proc shows the old inode as "... (deleted)").
fn binary() -> Result<std::path::PathBuf, String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    let s = exe.to_string_lossy();
    Ok(std::path::PathBuf::from(
        s.strip_suffix(" (deleted)").unwrap_or(&s).to_string(),
    ))
}

impl Master {
    pub(super) fn begin_upgrade(&mut self, waiter: Option<usize>) {
        let busy = if self.stop.is_some() {
            Some("the master is shutting down")
        } else if self.pending.is_some() {
            Some("a reload is in progress")
        } else if !matches!(self.upgrade, Upgrade::Idle) {
            Some("an upgrade is in progress")
        } else {
            None
        };
        if let Some(why) = busy {
            match waiter {
                Some(c) => self.reply(c, false, why.into()),
                None => log::warn!("upgrade not started: {why}"),
            }
            return;
        }
        match self.start_upgrade() {
            Ok((pid, ready)) => {
                crate::notice!("upgrade: new master process {pid} started");
                self.upgrade = Upgrade::Starting {
                    pid,
                    ready,
                    waiters: waiter.into_iter().collect(),
                    deadline: Instant::now() + READY_TIMEOUT,
                };
            }
            Err(e) => {
                log::error!("upgrade failed: {e}");
                if let Some(c) = waiter {
                    self.reply(c, false, e);
                }
            }
        }
    }

    fn start_upgrade(&mut self) -> Result<(Pid, std::fs::File), String> {
        let exe = binary()?;
        let test = std::process::Command::new(&exe)
            .arg("-t")
            .arg("-c")
            .arg(&self.cfg.path)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !test.status.success() {
            return Err(format!(
                "{} refuses the configuration: {}",
                exe.display(),
                String::from_utf8_lossy(&test.stderr).trim()
            ));
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let mut env = format!("{}", w.as_raw_fd());
        let mut pass = vec![w.as_raw_fd()];
        for (addr, set) in &self.listeners {
            let fds: Vec<String> = set.fds().map(|fd| fd.to_string()).collect();
            pass.extend(set.fds());
            env.push_str(&format!(";{addr}={}", fds.join(",")));
        }
        let shm = self.shared.region.fd();
        pass.push(shm);
        let state = format!(
            "shm={shm} generation={} reloads_ok={} reloads_failed={} worker_restarts={} \
             service_started={}",
            self.generation,
            self.stats.reloads_ok,
            self.stats.reloads_failed,
            self.stats.worker_restarts,
            self.service_started,
        );
        let path = CString::new(exe.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let args = [
            path.clone(),
            CString::new("-c").expect("no NUL"),
            CString::new(self.cfg.path.as_os_str().as_bytes()).map_err(|e| e.to_string())?,
        ];
        let notify_socket = self.notify.socket_name();
        // SAFETY: the master is single-threaded; the child only adjusts descriptors and the
        // environment, then executes.
        match unsafe { fork() }.map_err(|e| e.to_string())? {
            ForkResult::Child => {
                for fd in &pass {
                    let _ = set_cloexec(*fd, false);
                }
                std::env::set_var(ENV, &env);
                std::env::set_var(STATE_ENV, &state);
                if let Some(n) = notify_socket {
                    std::env::set_var("NOTIFY_SOCKET", n);
                }
                let e = nix::unistd::execv(&path, &args);
                eprintln!("proxyd: cannot execute {}: {e:?}", exe.display());
                std::process::exit(127);
            }
            ForkResult::Parent { child } => {
                drop(w);
                self.poll
                    .registry()
                    .register(&mut SourceFd(&r.as_raw_fd()), UPGRADE, Interest::READABLE)
                    .map_err(|e| e.to_string())?;
                Ok((child, std::fs::File::from(r)))
            }
        }
    }

    /// The pipe from the new master is readable: "ready", or end of file (it died).
    pub(super) fn on_upgrade_pipe(&mut self) {
        let Upgrade::Starting { ready, .. } = &mut self.upgrade else {
            return;
        };
        let mut buf = [0u8; 16];
        match ready.read(&mut buf) {
            Ok(n) if n > 0 && buf[..n].starts_with(b"ready") => self.upgrade_done(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => self
                .upgrade_failed("the new master exited before it was ready (see its errors above)"),
        }
    }

    pub(super) fn check_upgrade(&mut self) {
        if matches!(&self.upgrade, Upgrade::Starting { deadline, .. } if *deadline <= Instant::now())
        {
            self.upgrade_failed("the new master did not become ready in time");
        }
    }

    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        match &self.upgrade {
            Upgrade::Starting { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// Leaves the Starting state for `next`: the new master's pid and the callers waiting.
    fn end_starting(&mut self, next: Upgrade) -> Option<(Pid, Vec<usize>)> {
        if !matches!(self.upgrade, Upgrade::Starting { .. }) {
            return None;
        }
        match std::mem::replace(&mut self.upgrade, next) {
            Upgrade::Starting {
                pid,
                ready,
                waiters,
                ..
            } => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&ready.as_raw_fd()));
                Some((pid, waiters))
            }
            _ => None,
        }
    }

    fn upgrade_done(&mut self) {
        let Some((pid, waiters)) = self.end_starting(Upgrade::HandedOver) else {
            return;
        };
        crate::notice!("upgrade: new master {pid} serves; this master drains and exits");
        // As nginx: the old master's pid stays findable while it drains.
        let _ = std::fs::write(
            oldbin(&self.cfg.pid_file),
            format!("{}\n", std::process::id()),
        );
        self.notify.handed_over(pid.as_raw());
        for c in waiters {
            self.reply(c, true, format!("new master {pid} serving"));
        }
        self.begin_stop(Stop::Graceful);
    }

    fn upgrade_failed(&mut self, why: &str) {
        let Some((pid, waiters)) = self.end_starting(Upgrade::Idle) else {
            return;
        };
        let _ = kill(pid, Signal::SIGKILL);
        // Workers it started may still hold blocks of the shared memory.
        self.sweep_at = Some(Instant::now() + std::time::Duration::from_secs(1));
        // It may have taken the pid file and the control socket: take them back.
        if let Err(e) = self.take_control() {
            log::error!("upgrade: {e}");
        }
        log::error!("upgrade failed: {why}; this master keeps serving");
        for c in waiters {
            self.reply(c, false, why.to_string());
        }
    }
}

/// Where a master that handed over to a new one keeps its pid until it exits.
pub(super) fn oldbin(pid_file: &std::path::Path) -> std::path::PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".oldbin");
    name.into()
}
