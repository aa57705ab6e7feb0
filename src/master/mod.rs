//! The master process: owns the config, the listening sockets, the log files and the
//! workers. Signal handlers only set flags; this loop acts on them in a fixed order.

use crate::channel::{self, Msg};
use crate::config::Config;
use crate::listeners::ListenSet;
use crate::logging;

mod admin;
mod admin_auth;
mod admin_origin;
mod api;
mod child;
mod commands;
use commands::ControlClient;
mod hasher;
mod helper;
mod history;
mod metrics;
mod notify;
mod process;
mod reload;
mod shared;
mod upgrade;
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use signal_hook::consts::*;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const WAKE: Token = Token(0);
const CONTROL: Token = Token(1);
pub(super) const CLIENT_BASE: usize = 1 << 20;
const WORKER_BASE: usize = 1 << 30;
/// A new generation must report ready within this time or the reload is rolled back.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After TERM, workers get this long before SIGKILL.
const FAST_STOP: Duration = Duration::from_millis(500);

/// Signals in the order the master loop handles them (nginx `ngx_master_process_cycle`).
const SIGNALS: [(i32, &str); 7] = [
    (SIGCHLD, "CHLD"),
    (SIGTERM, "TERM"),
    (SIGINT, "INT"),
    (SIGQUIT, "QUIT"),
    (SIGHUP, "HUP"),
    (SIGUSR1, "USR1"),
    (SIGUSR2, "USR2"),
];

pub(super) struct WorkerProc {
    pub(super) pid: Pid,
    pub(super) generation: u64,
    pub(super) index: usize,
    pub(super) channel: OwnedFd,
    pub(super) life: Life,
    pub(super) kill_at: Option<Instant>,
    /// The log files this worker writes, in the order a reopen message carries them.
    pub(super) log_files: Rc<Vec<PathBuf>>,
    /// Its counter block in the shared memory region.
    pub(super) block: u32,
}

/// Where a worker process is in its life, as the master knows it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Life {
    /// Forked; has not reported ready yet.
    Starting,
    /// Ready: accepting and serving.
    Serving,
    /// Told to stop accepting and finish what it has (reload, graceful stop, or a failed
    /// start being killed).
    Draining(Drain),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Drain {
    pub(super) since: Instant,
    /// It confirmed that it left the listening sockets (see `Committed`).
    pub(super) left_listeners: bool,
    /// Told to finish now: its generation was the oldest of too many draining.
    pub(super) hurried: bool,
}

impl WorkerProc {
    pub(super) fn ready(&self) -> bool {
        matches!(self.life, Life::Serving)
    }

    pub(super) fn draining(&self) -> bool {
        matches!(self.life, Life::Draining(_))
    }

    /// May still take new connections.
    pub(super) fn accepting(&self) -> bool {
        !matches!(
            self.life,
            Life::Draining(Drain {
                left_listeners: true,
                ..
            })
        )
    }

    /// Tells it to drain (once).
    pub(super) fn drain(&mut self, now: Instant) {
        if !self.draining() {
            self.life = Life::Draining(Drain {
                since: now,
                left_listeners: false,
                hurried: false,
            });
        }
    }
}

/// A reload in progress: the new generation is starting; the old one still serves.
pub(super) struct PendingReload {
    pub(super) generation: u64,
    pub(super) cfg: Config,
    pub(super) access_logs: Vec<Option<File>>,
    pub(super) new_listeners: Vec<SocketAddr>,
    /// Sockets added to existing addresses for more workers: (address, how many).
    pub(super) grown: Vec<(SocketAddr, usize)>,
    pub(super) deadline: Instant,
    pub(super) waiters: Vec<usize>,
}

