//! Reload as a transaction: build and validate everything for the new generation first;
//! commit (drain the old generation) only when every new worker reported ready.

use super::{Committed, Life, Master, PendingReload, READY_TIMEOUT};
use crate::channel::{self, Msg};
use crate::config;
use crate::listeners::ListenSet;
use crate::logging;
use nix::sys::signal::{kill, Signal};
use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A hurried worker that has not exited by then (1 s grace plus margin) is killed.
const HURRY_KILL: Duration = Duration::from_secs(5);
/// How long a reload's caller waits for the old workers to confirm they stopped accepting.
const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(2);

impl Master {
    /// Reload as a transaction: load and validate, bind new listeners, open logs, start the
    /// new generation; only when all of it is ready does the old generation drain.
    pub(super) fn begin_reload(&mut self, waiter: Option<usize>) {
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
        // The new master is assigning slots in the shared directory: one writer at a time.
        if !matches!(self.upgrade, super::upgrade::Upgrade::Idle) {
            let why = "an upgrade is in progress";
            log::warn!("reload not started: {why}");
            if let Some(c) = waiter {
                self.reply(c, false, why.into());
            }
            return;
        }
        self.notify.reloading();
        match self.prepare_reload() {
            Ok(mut p) => {
                p.waiters.extend(waiter);
                self.pending = Some(p);
            }
            Err(msg) => {
                for line in msg.lines() {
                    log::error!("reload failed: {line}");
                }
                self.notify_reload_failed(&msg);
                if let Some(c) = waiter {
                    self.reply(c, false, msg);
                }
            }
        }
    }

    pub(super) fn prepare_reload(&mut self) -> Result<PendingReload, String> {
        let mut cfg = config::load(&self.cfg.path).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if cfg.pid_file != self.cfg.pid_file || cfg.control_socket != self.cfg.control_socket {
            log::warn!("changes to pid_file and control_socket take effect on restart only");
        }
        for w in &cfg.warnings {
            log::warn!("{w}");
        }
        if cfg.shared_memory != self.cfg.shared_memory {
            log::warn!("changes to shared_memory take effect on restart only");
            cfg.shared_memory = self.cfg.shared_memory;
        }
        let generation = self.generation + 1;
        let live = self.live_generations();
        self.shared.assign(&mut cfg, generation, &live)?;
        let n = cfg.worker_processes;
        let mut new_listeners = Vec::new();
        let mut grown = Vec::new();
        let mut bound = Ok(());
        for addr in &cfg.listeners {
            if let Some(set) = self.listeners.get_mut(addr) {
                match set.grow(n) {
                    Ok(0) => {}
                    Ok(k) => grown.push((*addr, k)),
                    Err(e) => {
                        bound = Err(e);
                        break;
                    }
                }
                continue;
            }
            match ListenSet::bind(*addr, n) {
                Ok(set) => {
                    self.listeners.insert(*addr, set);
                    new_listeners.push(*addr);
                }
                Err(e) => {
                    bound = Err(e);
                    break;
                }
            }
        }
        let rollback = |m: &mut Master, new: &[SocketAddr], grown: &[(SocketAddr, usize)]| {
            for a in new {
                m.listeners.remove(a);
            }
            for (a, k) in grown {
                if let Some(set) = m.listeners.get_mut(a) {
                    set.shrink_by(*k);
                }
            }
        };
        if let Err(e) = bound {
            rollback(self, &new_listeners, &grown);
            return Err(e.to_string());
        }
        let access_logs = match logging::open_access_logs(&cfg) {
            Ok(l) => l,
            Err(e) => {
                rollback(self, &new_listeners, &grown);
                return Err(e.to_string());
            }
        };
        super::trim_heap();
        for i in 0..cfg.worker_processes {
            if let Err(e) = self.spawn(&mut cfg, generation, i, Some(&access_logs)) {
                self.kill_generation(generation);
                rollback(self, &new_listeners, &grown);
                return Err(format!("cannot start worker: {e}"));
            }
        }
        Ok(PendingReload {
            generation,
            cfg,
            access_logs,
            new_listeners,
            grown,
            deadline: Instant::now() + READY_TIMEOUT,
            waiters: Vec::new(),
        })
    }

