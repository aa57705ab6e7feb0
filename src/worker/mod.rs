//! A worker process: one mio (epoll) event loop that accepts clients on the inherited
//! listeners, runs their sessions, keeps idle upstream connections, and obeys the master.
//!
//! Its layers, each a module that uses only the ones below it (`scripts/imports.py` prints
//! what would run back up: nothing today). What they share is split by owner: `env.rs`
//! (`Env`: config, registry, timers, clock, buffers, lifecycle, shared memory, scratch) is
//! below them all; `upstream::Upstreams` (balancer, pool, connection owners, pipes) and
//! `sinks::Sinks` belong to their layers; `exchange::Ctx` puts them together with the
//! spare memory for the sessions and exchanges, and the event loop owns it. A driver is
//! given only `upstream::Cx` (environment and upstreams), the sinks only the environment.
//!
//! 1. This file, the event loop: poll, accept, timers, the master's channel, the worker's
//!    lifecycle (serving, draining, hurried, master gone). It dispatches by a token's
//!    `Kind` and knows no HTTP.
//! 2. `transport/`: a socket, its readiness and (optionally) TLS; the client's address
//!    (`PeerIp`). Nothing above it names `TcpStream`.
//! 3. `session/`: one client connection as a protocol enum (`Http1`, `Tunnel`). `Http1`
//!    turns bytes into request heads and framed body bytes, and writes response heads and
//!    body bytes; it knows no route, upstream or filter. It lends its exchange a `Lend`
//!    (where heads go, whether the client took them) and does what the exchange's `Next`
//!    says (carry on, answer with a status, switch protocols).
//! 4. `exchange/`: one request. `start.rs` routes it and runs the filters' request stage,
//!    then starts the upstream attempt or writes the answer made here (`answer`, through the
//!    response filters); `proxy.rs` turns what the driver reports into what the client gets.
//!    Exchanges and output buffers are recycled (`Spare`): a keep-alive request allocates
//!    nothing.
//! 5. `filters/`: the route's chain (`config::Filter`) over request and response heads,
//!    returning `Continue` or an `Answer` (status, headers, body).
//! 6. `upstream/`: the `Driver`, one per exchange: balance, pool or connect, send, response
//!    heads, body bytes into its buffer or splice pipe, retries, the `release` checklist. It
//!    owns its connection (`Owner::Exchange`) and never touches the client socket.
//! 7. `events.rs` and its sinks (`access_log/`, `export.rs`, shared-memory metrics): what
//!    each exchange reports when it is routed, connected, answered and done.
//!
//! Codecs (`crate::http`) are below all of these: sans-I/O, they serialize finished heads.

mod access_log;
pub mod buffer;
mod clock;
mod env;
mod events;
mod exchange;
mod export;
pub mod filters;
mod gauges;
mod output;
mod record;
mod route;
mod session;
mod sinks;
#[cfg(test)]
mod testing;
mod timer;
mod token;
pub use token::{key, slot_of, Kind};
mod transport;
mod upstream;

use crate::channel::{self, Msg};
use crate::config::{Config, LogTarget};
use env::Life;
use exchange::Ctx;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use session::Session;
use slab::Slab;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use transport::Transport;
use upstream::Owner;

/// Longest a buffered access-log line waits.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Longest the gauges stay stale after the last event (they are counted once a second).
const GAUGES_EVERY: Duration = Duration::from_millis(1000);
const CHANNEL: Token = Token(usize::MAX - 1);
/// Listening socket k has token `LISTENER_BASE - k`.
const LISTENER_BASE: usize = usize::MAX - 2;
/// What in-flight exchanges of a hurried worker get before they are cut.
const HURRY_GRACE: Duration = Duration::from_secs(1);
/// Most connections accepted per listener wakeup, so one busy listener cannot starve the rest.
const ACCEPT_BATCH: usize = 64;
/// Idle keep-alive connections closed at once when `worker_connections` runs out (nginx
/// closes 32 the same way).
const REUSE_BATCH: usize = 32;

/// What the master hands a new worker.
pub struct WorkerSetup {
    pub cfg: Config,
    pub generation: u64,
    /// This worker's listening sockets, each with its address's index in `cfg.listeners`
    /// (an address has one socket per worker slot, and a worker may have several of one).
    pub listeners: Vec<(usize, std::net::TcpListener)>,
    pub channel: OwnedFd,
    pub access_logs: Vec<Option<File>>,
    pub shared: crate::shm::Block,
}

