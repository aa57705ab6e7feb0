//! The master process: owns the config, the listening sockets, the log files and the
//! workers. Signal handlers only set flags; this loop acts on them in a fixed order.

use crate::channel::{self, Msg};
use crate::config::{self, Config};
use crate::control::Reply;
use crate::{listeners, logging, privileges, worker};
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use signal_hook::consts::*;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const WAKE: Token = Token(0);
const CONTROL: Token = Token(1);
const CLIENT_BASE: usize = 1 << 20;
const WORKER_BASE: usize = 1 << 30;
/// A new generation must report ready within this time or the reload is rolled back.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After TERM, workers get this long before SIGKILL.
const FAST_STOP: Duration = Duration::from_millis(500);

/// Signals in the order the master loop handles them (nginx `ngx_master_process_cycle`).
const SIGNALS: [(i32, &str); 6] = [
    (SIGCHLD, "CHLD"),
    (SIGTERM, "TERM"),
    (SIGINT, "INT"),
    (SIGQUIT, "QUIT"),
    (SIGHUP, "HUP"),
    (SIGUSR1, "USR1"),
];

struct WorkerProc {
    pid: Pid,
    generation: u64,
    index: usize,
    channel: OwnedFd,
    ready: bool,
    draining: bool,
    kill_at: Option<Instant>,
}

/// A reload in progress: the new generation is starting; the old one still serves.
struct PendingReload {
    generation: u64,
    cfg: Config,
    access_logs: Vec<Option<File>>,
    new_listeners: Vec<SocketAddr>,
    deadline: Instant,
    waiters: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Graceful,
    Fast,
}

struct ControlClient {
    stream: UnixStream,
    input: Vec<u8>,
}

pub struct Master {
    cfg: Config,
    generation: u64,
    access_logs: Vec<Option<File>>,
    listeners: HashMap<SocketAddr, TcpListener>,
    workers: Slab<WorkerProc>,
    /// Recent crash times per worker index, for respawn backoff.
    crashes: HashMap<usize, VecDeque<Instant>>,
    respawn: Vec<(usize, Instant)>,
    pending: Option<PendingReload>,
    stop: Option<(Stop, Instant)>,
    /// Control clients waiting for the master to exit (quit/stop).
    exit_waiters: Vec<usize>,
    poll: Poll,
    wake_rx: UnixStream,
    _wake_tx: UnixStream,
    flags: Vec<(i32, &'static str, Arc<AtomicBool>)>,
    sig_ids: Vec<signal_hook::SigId>,
    control: UnixListener,
    clients: Slab<ControlClient>,
    started: SystemTime,
}

/// Starts the master on a validated config; returns the process exit code.
pub fn run(cfg: Config) -> i32 {
    match Master::start(cfg) {
        Ok(mut m) => m.run(),
        Err(e) => {
            log::error!("{e}");
            eprintln!("proxyd: {e}");
            1
        }
    }
}

impl Master {
    fn start(cfg: Config) -> Result<Master, String> {
        if let Some(f) = logging::open_error_log(&cfg).map_err(|e| e.to_string())? {
            logging::redirect_stderr(&f).map_err(|e| e.to_string())?;
        }
        let mut bound = HashMap::new();
        for addr in &cfg.listeners {
            bound.insert(*addr, listeners::bind(*addr).map_err(|e| e.to_string())?);
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
        if UnixStream::connect(sock).is_ok()
            && std::os::unix::net::UnixStream::connect(sock).is_ok()
        {
            return Err(format!("another master answers on {}", sock.display()));
        }
        let _ = std::fs::remove_file(sock);
        let mut control = UnixListener::bind(sock)
            .map_err(|e| format!("cannot bind control socket {}: {e}", sock.display()))?;
        let _ = std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600));
        poll.registry()
            .register(&mut control, CONTROL, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        std::fs::write(&cfg.pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pid file {}: {e}", cfg.pid_file.display()))?;
        if cfg.user.is_some() && !nix::unistd::geteuid().is_root() {
            log::warn!("\"user\" is ignored: the master does not run as root");
        }
        log::info!(
            "proxyd {} master started, pid {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        let mut m = Master {
            cfg,
            generation: 1,
            access_logs,
            listeners: bound,
            workers: Slab::new(),
            crashes: HashMap::new(),
            respawn: Vec::new(),
            pending: None,
            stop: None,
            exit_waiters: Vec::new(),
            poll,
            wake_rx,
            _wake_tx: wake_tx,
            flags,
            sig_ids,
            control,
            clients: Slab::new(),
            started: SystemTime::now(),
        };
        for i in 0..m.cfg.worker_processes {
            let cfg = m.cfg.clone();
            m.spawn(&cfg, 1, i, None)
                .map_err(|e| format!("cannot start worker: {e}"))?;
        }
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
                    Token(t) if t >= WORKER_BASE => self.on_worker_channel(t - WORKER_BASE),
                    Token(t) if t >= CLIENT_BASE => self.on_control_client(t - CLIENT_BASE),
                    _ => {}
                }
            }
            self.handle_signals();
            self.handle_timers();
            self.check_reload();
            if self.stop.is_some() && self.workers.is_empty() {
                self.cleanup();
                log::info!("master exiting");
                return 0;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Vec<Instant> = self.respawn.iter().map(|(_, t)| *t).collect();
        d.extend(self.pending.as_ref().map(|p| p.deadline));
        d.extend(self.workers.iter().filter_map(|(_, w)| w.kill_at));
        d.into_iter().min()
    }