    pub(super) fn kill_generation(&mut self, generation: u64) {
        for (_, w) in self
            .workers
            .iter_mut()
            .filter(|(_, w)| w.generation == generation)
        {
            let _ = kill(w.pid, Signal::SIGKILL);
            w.drain(Instant::now());
        }
    }

    pub(super) fn fail_reload(&mut self, why: String) {
        let Some(p) = self.pending.take() else { return };
        log::error!(
            "reload failed: {why}; keeping generation {}",
            self.generation
        );
        self.kill_generation(p.generation);
        self.notify_reload_failed(&why);
        for a in &p.new_listeners {
            self.listeners.remove(a);
        }
        for (a, k) in &p.grown {
            if let Some(set) = self.listeners.get_mut(a) {
                set.shrink_by(*k);
            }
        }
        for c in p.waiters {
            self.reply(c, false, why.clone());
        }
    }

    /// Commits a pending reload once every new worker reported ready.
    pub(super) fn check_reload(&mut self) {
        let Some(p) = &self.pending else { return };
        let gen = p.generation;
        if self.ready_workers(gen) < p.cfg.worker_processes {
            return;
        }
        let mut p = self.pending.take().expect("pending reload");
        // The new sockets join their groups only now (see `ListenSet`).
        for addr in &p.cfg.listeners {
            if let Some(set) = self.listeners.get_mut(addr) {
                if let Err(e) = set.listen() {
                    log::error!("{e}");
                }
            }
        }
        let now = Instant::now();
        let drain_bound = self.cfg.shutdown_timeout + Duration::from_secs(5);
        for (_, w) in self
            .workers
            .iter_mut()
            .filter(|(_, w)| w.generation < gen && !w.draining())
        {
            let _ = channel::send(w.channel.as_raw_fd(), &Msg::Drain);
            w.drain(now);
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
        crate::logging::set_level(&p.cfg.error_log.level);
        self.cfg = p.cfg;
        super::trim_heap();
        // The new config's OCSP responses: when the first goes stale.
        self.staples_check_at = std::time::Instant::now();
        // The helper checks the new generation's peers (their health stays in shared memory).
        self.stop_helper();
        self.start_helper();
        self.access_logs = p.access_logs;
        self.generation = gen;
        self.hurry_old_generations();
        self.respawn.clear();
        self.crashes.clear();
        let pids = self.worker_pids(gen);
        self.stats.reloads_ok += 1;
        self.record_reload(true, format!("generation {gen} serving, workers {pids}"));
        self.clear_peer_overrides();
        if let Err(e) = self.admin_listen() {
            log::error!("{e}; the admin listener stays where it was");
        }
        crate::notice!("reload complete: generation {gen} serving (workers {pids})");
        self.notify
            .ready(&format!("generation {gen} serving, workers {pids}"));
        let waiters = std::mem::take(&mut p.waiters);
        let reply = format!("generation {gen} serving, workers {pids}");
        match &mut self.committed {
            // An older commit still waiting: its callers are answered with this one.
            Some(c) => {
                c.waiters.extend(waiters);
                c.generation = gen;
                c.reply = reply;
            }
            None => {
                self.committed = Some(Committed {
                    generation: gen,
                    reply,
                    waiters,
                    deadline: now + DRAIN_ACK_TIMEOUT,
                });
            }
        }
        self.check_committed();
    }

    /// Keeps at most `max_draining_generations` old generations draining: the oldest ones
    /// beyond it are told to finish now (idle connections closed, in-flight ones cut after
    /// a short grace), so frequent reloads cannot pile up workers and memory.
    fn hurry_old_generations(&mut self) {
        let gens = self.draining_generations();
        let max = self.cfg.max_draining_generations;
        let excess = gens.len().saturating_sub(max);
        let now = Instant::now();
        for &gen in &gens[..excess] {
            let mut told = Vec::new();
            for (_, w) in self.workers.iter_mut().filter(|(_, w)| w.generation == gen) {
                if let Life::Draining(d) = &mut w.life {
                    if !d.hurried {
                        d.hurried = true;
                        let _ = channel::send(w.channel.as_raw_fd(), &Msg::Hurry);
                        w.kill_at = Some(now + HURRY_KILL);
                        told.push(w.pid.to_string());
                    }
                }
            }
            if !told.is_empty() {
                log::warn!(
                    "{} generations draining, more than max_draining_generations = {max}: generation {gen} (workers {}) finishes now",
                    gens.len(),
                    told.join(" ")
                );
            }
        }
    }

    /// The reload is over and the running generation keeps serving: the service manager
    /// leaves its reloading state with the reason in the status line.
    fn record_reload(&mut self, ok: bool, message: String) {
        if self.reloads.len() == super::api::RELOAD_HISTORY {
            self.reloads.pop_front();
        }
        self.reloads.push_back(super::api::LastReload {
            ok,
            message,
            at: super::api::epoch_secs(),
        });
    }

    fn notify_reload_failed(&mut self, why: &str) {
        self.stats.reloads_failed += 1;
        self.record_reload(false, why.to_string());
        let first = why.lines().next().unwrap_or("");
        self.notify.ready(&format!(
            "generation {} serving; reload failed: {first}",
            self.generation
        ));
    }

    /// Answers the callers of a committed reload once no older worker accepts any more
    /// (or one is stuck past DRAIN_ACK_TIMEOUT: the reload has happened either way).
    pub(super) fn check_committed(&mut self) {
        let Some(c) = &self.committed else { return };
        let gen = c.generation;
        let waiting = self
            .workers
            .iter()
            .any(|(_, w)| w.generation < gen && w.accepting());
        if waiting && c.deadline > Instant::now() {
            return;
        }
        let c = self.committed.take().expect("committed reload");
        if waiting {
            log::warn!("an old worker did not confirm the drain in time");
        }
        for w in c.waiters {
            self.reply(w, true, c.reply.clone());
        }
    }

    pub(super) fn worker_pids(&self, gen: u64) -> String {
        let pids: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == gen)
            .map(|(_, w)| w.pid.to_string())
            .collect();
        pids.join(" ")
    }