/// One listening socket of this worker.
struct Listening {
    /// None once draining.
    sock: Option<TcpListener>,
    /// Index of its address in `cfg.listeners`.
    addr: usize,
    /// Its address's rustls config when it speaks TLS (looked up once, not per accept).
    tls: Option<std::sync::Arc<crate::tls::Site>>,
    /// Connections may be waiting: its last accept did not end in WouldBlock (the batch
    /// ran out, or the connection limit stopped it), and no new edge will say so.
    queued: bool,
}

struct Worker {
    poll: Poll,
    ctx: Ctx,
    sessions: Slab<Session>,
    listeners: Vec<Listening>,
    channel: OwnedFd,
    /// When "worker_connections are not enough" was last logged (once a second at most).
    reuse_logged: Option<Instant>,
    gauges: Gauges,
}

/// Whether the gauges in shared memory still describe the sessions. They are counted when
/// the clock ticks, which needs a wakeup: a worker that went quiet right after a burst
/// would otherwise show the burst's `writing` until its next event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gauges {
    Published,
    Stale,
}

/// Runs the worker until it is told to stop (or the master dies). Returns the exit code.
pub fn run(setup: WorkerSetup) -> i32 {
    let mut worker = match Worker::new(setup) {
        Ok(w) => w,
        Err(e) => {
            log::error!("worker: {e}");
            return 1;
        }
    };
    let result = worker.run();
    worker.ctx.sinks.log_allocations();
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("worker: {e}");
            1
        }
    }
}