    fn handle_signals(&mut self) {
        let raised: Vec<&str> = self
            .flags
            .iter()
            .filter(|(_, _, f)| f.swap(false, Ordering::SeqCst))
            .map(|(_, n, _)| *n)
            .collect();
        for name in raised {
            match name {
                "CHLD" => self.reap(),
                "TERM" | "INT" => {
                    log::info!("SIG{name} received: fast shutdown");
                    self.begin_stop(Stop::Fast);
                }
                "QUIT" => {
                    log::info!("SIGQUIT received: graceful shutdown");
                    self.begin_stop(Stop::Graceful);
                }
                "HUP" => {
                    log::info!("SIGHUP received: reloading configuration");
                    self.begin_reload(None);
                }
                "USR1" => {
                    log::info!("SIGUSR1 received: reopening log files");
                    if let Err(e) = self.reopen() {
                        log::error!("reopen failed: {e}");
                    }
                }
                _ => {}
            }
        }
    }

    // ---- workers ------------------------------------------------------------------

    /// Forks one worker of `generation` running `cfg`.
    fn spawn(
        &mut self,
        cfg: &Config,
        generation: u64,
        index: usize,
        logs: Option<&[Option<File>]>,
    ) -> io::Result<()> {
        let (master_end, worker_end) = channel::pair()?;
        let log_fds: Vec<Option<RawFd>> = logs
            .unwrap_or(&self.access_logs)
            .iter()
            .map(|f| f.as_ref().map(|f| f.as_raw_fd()))
            .collect();
        // SAFETY: the master is single-threaded (no threads are ever started before fork),
        // so the child may use the allocator and everything else freely.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                let code = self.child(cfg, generation, worker_end, log_fds);
                // Never return into the master's code in the child.
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                drop(worker_end);
                let entry = self.workers.vacant_entry();
                let key = entry.key();
                self.poll.registry().register(
                    &mut SourceFd(&master_end.as_raw_fd()),
                    Token(WORKER_BASE + key),
                    Interest::READABLE,
                )?;
                entry.insert(WorkerProc {
                    pid: child,
                    generation,
                    index,
                    channel: master_end,
                    ready: false,
                    draining: false,
                    kill_at: None,
                });
                log::info!("started worker process {child} (generation {generation})");
                Ok(())
            }
        }
    }

    /// Runs in the forked child: shed the master's state, drop privileges, run the worker.
    fn child(
        &mut self,
        cfg: &Config,
        generation: u64,
        channel: OwnedFd,
        log_fds: Vec<Option<RawFd>>,
    ) -> i32 {
        for id in self.sig_ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        for (sig, _) in SIGNALS {
            // SAFETY: restoring the default disposition; no handler of ours runs any more.
            unsafe {
                let _ = nix::sys::signal::signal(
                    Signal::try_from(sig).expect("valid signal"),
                    nix::sys::signal::SigHandler::SigDfl,
                );
            }
        }
        let listener_fds: Vec<RawFd> = cfg
            .listeners
            .iter()
            .map(|a| self.listeners[a].as_raw_fd())
            .collect();
        let mut keep: Vec<RawFd> = vec![0, 1, 2, channel.as_raw_fd()];
        keep.extend(&listener_fds);
        keep.extend(log_fds.iter().flatten());
        close_other_fds(&keep);
        if let Err(e) = privileges::drop_to(cfg.user.as_deref(), cfg.group.as_deref()) {
            log::error!("worker cannot drop privileges: {e}");
            return 2;
        }
        // SAFETY: these descriptors were kept open above and are owned by nothing else here;
        // the master's objects that also name them are never dropped in this process.
        let listeners = listener_fds
            .iter()
            .map(|&fd| unsafe { TcpListener::from_raw_fd(fd) })
            .collect();
        let access_logs = log_fds
            .iter()
            .map(|fd| fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
            .collect();
        worker::run(worker::WorkerSetup {
            cfg: cfg.clone(),
            generation,
            listeners,
            channel,
            access_logs,
        })
    }

    fn on_worker_channel(&mut self, key: usize) {
        loop {
            let Some(w) = self.workers.get_mut(key) else {
                return;
            };
            match channel::recv(w.channel.as_raw_fd()) {
                Ok(Some(Msg::Ready)) => {
                    w.ready = true;
                    log::debug!("worker {} ready", w.pid);
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
            let Some(key) = self
                .workers
                .iter()
                .find(|(_, w)| w.pid == pid)
                .map(|(k, _)| k)
            else {
                continue;
            };
            let w = self.workers.remove(key);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&w.channel.as_raw_fd()));
            let expected = w.draining || self.stop.is_some();
            if expected {
                log::info!("worker process {pid} {how}");
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
    fn schedule_respawn(&mut self, index: usize) {
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
    }

    fn handle_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = self
            .respawn
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(i, _)| *i)
            .collect();
        self.respawn.retain(|(_, t)| *t > now);
        if self.stop.is_none() {
            for index in due {
                let cfg = self.cfg.clone();
                let gen = self.generation;
                if let Err(e) = self.spawn(&cfg, gen, index, None) {
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

    fn begin_stop(&mut self, how: Stop) {
        if self.stop.is_some_and(|(s, _)| s == Stop::Fast) {
            return;
        }
        let now = Instant::now();
        self.stop = Some((how, now));
        self.respawn.clear();
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
            w.draining = true;
            w.kill_at = Some(w.kill_at.map_or(now + bound, |k| k.min(now + bound)));
        }
    }

    fn cleanup(&mut self) {
        let _ = std::fs::remove_file(&self.cfg.pid_file);
        let _ = std::fs::remove_file(&self.cfg.control_socket);
    }

    // ---- reload -------------------------------------------------------------------

    /// Reload as a transaction: load and validate, bind new listeners, open logs, start the
    /// new generation; only when all of it is ready does the old generation drain.
    fn begin_reload(&mut self, waiter: Option<usize>) {
        if self.stop.is_some() {
            if let Some(c) = waiter {
                self.reply(c, false, "the master is shutting down".into());
            }
            return;
        }
        if let Some(p) = &mut self.pending {
            p.waiters.extend(waiter);
            return;
        }
        match self.prepare_reload() {
            Ok(mut p) => {
                p.waiters.extend(waiter);
                self.pending = Some(p);
            }
            Err(msg) => {
                for line in msg.lines() {
                    log::error!("reload failed: {line}");
                }
                if let Some(c) = waiter {
                    self.reply(c, false, msg);
                }
            }
        }
    }

    fn prepare_reload(&mut self) -> Result<PendingReload, String> {
        let cfg = config::load(&self.cfg.path).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if cfg.pid_file != self.cfg.pid_file || cfg.control_socket != self.cfg.control_socket {
            log::warn!("changes to pid_file and control_socket take effect on restart only");
        }
        let mut new_listeners = Vec::new();
        for addr in &cfg.listeners {
            if self.listeners.contains_key(addr) {
                continue;
            }
            match listeners::bind(*addr) {
                Ok(l) => {
                    self.listeners.insert(*addr, l);
                    new_listeners.push(*addr);
                }
                Err(e) => {
                    for a in &new_listeners {
                        self.listeners.remove(a);
                    }
                    return Err(e.to_string());
                }
            }
        }
        let rollback = |m: &mut Master, new: &[SocketAddr]| {
            for a in new {
                m.listeners.remove(a);
            }
        };
        let access_logs = match logging::open_access_logs(&cfg) {
            Ok(l) => l,
            Err(e) => {
                rollback(self, &new_listeners);
                return Err(e.to_string());
            }
        };
        let generation = self.generation + 1;
        for i in 0..cfg.worker_processes {
            if let Err(e) = self.spawn(&cfg, generation, i, Some(&access_logs)) {
                self.kill_generation(generation);
                rollback(self, &new_listeners);
                return Err(format!("cannot start worker: {e}"));
            }
        }
        Ok(PendingReload {
            generation,
            cfg,
            access_logs,
            new_listeners,
            deadline: Instant::now() + READY_TIMEOUT,
            waiters: Vec::new(),
        })
    }

    fn kill_generation(&mut self, generation: u64) {
        for (_, w) in self
            .workers
            .iter_mut()
            .filter(|(_, w)| w.generation == generation)
        {
            let _ = kill(w.pid, Signal::SIGKILL);
            w.draining = true;
        }
    }

    fn fail_reload(&mut self, why: String) {
        let Some(p) = self.pending.take() else { return };
        log::error!(
            "reload failed: {why}; keeping generation {}",
            self.generation
        );
        self.kill_generation(p.generation);
        for a in &p.new_listeners {
            self.listeners.remove(a);
        }
        for c in p.waiters {
            self.reply(c, false, why.clone());
        }
    }

    /// Commits a pending reload once every new worker reported ready.
    fn check_reload(&mut self) {
        let Some(p) = &self.pending else { return };
        let gen = p.generation;
        let ready = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == gen && w.ready)
            .count();
        if ready < p.cfg.worker_processes {
            return;
        }
        let p = self.pending.take().expect("pending reload");
        let now = Instant::now();
        let drain_bound = self.cfg.shutdown_timeout + Duration::from_secs(5);
        for (_, w) in self
            .workers
            .iter_mut()
            .filter(|(_, w)| w.generation < gen && !w.draining)
        {
            let _ = channel::send(w.channel.as_raw_fd(), &Msg::Drain);
            w.draining = true;
            w.kill_at = Some(now + drain_bound);
        }
        self.listeners.retain(|a, _| p.cfg.listeners.contains(a));
        if p.cfg.error_log.path != self.cfg.error_log.path {
            match logging::open_error_log(&p.cfg) {
                Ok(Some(f)) => {
                    let _ = logging::redirect_stderr(&f);
                }
                Ok(None) => {}
                Err(e) => log::error!("{e}"),
            }
        }
        log::set_max_level(p.cfg.error_log.level_filter());
        self.cfg = p.cfg;
        self.access_logs = p.access_logs;
        self.generation = gen;
        self.respawn.clear();
        self.crashes.clear();
        let pids = self.worker_pids(gen);
        log::info!("reload complete: generation {gen} serving (workers {pids})");
        for c in p.waiters {
            self.reply(c, true, format!("generation {gen} serving, workers {pids}"));
        }
    }

    fn worker_pids(&self, gen: u64) -> String {
        let pids: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == gen)
            .map(|(_, w)| w.pid.to_string())
            .collect();
        pids.join(" ")
    }

    /// Reopens every log file (after rotation) and hands the new files to the workers.
    fn reopen(&mut self) -> Result<(), String> {
        let err = logging::open_error_log(&self.cfg).map_err(|e| e.to_string())?;
        if let Some(f) = &err {
            logging::redirect_stderr(f).map_err(|e| e.to_string())?;
        }
        self.access_logs = logging::open_access_logs(&self.cfg).map_err(|e| e.to_string())?;
        let mut files: Vec<&File> = err.iter().collect();
        files.extend(self.access_logs.iter().flatten());
        for (_, w) in self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation)
        {
            let dup: Vec<OwnedFd> = files
                .iter()
                .filter_map(|f| f.try_clone().ok().map(OwnedFd::from))
                .collect();
            if let Err(e) = channel::send(w.channel.as_raw_fd(), &Msg::Reopen(dup)) {
                log::error!("cannot send reopen to worker {}: {e}", w.pid);
            }
        }
        log::info!("reopened log files");
        Ok(())
    }

    // ---- control socket -----------------------------------------------------------

    fn accept_control(&mut self) {
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
                            input: Vec::new(),
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

    fn on_control_client(&mut self, key: usize) {
        let mut buf = [0u8; 256];
        let cmd = loop {
            let Some(c) = self.clients.get_mut(key) else {
                return;
            };
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    self.drop_client(key);
                    return;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    if c.input.len() > 1024 {
                        self.drop_client(key);
                        return;
                    }
                    if let Some(pos) = c.input.iter().position(|&b| b == b'\n') {
                        break String::from_utf8_lossy(&c.input[..pos]).trim().to_string();
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
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        if cmd == "status" {
            log::debug!("control command \"{cmd}\"");
        } else {
            log::info!("control command \"{cmd}\"");
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
            "reopen" => match self.reopen() {
                Ok(()) => self.reply(key, true, "log files reopened".into()),
                Err(e) => self.reply(key, false, e),
            },
            "status" => {
                let msg = self.status();
                self.reply(key, true, msg)
            }
            other => self.reply(key, false, format!("unknown command \"{other}\"")),
        }
    }

    fn status(&self) -> String {
        let uptime = self.started.elapsed().unwrap_or_default().as_secs();
        let mut s = format!(
            "master pid: {}\ngeneration: {}\nworkers: {}\nuptime: {}\nconfig: {}\n",
            std::process::id(),
            self.generation,
            self.worker_pids(self.generation),
            config::units::format_duration(Duration::from_secs(uptime)),
            self.cfg.path.display()
        );
        let draining: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.draining)
            .map(|(_, w)| w.pid.to_string())
            .collect();
        if !draining.is_empty() {
            s.push_str(&format!("draining: {}\n", draining.join(" ")));
        }
        s
    }

    /// Replies and closes the client connection.
    fn reply(&mut self, key: usize, ok: bool, message: String) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = c.stream.write_all(&Reply { ok, message }.line());
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Replies and keeps the connection open until the master exits.
    fn reply_keep(&mut self, key: usize, message: &str) {
        if let Some(c) = self.clients.get_mut(key) {
            let _ = c.stream.write_all(
                &Reply {
                    ok: true,
                    message: message.into(),
                }
                .line(),
            );
            self.exit_waiters.push(key);
        }
    }

    fn drop_client(&mut self, key: usize) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// Closes every descriptor of this process except `keep` (used in a fresh worker, so it
/// holds nothing of the master's: control socket, other workers' channels, epoll).
fn close_other_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}