/// A reload that has committed: the reply waits until every older worker confirmed that it
/// left the listening sockets, so a connection made after `proxyctl reload` returns is
/// always served by the new configuration.
pub(super) struct Committed {
    pub(super) generation: u64,
    pub(super) reply: String,
    pub(super) waiters: Vec<usize>,
    pub(super) deadline: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stop {
    Graceful,
    Fast,
}

pub struct Master {
    pub(super) cfg: Config,
    pub(super) generation: u64,
    pub(super) access_logs: Vec<Option<File>>,
    pub(super) listeners: HashMap<SocketAddr, ListenSet>,
    /// A committed reload whose callers wait until the old generation stopped accepting.
    pub(super) committed: Option<Committed>,
    pub(super) workers: Slab<WorkerProc>,
    /// Recent crash times per worker index, for respawn backoff.
    pub(super) crashes: HashMap<usize, VecDeque<Instant>>,
    pub(super) respawn: Vec<(usize, Instant)>,
    pub(super) pending: Option<PendingReload>,
    pub(super) stop: Option<(Stop, Instant)>,
    pub(super) poll: Poll,
    pub(super) wake_rx: UnixStream,
    pub(super) _wake_tx: UnixStream,
    pub(super) flags: Vec<(i32, &'static str, Arc<AtomicBool>)>,
    pub(super) sig_ids: Vec<signal_hook::SigId>,
    pub(super) control: UnixListener,
    pub(super) clients: Slab<ControlClient>,
    pub(super) started: SystemTime,
    /// When the first master started, carried across binary upgrades (seconds since the
    /// epoch); `started` is this master's.
    pub(super) service_started: u64,
    /// The master this one upgraded, while it may still run (see `sweep_orphans`).
    pub(super) old_master: Option<Pid>,
    /// When the shared memory is next checked for blocks of workers nobody retired (after
    /// an upgrade or a failed one).
    pub(super) sweep_at: Option<Instant>,
    pub(super) notify: notify::Notifier,
    pub(super) readiness: Readiness,
    pub(super) upgrade: upgrade::Upgrade,
    /// Set when this master was started by a binary upgrade, until it announced itself.
    pub(super) inherited: Option<upgrade::Inherited>,
    /// Health and counters shared with the workers.
    pub(super) shared: shared::Shared,
    /// The helper process (health checks, name re-resolution).
    pub(super) helper: helper::Helper,
    /// When the TLS ticket keys roll next (see `tls::tickets`).
    tickets_rotate_at: Instant,
    /// When the OCSP response files are looked at next (`tls::ocsp`).
    staples_check_at: Instant,
    admin: admin::Admin,
    /// The process that checks admin passwords (see `hasher`).
    hasher: hasher::Hasher,
    /// `POST /api/reload` asked for a reload (begun by the loop, outside the request).
    api_reload: bool,
    stats: metrics::MasterStats,
    /// The last reloads' results, oldest first (`api::RELOAD_HISTORY` at most).
    reloads: VecDeque<api::LastReload>,
    /// The last 15 minutes of traffic, for the dashboard's charts.
    history: history::History,
}

/// Whether the service manager has been told that the first generation serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Readiness {
    Starting,
    Announced,
}

/// Starts the master on a validated config; returns the process exit code.
pub fn run(cfg: Config) -> i32 {
    let error_log = cfg.error_log.clone();
    match Master::start(cfg) {
        Ok(mut m) => m.run(),
        Err(e) => {
            // stderr is still the terminal (or journal) here; the error log gets it too.
            eprintln!("proxyd: [emerg] {e}");
            if let crate::config::LogTarget::File(p) = &error_log.path {
                if let Ok(mut f) = logging::open_append(p) {
                    let _ = logging::write_line(&mut f, "error", &e);
                }
            }
            1
        }
    }
}

impl Master {
    fn start(mut cfg: Config) -> Result<Master, String> {
        // What the old master handed over, when there is one (checked before any of it is
        // taken: the variables may be stale or set by hand).
        let (mut inherited, ignored) = upgrade::Inherited::from_env();
        let handover = upgrade::Handover::from_env(inherited.is_some());
        let generation = handover.generation.saturating_add(1);
        // Before any fork: every worker maps the same pages.
        let shared = shared::Shared::create(&mut cfg, handover.shm, generation)?;
        let notify = notify::Notifier::from_env();
        raise_fd_limit(cfg.worker_connections);
        let error_file = logging::open_error_log(&cfg).map_err(|e| e.to_string())?;
        let mut bound = HashMap::new();
        for addr in &cfg.listeners {
            let passed = inherited.as_mut().and_then(|i| i.sockets.remove(addr));
            let mut set = match passed {
                // SAFETY: the old master passed these listening sockets across exec to us.
                Some(fds) => unsafe { ListenSet::adopt(*addr, &fds) },
                None => ListenSet::bind(*addr, cfg.worker_processes).map_err(|e| e.to_string())?,
            };
            set.grow(cfg.worker_processes).map_err(|e| e.to_string())?;
            set.listen().map_err(|e| e.to_string())?;
            bound.insert(*addr, set);
        }
        // Sockets of addresses the configuration no longer has.
        for fds in inherited
            .iter_mut()
            .flat_map(|i| i.sockets.drain())
            .map(|(_, f)| f)
        {
            for fd in fds {
                let _ = nix::unistd::close(fd);
            }
        }
        let access_logs = logging::open_access_logs(&cfg).map_err(|e| e.to_string())?;
        let poll = Poll::new().map_err(|e| e.to_string())?;
        let (mut wake_rx, wake_tx) = UnixStream::pair().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut wake_rx, WAKE, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let mut flags = Vec::new();
        let mut sig_ids = Vec::new();
        for (sig, name) in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            sig_ids
                .push(signal_hook::flag::register(sig, flag.clone()).map_err(|e| e.to_string())?);
            sig_ids.push(
                signal_hook::low_level::pipe::register_raw(sig, wake_tx.as_raw_fd())
                    .map_err(|e| e.to_string())?,
            );
            flags.push((sig, name, flag));
        }
        let sock = &cfg.control_socket;
        // After a binary upgrade the old master still answers there, on purpose.
        if inherited.is_none() && std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return Err(format!("another master answers on {}", sock.display()));
        }
        let mut control = bind_control(sock)?;
        poll.registry()
            .register(&mut control, CONTROL, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        write_pid_file(&cfg)?;
        // From here on everything, workers included, logs to the error log file.
        if let Some(f) = &error_file {
            logging::redirect_stderr(f).map_err(|e| e.to_string())?;
        }
        if let Some(w) = ignored {
            log::warn!("{w}");
        }
        if cfg.user.is_some() && !nix::unistd::geteuid().is_root() {
            log::warn!("\"user\" is ignored: the master does not run as root");
        }
        crate::notice!(
            "proxyd {} master started, pid {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        let mut m = Master {
            helper: helper::Helper::default(),
            tickets_rotate_at: Instant::now() + crate::tls::tickets::ROTATION,
            // At once: that computes when the first stapled response goes stale.
            staples_check_at: Instant::now(),
            shared,
            cfg,
            generation,
            access_logs,
            listeners: bound,
            committed: None,
            workers: Slab::new(),
            crashes: HashMap::new(),
            respawn: Vec::new(),
            pending: None,
            stop: None,
            poll,
            wake_rx,
            _wake_tx: wake_tx,
            flags,
            sig_ids,
            control,
            clients: Slab::new(),
            started: SystemTime::now(),
            service_started: handover.service_started.unwrap_or_else(api::epoch_secs),
            old_master: handover.old_master,
            sweep_at: handover
                .old_master
                .map(|_| Instant::now() + Duration::from_secs(1)),
            notify,
            readiness: Readiness::Starting,
            upgrade: upgrade::Upgrade::Idle,
            inherited,
            admin: admin::Admin::default(),
            hasher: hasher::Hasher::default(),
            api_reload: false,
            stats: metrics::MasterStats {
                reloads_ok: handover.reloads_ok,
                reloads_failed: handover.reloads_failed,
                worker_restarts: handover.worker_restarts,
                processes: Default::default(),
            },
            reloads: VecDeque::new(),
            history: history::History::default(),
        };
        if let Err(e) = m.admin_listen() {
            // After a binary upgrade the old master holds the address until it exits.
            if m.inherited.is_none() {
                return Err(e);
            }
            log::info!("{e}; trying again every second (the old master still has it)");
            m.admin.retry_at = Some(Instant::now() + Duration::from_secs(1));
        }
        trim_heap();
        for i in 0..m.cfg.worker_processes {
            m.spawn_current(generation, i)
                .map_err(|e| format!("cannot start worker: {e}"))?;
        }
        m.start_helper();
        Ok(m)
    }

    fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("master poll failed: {e}");
                    return 1;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKE => {
                        let mut buf = [0u8; 64];
                        while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
                    }
                    CONTROL => self.accept_control(),
                    admin::LISTENER => self.admin_accept(),
                    hasher::HASHER => self.admin_hashed(),
                    upgrade::UPGRADE => self.on_upgrade_pipe(),
                    Token(t) if t >= WORKER_BASE => self.on_worker_channel(t - WORKER_BASE),
                    Token(t) if t >= admin::CONN_BASE => self.admin_event(t - admin::CONN_BASE),
                    Token(t) if t >= CLIENT_BASE => self.on_control_client(t - CLIENT_BASE),
                    _ => {}
                }
            }
            self.handle_signals();
            self.run_control_command();
            if std::mem::take(&mut self.api_reload) {
                self.begin_reload(None);
            }
            self.hasher_ensure();
            self.handle_timers();
            self.check_started();
            self.check_upgrade();
            self.check_reload();
            self.check_committed();
            if self.stop.is_some() && self.workers.is_empty() {
                self.cleanup();
                crate::notice!("master exiting");
                return 0;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Vec<Instant> = self.respawn.iter().map(|(_, t)| *t).collect();
        d.extend(self.pending.as_ref().map(|p| p.deadline));
        d.extend(self.committed.as_ref().map(|c| c.deadline));
        d.extend(self.upgrade_deadline());
        d.extend(self.workers.iter().filter_map(|(_, w)| w.kill_at));
        d.extend(self.helper.respawn_at);
        d.extend(self.admin.deadline());
        d.extend(self.admin.retry_at);
        d.extend(self.control_deadline());
        d.extend(self.sweep_at);
        d.extend(self.hasher_restart_at());
        d.push(self.tickets_rotate_at);
        d.push(self.history.next_at());
        if !self.cfg.staples.is_empty() {
            d.push(self.staples_check_at);
        }
        d.into_iter().min()
    }

    fn handle_signals(&mut self) {
        let raised: Vec<(i32, &str)> = self
            .flags
            .iter()
            .filter(|(_, _, f)| f.swap(false, Ordering::SeqCst))
            .map(|(sig, name, _)| (*sig, *name))
            .collect();
        for (sig, name) in raised {
            match sig {
                SIGCHLD => self.reap(),
                SIGTERM | SIGINT => {
                    crate::notice!("SIG{name} received: fast shutdown");
                    self.begin_stop(Stop::Fast);
                }
                SIGQUIT => {
                    crate::notice!("SIGQUIT received: graceful shutdown");
                    self.begin_stop(Stop::Graceful);
                }
                SIGHUP => {
                    crate::notice!("SIGHUP received: reloading configuration");
                    self.begin_reload(None);
                }
                SIGUSR2 => {
                    crate::notice!("SIGUSR2 received: upgrading the binary");
                    self.begin_upgrade(None);
                }
                SIGUSR1 => {
                    crate::notice!("SIGUSR1 received: reopening log files");
                    if let Err(e) = self.reopen() {
                        log::error!("reopen failed: {e}");
                    }
                }
                _ => {}
            }
        }
    }

    // ---- workers ------------------------------------------------------------------

    /// Forks one worker of the serving config (`self.cfg`, lent to `spawn` for the fork).
    fn spawn_current(&mut self, generation: u64, index: usize) -> io::Result<()> {
        let mut cfg = std::mem::take(&mut self.cfg);
        let r = self.spawn(&mut cfg, generation, index, None);
        self.cfg = cfg;
        r
    }

    /// Forks one worker of `generation` running `cfg`.
    /// `cfg` is the caller's own copy: the child wipes its secrets there too.
    pub(super) fn spawn(
        &mut self,
        cfg: &mut Config,
        generation: u64,
        index: usize,
        logs: Option<&[Option<File>]>,
    ) -> io::Result<()> {
        let block = self.shared.take_block().ok_or_else(|| {
            io::Error::other(format!(
                "no free counter block in shared memory ({} workers alive); restart proxyd to make room for more workers",
                self.workers.len()
            ))
        })?;
        let (master_end, worker_end) = match channel::pair() {
            Ok(p) => p,
            Err(e) => {
                self.shared.retire_block(block);
                return Err(e);
            }
        };
        let log_fds: Vec<Option<RawFd>> = logs
            .unwrap_or(&self.access_logs)
            .iter()
            .map(|f| f.as_ref().map(|f| f.as_raw_fd()))
            .collect();
        let forked = match self.fork_child() {
            Ok(f) => f,
            Err(e) => {
                self.shared.retire_block(block);
                return Err(e.into());
            }
        };
        match forked {
            ForkResult::Child => {
                let code = self.child(cfg, generation, index, block, worker_end, log_fds);
                // Never return into the master's code in the child.
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                self.shared.held_by(block, child);
                drop(worker_end);
                let entry = self.workers.vacant_entry();
                let key = entry.key();
                self.poll.registry().register(
                    &mut SourceFd(&master_end.as_raw_fd()),
                    Token(WORKER_BASE + key),
                    Interest::READABLE,
                )?;
                entry.insert(WorkerProc {
                    log_files: Rc::new(logging::file_paths(cfg)),
                    pid: child,
                    generation,
                    index,
                    channel: master_end,
                    life: Life::Starting,
                    kill_at: None,
                    block,
                });
                crate::notice!("started worker process {child} (generation {generation})");
                Ok(())
            }
        }
    }

    fn on_worker_channel(&mut self, key: usize) {
        loop {
            let Some(w) = self.workers.get_mut(key) else {
                return;
            };
            match channel::recv(w.channel.as_raw_fd()) {
                Ok(Some(Msg::Ready)) => {
                    if matches!(w.life, Life::Starting) {
                        w.life = Life::Serving;
                    }
                    log::debug!("worker {} ready", w.pid);
                }
                Ok(Some(Msg::Draining)) => {
                    if let Life::Draining(d) = &mut w.life {
                        d.left_listeners = true;
                    }
                    log::debug!("worker {} stopped accepting", w.pid);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The worker is exiting; SIGCHLD does the bookkeeping.
                    let fd = w.channel.as_raw_fd();
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    return;
                }
                Err(_) => return,
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, how) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exited with code {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("killed by signal {sig}")),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if self.helper_exited(pid, &how) {
                continue;
            }
            if self.hasher_exited(pid, &how) {
                self.admin_hash_lost();
                continue;
            }
            let Some(key) = self
                .workers
                .iter()
                .find(|(_, w)| w.pid == pid)
                .map(|(k, _)| k)
            else {
                continue;
            };
            let w = self.workers.remove(key);
            self.shared.retire_block(w.block);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&w.channel.as_raw_fd()));
            let expected = w.draining() || self.stop.is_some();
            if expected {
                crate::notice!("worker process {pid} {how}");
                continue;
            }
            log::error!("worker process {pid} {how} unexpectedly");
            if self
                .pending
                .as_ref()
                .is_some_and(|p| p.generation == w.generation)
            {
                self.fail_reload(format!(
                    "new worker process {pid} {how} before it was ready"
                ));
            } else if w.generation == self.generation {
                self.schedule_respawn(w.index);
            }
        }
    }

    /// Respawns at once, then backs off while a worker keeps crashing (up to 10 s).
    pub(super) fn schedule_respawn(&mut self, index: usize) {
        let now = Instant::now();
        let hist = self.crashes.entry(index).or_default();
        hist.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        hist.push_back(now);
        let n = hist.len() as u32;
        let delay = if n <= 1 {
            Duration::ZERO
        } else {
            (Duration::from_millis(100) * 2u32.pow((n - 1).min(7))).min(Duration::from_secs(10))
        };
        if !delay.is_zero() {
            log::warn!("worker {index} keeps crashing: respawning in {delay:?}");
        }
        self.respawn.push((index, now + delay));
        self.stats.worker_restarts += 1;
    }

    fn handle_timers(&mut self) {
        self.helper_timers();
        self.control_timers();
        self.sweep_orphans();
        self.admin_timers();
        if self.admin.retry_at.is_some_and(|t| t <= Instant::now()) {
            self.admin.retry_at = match self.admin_listen() {
                Ok(()) => None,
                Err(_) => Some(Instant::now() + Duration::from_secs(1)),
            };
        }
        let now = Instant::now();
        self.history_timer(now);
        if self.tickets_rotate_at <= now {
            crate::tls::tickets::rotate();
            self.tickets_rotate_at = now + crate::tls::tickets::ROTATION;
        }
        if self.staples_check_at <= now {
            self.staples_check_at = now + crate::tls::ocsp::CHECK_EVERY;
            let wall = chrono::Utc::now().timestamp();
            for s in &self.cfg.staples {
                // Also wake the second a stapled response goes stale, to stop stapling it.
                if let Some(next_update) = s.refresh(wall) {
                    let stale = next_update.saturating_sub(wall).max(0) as u64 + 1;
                    // Capped, so a nextUpdate in year 9999 adds nothing to an Instant.
                    let stale = Duration::from_secs(stale).min(crate::tls::ocsp::CHECK_EVERY);
                    self.staples_check_at = self.staples_check_at.min(now + stale);
                }
            }
        }
        let due: Vec<usize> = self
            .respawn
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(i, _)| *i)
            .collect();
        self.respawn.retain(|(_, t)| *t > now);
        if self.stop.is_none() {
            for index in due {
                let gen = self.generation;
                if let Err(e) = self.spawn_current(gen, index) {
                    log::error!("cannot respawn worker: {e}");
                    self.schedule_respawn(index);
                }
            }
        }
        for (_, w) in self.workers.iter_mut() {
            if w.kill_at.is_some_and(|t| t <= now) {
                log::warn!("worker {} did not exit in time: killing it", w.pid);
                let _ = kill(w.pid, Signal::SIGKILL);
                w.kill_at = None;
            }
        }
        if self.pending.as_ref().is_some_and(|p| p.deadline <= now) {
            self.fail_reload("new workers did not become ready in time".into());
        }
    }

    /// Workers of `gen` that reported ready.
    pub(super) fn ready_workers(&self, gen: u64) -> usize {
        self.workers
            .iter()
            .filter(|(_, w)| w.generation == gen && w.ready())
            .count()
    }

    /// Tells the service manager once every worker of the first generation is ready.
    fn check_started(&mut self) {
        if self.readiness == Readiness::Announced || self.stop.is_some() {
            return;
        }
        let gen = self.generation;
        if self.ready_workers(gen) >= self.cfg.worker_processes {
            self.readiness = Readiness::Announced;
            let pids = self.worker_pids(gen);
            crate::notice!("generation {gen} serving (workers {pids})");
            self.notify
                .ready(&format!("generation {gen} serving, workers {pids}"));
            if let Some(i) = &mut self.inherited {
                crate::notice!("upgrade: this master serves; the old one drains");
                i.announce_ready();
            }
        }
    }

    pub(super) fn begin_stop(&mut self, how: Stop) {
        if self.stop.is_some_and(|(s, _)| s == Stop::Fast) {
            return;
        }
        if !matches!(self.upgrade, upgrade::Upgrade::HandedOver) {
            self.notify.stopping(match how {
                Stop::Fast => "stopping",
                Stop::Graceful => "stopping gracefully: finishing in-flight requests",
            });
        }
        let now = Instant::now();
        self.stop = Some((how, now));
        self.respawn.clear();
        self.stop_helper();
        // A hash in progress is not waited for.
        self.hasher_gone();
        self.admin_hash_lost();
        if let Some(p) = self.pending.take() {
            for c in p.waiters {
                self.reply(c, false, "the master is shutting down".into());
            }
        }
        let bound = match how {
            Stop::Fast => FAST_STOP,
            Stop::Graceful => self.cfg.shutdown_timeout + Duration::from_secs(1),
        };
        let msg = if how == Stop::Fast {
            Msg::Terminate
        } else {
            Msg::Drain
        };
        for (_, w) in self.workers.iter_mut() {
            let _ = channel::send(w.channel.as_raw_fd(), &msg);
            w.drain(now);
            w.kill_at = Some(w.kill_at.map_or(now + bound, |k| k.min(now + bound)));
        }
    }

    fn cleanup(&mut self) {
        let handed_over = matches!(self.upgrade, upgrade::Upgrade::HandedOver);
        self.admin_shutdown(handed_over);
        // After a binary upgrade they are the new master's; this one only had the .oldbin.
        if handed_over {
            // Unless a later upgrade's old master wrote its own pid there since.
            let oldbin = upgrade::oldbin(&self.cfg.pid_file);
            if std::fs::read_to_string(&oldbin)
                .is_ok_and(|t| t.trim() == std::process::id().to_string())
            {
                let _ = std::fs::remove_file(oldbin);
            }
        } else {
            let _ = std::fs::remove_file(&self.cfg.pid_file);
            let _ = std::fs::remove_file(&self.cfg.control_socket);
        }
    }

    /// Binds the control socket and writes the pid file again (a failed binary upgrade may
    /// have taken both).
    pub(super) fn take_control(&mut self) -> Result<(), String> {
        let _ = self.poll.registry().deregister(&mut self.control);
        self.control = bind_control(&self.cfg.control_socket)?;
        self.poll
            .registry()
            .register(&mut self.control, CONTROL, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        write_pid_file(&self.cfg)
    }
}