    /// Reopens every log file (after rotation) and hands the new files to the workers.
    pub(super) fn reopen(&mut self) -> Result<(), String> {
        let err = logging::open_error_log(&self.cfg).map_err(|e| e.to_string())?;
        if let Some(f) = &err {
            logging::redirect_stderr(f).map_err(|e| e.to_string())?;
        }
        // Draining workers of older generations get theirs too, so nothing keeps writing
        // into a rotated file. Each path is opened once.
        let mut opened: HashMap<PathBuf, File> = HashMap::new();
        let mut failed = Vec::new();
        for (_, w) in self.workers.iter() {
            let mut fds: Vec<OwnedFd> = Vec::new();
            for path in w.log_files.iter() {
                if !opened.contains_key(path) {
                    match logging::open_append(path) {
                        Ok(f) => {
                            opened.insert(path.clone(), f);
                        }
                        Err(e) => {
                            failed.push(format!("cannot open {}: {e}", path.display()));
                            break;
                        }
                    }
                }
                if let Some(f) = opened.get(path).and_then(|f| f.try_clone().ok()) {
                    fds.push(OwnedFd::from(f));
                }
            }
            if fds.len() != w.log_files.len() {
                continue;
            }
            if let Err(e) = channel::send(w.channel.as_raw_fd(), &Msg::Reopen(fds)) {
                log::error!("cannot send reopen to worker {}: {e}", w.pid);
            }
        }
        if !failed.is_empty() {
            failed.dedup();
            return Err(failed.join("; "));
        }
        // Future workers of this generation start with the files just opened.
        self.access_logs = self
            .cfg
            .access_logs
            .iter()
            .map(|t| match t {
                crate::config::LogTarget::File(p) => match opened.get(p) {
                    Some(f) => f.try_clone().map(Some).map_err(|e| e.to_string()),
                    None => logging::open_append(p).map(Some).map_err(|e| e.to_string()),
                },
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        crate::notice!("reopened log files");
        Ok(())
    }
}
