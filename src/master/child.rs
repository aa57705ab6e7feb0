//! What a forked child of the master (a worker, or the health-check helper) does first:
//! shed the master's signal handling and descriptors, drop privileges, then run.

use super::{Master, SIGNALS};
use crate::config::Config;
use crate::{privileges, worker};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, ForkResult};
use std::fs::File;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

impl Master {
    /// Runs in the forked child: shed the master's state, drop privileges, run the worker.
    pub(super) fn child(
        &mut self,
        cfg: &mut Config,
        generation: u64,
        index: usize,
        block: u32,
        channel: OwnedFd,
        log_fds: Vec<Option<RawFd>>,
    ) -> i32 {
        crate::proctitle::set(&format!("proxyd: worker process (gen {generation})"));
        self.forget_secrets(Some(cfg));
        crate::scrub::wipe_stack();
        // (index in cfg.listeners, socket) for this worker's share of each address.
        let listener_fds: Vec<(usize, RawFd)> = cfg
            .listeners
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                self.listeners[a]
                    .for_worker(index, cfg.worker_processes)
                    .map(move |fd| (i, fd))
            })
            .collect();
        let mut keep: Vec<RawFd> = vec![0, 1, 2, channel.as_raw_fd()];
        keep.extend(listener_fds.iter().map(|(_, fd)| *fd));
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
            .map(|&(i, fd)| (i, unsafe { TcpListener::from_raw_fd(fd) }))
            .collect();
        let access_logs = log_fds
            .iter()
            .map(|fd| fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
            .collect();
        // Taken, not cloned: this process never returns to the master's code, and a clone
        // would copy every server, route and upstream into the worker's private memory,
        // where the fork shares the master's pages until someone writes them.
        let cfg = std::mem::take(cfg);
        self.shed_configs();
        worker::run(worker::WorkerSetup {
            cfg,
            generation,
            listeners,
            channel,
            access_logs,
            shared: self.shared.region.view().block(block),
        })
    }

    /// In a forked child: frees the master's other configs (the serving one, when this
    /// worker is of a reload's new generation) and gives their pages back. Kept, they would
    /// become this worker's private memory the moment the master frees its own copy after
    /// the reload, and stay so for the worker's whole life.
    fn shed_configs(&mut self) {
        drop(std::mem::take(&mut self.cfg));
        if let Some(p) = self.pending.as_mut() {
            drop(std::mem::take(&mut p.cfg));
        }
        super::trim_heap();
    }

    /// In a forked child: wipes the copies of the admin token and password hashes it
    /// inherited (`cfg`: the one the caller holds besides the master's), then stops wiping
    /// freed blocks (see `scrub`).
    pub(super) fn forget_secrets(&mut self, cfg: Option<&mut Config>) {
        let configs = [
            Some(&mut self.cfg),
            self.pending.as_mut().map(|p| &mut p.cfg),
            cfg,
        ];
        for c in configs.into_iter().flatten() {
            if let Some(a) = &mut c.admin {
                a.forget_secrets();
            }
        }
        self.admin.forget_secrets();
        crate::scrub::wipe_freed(false);
    }

    /// Forks a child of the master with every signal blocked across the fork: the child
    /// resets the master's handlers before unblocking, so a signal sent to it at once (a
    /// SIGTERM from a reload right after it started) takes the default action instead of
    /// being recorded by a handler nothing reads any more.
    pub(super) fn fork_child(&mut self) -> nix::Result<ForkResult> {
        let all = SigSet::all();
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old))?;
        // SAFETY: the master is single-threaded (no threads are ever started before fork),
        // so the child may use the allocator and everything else freely.
        let forked = unsafe { fork() };
        if let Ok(ForkResult::Child) = forked {
            self.reset_signals();
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        forked
    }

    /// In a forked child: the master's signal handling is not the child's.
    pub(super) fn reset_signals(&mut self) {
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
    }
}

/// Closes every descriptor of this process except `keep` (used in a fresh worker, so it
/// holds nothing of the master's: control socket, other workers' channels, epoll).
pub(super) fn close_other_fds(keep: &[RawFd]) {
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