/// Raises the soft open-file limit to the hard one (workers inherit it): every connection is
/// a descriptor, and the common default soft limit of 1024 is far below what a proxy needs.
fn raise_fd_limit(worker_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    // A proxied request holds two descriptors.
    if (lim.rlim_cur as usize) < worker_connections + 64 {
        log::warn!(
            "open file limit {} is below worker_connections {worker_connections}",
            lim.rlim_cur
        );
    }
}

/// Binds the control socket (mode 0600), replacing whatever file is at its path.
fn bind_control(sock: &std::path::Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock)
        .map_err(|e| format!("cannot bind control socket {}: {e}", sock.display()))?;
    let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600));
    Ok(l)
}

fn write_pid_file(cfg: &Config) -> Result<(), String> {
    // Written aside and renamed over: a reader (a logrotate script's `kill -USR1 $(cat ...)`,
    // an upgrade being watched) never sees the file empty or half written.
    let mut tmp = cfg.pid_file.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, &cfg.pid_file))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write pid file {}: {e}", cfg.pid_file.display())
        })
}

/// Gives the heap's free pages back to the kernel. Loading a config frees as much as it
/// keeps (the file's text, the parser's tree, the raw tables), wiped by `scrub` and so
/// dirty; without this the master would hold them, and every worker forked after would
/// share them and copy them as its allocator reused them. Called once a config is loaded
/// and once an old one is dropped.
pub(super) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: glibc's malloc_trim only returns unused memory of its own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