impl Worker {
    fn new(s: WorkerSetup) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut listeners = Vec::new();
        for (k, (addr, l)) in s.listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            registry.register(&mut l, Token(LISTENER_BASE - k), Interest::READABLE)?;
            listeners.push(Listening {
                sock: Some(l),
                addr,
                tls: s.cfg.tls.get(&s.cfg.listeners[addr]).cloned(),
                queued: false,
            });
        }
        registry.register(
            &mut SourceFd(&s.channel.as_raw_fd()),
            CHANNEL,
            Interest::READABLE,
        )?;
        let ctx = Ctx::new(Rc::new(s.cfg), registry, s.shared, s.access_logs);
        crate::logging::set_level(&ctx.env.cfg.error_log.level);
        log::debug!("worker of generation {} started", s.generation);
        Ok(Worker {
            poll,
            ctx,
            sessions: Slab::with_capacity(1024),
            listeners,
            channel: s.channel,

            reuse_logged: None,
            gauges: Gauges::Stale,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        channel::send(self.channel.as_raw_fd(), &Msg::Ready)?;
        let mut events = Events::with_capacity(1024);
        loop {
            self.ctx.env.now = Instant::now();
            self.ctx.env.now_ms = crate::shm::now_ms();
            let timeout = if !self.ctx.env.again.is_empty() || self.accept_pending() {
                Some(Duration::ZERO)
            } else {
                let next = [self.ctx.env.timers.next(), self.ctx.env.life.deadline()]
                    .into_iter()
                    .flatten()
                    .min();
                let next = next.map(|t| {
                    t.saturating_duration_since(self.ctx.env.now) + Duration::from_millis(1)
                });
                let exporting = self.ctx.sinks.exporter.as_ref().is_some_and(|e| e.busy());
                if self.ctx.sinks.access.has_pending() || exporting {
                    // Buffered access-log lines and spans go out within a second even when
                    // idle (and a collector that stays silent is given up on in time).
                    Some(next.map_or(FLUSH_EVERY, |n| n.min(FLUSH_EVERY)))
                } else if self.gauges == Gauges::Stale {
                    Some(next.map_or(GAUGES_EVERY, |n| n.min(GAUGES_EVERY)))
                } else {
                    next
                }
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.ctx.env.now = Instant::now();
            self.ctx.env.now_ms = crate::shm::now_ms();
            if self.ctx.env.clock.tick() {
                self.ctx.sinks.access.flush();
                self.publish_gauges();
                self.gauges = Gauges::Published;
                if let Some(e) = &mut self.ctx.sinks.exporter {
                    e.flush(&self.ctx.env.registry, self.ctx.env.now);
                }
            }
            if !events.is_empty() {
                self.gauges = Gauges::Stale;
            }
            for ev in events.iter() {
                let t = ev.token();
                let hup = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || hup;
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                if t == CHANNEL {
                    if self.on_channel()? {
                        return Ok(());
                    }
                } else if t.0 > LISTENER_BASE - self.listeners.len() && t.0 <= LISTENER_BASE {
                    let k = LISTENER_BASE - t.0;
                    self.listeners[k].queued = true;
                    self.accept(k);
                } else {
                    self.on_conn_event(t.0, readable, writable, hup);
                }
            }
            // Work done without an event (queued exchanges, a listener's backlog) moves
            // sessions too.
            if !self.ctx.env.again.is_empty() || self.accept_pending() {
                self.gauges = Gauges::Stale;
            }
            for (slot, id) in std::mem::take(&mut self.ctx.env.again) {
                if self.sessions.get(slot).is_some_and(|s| s.id == id) {
                    self.drive(slot);
                }
            }
            // A listener left with a queue after its batch: no new edge will come for it.
            if self.accept_pending() {
                for k in 0..self.listeners.len() {
                    if self.listeners[k].queued {
                        self.accept(k);
                    }
                }
            }
            self.expire_timers();
            self.compact();
            if self.ctx.env.draining() {
                if self.sessions.is_empty() {
                    log::debug!("worker drained");
                    return Ok(());
                }
                if self
                    .ctx
                    .env
                    .life
                    .deadline()
                    .is_some_and(|d| d <= self.ctx.env.now)
                {
                    log::warn!(
                        "{}: closing {} connections",
                        if matches!(self.ctx.env.life, Life::Hurried { .. }) {
                            "told to finish (max_draining_generations)"
                        } else {
                            "shutdown timeout"
                        },
                        self.sessions.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    fn on_conn_event(&mut self, token: usize, readable: bool, writable: bool, hup: bool) {
        let slot = slot_of(token);
        match Kind::of(token) {
            Kind::Client => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.client_event(readable, writable, hup);
                    self.drive(slot);
                }
            }
            Kind::Upstream => match self.ctx.ups.upconns.get(slot) {
                Some(&Owner::Exchange { session, stream }) => {
                    if let Some(s) = self.sessions.get_mut(session) {
                        s.upstream_event(stream, readable, writable, hup);
                        self.drive(session);
                    }
                }
                Some(&Owner::Idle(idle)) if readable => {
                    // An idle upstream connection spoke or closed: it cannot be reused.
                    if let Some(c) = self.ctx.ups.pool.conns.get_mut(idle) {
                        if c.stream.idle_and_open() {
                            return;
                        }
                    }
                    self.ctx.ups.drop_idle(idle);
                }
                _ => {}
            },
            Kind::Exporter => {
                if let Some(e) = &mut self.ctx.sinks.exporter {
                    e.on_event(&self.ctx.env.registry, readable, writable, hup);
                }
            }
            // Idle pooled connections are registered under their `Upstream` token.
            Kind::Idle => {}
        }
    }

    fn drive(&mut self, slot: usize) {
        let keep = self.sessions[slot].drive(&mut self.ctx);
        if !keep {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let mut s = self.sessions.remove(slot);
        s.release_all(&mut self.ctx);
        // Client sockets belong to this process alone: closing removes them from epoll.
        drop(s);
        // A listener that waited for this slot is served at the end of the loop's batch
        // (`accept_pending`), not from here: accepting drives the new session, which may
        // close, so accepting from here could recurse once per queued connection.
    }

    /// A listener still has connections queued and there is room to take them.
    fn accept_pending(&self) -> bool {
        self.listeners.iter().any(|l| l.queued)
            && self.sessions.len() + self.ctx.ups.upconns.len()
                < self.ctx.env.cfg.worker_connections
    }

    fn accept(&mut self, k: usize) {
        let i = self.listeners[k].addr;
        for _ in 0..ACCEPT_BATCH {
            if self.sessions.len() + self.ctx.ups.upconns.len()
                >= self.ctx.env.cfg.worker_connections
                && !self.reclaim()
            {
                return;
            }
            let Some(l) = &self.listeners[k].sock else {
                self.listeners[k].queued = false;
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => {
                    let mut stream = match &self.listeners[k].tls {
                        None => Transport::accepted(stream),
                        Some(site) => Transport::accepted_tls(stream, site),
                    };
                    let id = self.ctx.env.next_id();
                    let accepted = &self.ctx.env.shared.stats().accepted;
                    accepted.store(accepted.load(Relaxed) + 1, Relaxed);
                    let entry = self.sessions.vacant_entry();
                    let slot = entry.key();
                    let token = Token(key(slot, Kind::Client));
                    if stream.register(&self.ctx.env.registry, token).is_err() {
                        continue;
                    }
                    let mut s = Session::new(id, slot, stream, addr, i);
                    let srv = self.ctx.env.listener_server(i);
                    let head_by = self.ctx.env.now
                        + match (&self.listeners[k].tls, &srv.tls) {
                            (Some(_), Some(t)) => t.handshake_timeout,
                            _ => srv.client_header_timeout,
                        };
                    s.start(head_by, &mut self.ctx);
                    // The listener defers accept until the request's first bytes arrived
                    // (see `listeners::defer_accept`): read them now, not after a wakeup.
                    s.client_event(true, true, false);
                    entry.insert(s);
                    self.drive(slot);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listeners[k].queued = false;
                    return;
                }
                // A socket added for this generation that the master has not yet made
                // listen (it does when the reload commits); its first connection wakes us.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.listeners[k].queued = false;
                    return;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE and friends: stop for now; the next event or a freed slot retries.
                    log::error!("accept() failed: {e}");
                    return;
                }
            }
        }
    }

    /// At `worker_connections`, makes room for new clients: idle upstream connections go
    /// first, then the oldest idle keep-alive clients. Returns whether anything was freed.
    fn reclaim(&mut self) -> bool {
        if self.ctx.env.draining() {
            return false;
        }
        let mut freed = 0;
        for c in self.ctx.ups.pool.drain_all() {
            self.ctx.ups.upconns.try_remove(c.conn);
            freed += 1;
        }
        while freed < REUSE_BATCH {
            let Some((slot, id, served)) = self.ctx.env.idle.pop_front() else {
                break;
            };
            let live = self
                .sessions
                .get(slot)
                .is_some_and(|s| s.id == id && s.idle_since() == Some(served));
            if live {
                self.sessions.remove(slot).release_all(&mut self.ctx);
                freed += 1;
            }
        }
        if freed > 0
            && self
                .reuse_logged
                .is_none_or(|t| self.ctx.env.now >= t + Duration::from_secs(1))
        {
            log::warn!(
                "{} worker_connections are not enough, reusing connections",
                self.ctx.env.cfg.worker_connections
            );
            self.reuse_logged = Some(self.ctx.env.now);
        }
        freed > 0
    }

    /// Drops stale entries from the timer heap and the idle queue once they outnumber the
    /// live connections, so neither grows with the connections served.
    fn compact(&mut self) {
        let live = self.sessions.len() + self.ctx.ups.pool.len();
        if self.ctx.env.timers.len() > 2 * live + 1024 {
            let before = self.ctx.env.timers.len();
            let (sessions, pool) = (&self.sessions, &self.ctx.ups.pool);
            self.ctx
                .env
                .timers
                .retain(|at, key, id| match Kind::of(key) {
                    Kind::Client => sessions
                        .get(slot_of(key))
                        .is_some_and(|s| s.id == id && s.deadline_armed_at(at)),
                    Kind::Idle => pool.conns.get(slot_of(key)).is_some_and(|c| c.id == id),
                    Kind::Upstream | Kind::Exporter => false,
                });
            log::debug!(
                "timer heap compacted from {before} to {} entries",
                self.ctx.env.timers.len()
            );
        }
        if self.ctx.env.idle.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            self.ctx.env.idle.retain(|&(slot, id, served)| {
                sessions
                    .get(slot)
                    .is_some_and(|s| s.id == id && s.served() == served)
            });
        }
    }

    fn expire_timers(&mut self) {
        let now = self.ctx.env.now;
        while let Some((at, key, id)) = self.ctx.env.timers.pop_due(now) {
            self.gauges = Gauges::Stale;
            let slot = slot_of(key);
            match Kind::of(key) {
                Kind::Client => {
                    let Some(s) = self.sessions.get_mut(slot) else {
                        continue;
                    };
                    if s.id != id {
                        continue;
                    }
                    let fired = s
                        .deadline()
                        .fire(at, now, &mut self.ctx.env.timers, key, id);
                    if fired && !s.on_timeout(&mut self.ctx) {
                        self.close(slot);
                    }
                }
                Kind::Idle
                    if self
                        .ctx
                        .ups
                        .pool
                        .conns
                        .get(slot)
                        .is_some_and(|c| c.id == id && c.expires <= now) =>
                {
                    self.ctx.ups.drop_idle(slot);
                }
                _ => {}
            }
        }
    }

    /// Handles master messages; returns true when the worker must exit now.
    fn on_channel(&mut self) -> io::Result<bool> {
        loop {
            match channel::recv(self.channel.as_raw_fd()) {
                Ok(Some(Msg::Drain)) => {
                    self.start_drain();
                    // The master answers a reload only after this: from then on every new
                    // connection is the new generation's. A master that died since it asked
                    // (killed in the middle of an upgrade) cannot hear it: the drain goes on.
                    if let Err(e) = channel::send(self.channel.as_raw_fd(), &Msg::Draining) {
                        if !master_gone_error(&e) {
                            return Err(e);
                        }
                        self.lose_master();
                        return Ok(false);
                    }
                }
                Ok(Some(Msg::Terminate)) => return Ok(true),
                Ok(Some(Msg::Reopen(fds))) => self.reopen(fds),
                Ok(Some(Msg::Hurry)) => self.hurry(),
                Ok(Some(Msg::Ready | Msg::Draining)) => {}
                Ok(None) => {
                    self.lose_master();
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if master_gone_error(&e) => {
                    self.lose_master();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The master died (its end of the channel closed): finish what is in flight, then exit.
    fn lose_master(&mut self) {
        if matches!(self.ctx.env.life, Life::Orphaned { .. }) {
            return;
        }
        log::warn!("master process is gone; draining and exiting");
        let _ = self
            .ctx
            .env
            .registry
            .deregister(&mut SourceFd(&self.channel.as_raw_fd()));
        self.start_drain();
        if let Some(by) = self.ctx.env.life.deadline() {
            self.ctx.env.life = Life::Orphaned { by };
        }
    }

    /// Stop accepting (the listening sockets live on in the master and the new generation,
    /// so nothing queued is lost), answer in-flight requests with `Connection: close`, give
    /// idle keep-alive connections a short grace, and exit when empty or at the deadline.
    fn start_drain(&mut self) {
        if self.ctx.env.draining() {
            return;
        }
        self.ctx.env.life = Life::Draining {
            by: self.ctx.env.now + self.ctx.env.cfg.shutdown_timeout,
        };
        crate::proctitle::set("proxyd: worker process is shutting down");
        for l in self.listeners.iter_mut() {
            l.queued = false;
            if let Some(mut l) = l.sock.take() {
                // Deregister explicitly: other processes hold the same socket, so closing our
                // descriptor alone would leave it in this epoll set.
                let _ = self.ctx.env.registry.deregister(&mut l);
            }
        }
        for c in self.ctx.ups.pool.drain_all() {
            self.ctx.ups.upconns.try_remove(c.conn);
        }
        let slots: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.sessions[slot].start_drain(&mut self.ctx);
        }
        log::debug!("draining {} connections", self.sessions.len());
    }

    /// Too many generations are draining and this one is the oldest: idle connections
    /// close now, what is in flight gets HURRY_GRACE to finish, then is cut.
    fn hurry(&mut self) {
        self.start_drain();
        let idle: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.idle_since().is_some())
            .map(|(k, _)| k)
            .collect();
        for &slot in &idle {
            self.close(slot);
        }
        let grace = self.ctx.env.now + HURRY_GRACE;
        let by = self.ctx.env.life.deadline().map_or(grace, |d| d.min(grace));
        self.ctx.env.life = Life::Hurried { by };
        log::warn!(
            "told to finish (max_draining_generations): closed {} idle connections, {} in flight get {}s",
            idle.len(),
            self.sessions.len(),
            HURRY_GRACE.as_secs()
        );
    }

    fn reopen(&mut self, fds: Vec<OwnedFd>) {
        let mut fds = fds.into_iter();
        if matches!(self.ctx.env.cfg.error_log.path, LogTarget::File(_)) {
            if let Some(f) = fds.next() {
                let _ = crate::logging::redirect_stderr(&f);
            }
        }
        self.ctx
            .sinks
            .access
            .reopen(&self.ctx.env.cfg.access_logs, fds.map(File::from));
        crate::notice!("reopened log files");
    }
}

/// Whether a channel error means the master's end is gone (it died).
fn master_gone_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}
