//! The helper process (see `helper`): started by the master when some upstream has a
//! `health_check` or a peer given by host name to resolve again, restarted with each new configuration, respawned (with
//! backoff) when it dies, stopped with the master.

use super::child::close_other_fds;
use super::Master;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{ForkResult, Pid};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Helper {
    pid: Option<Pid>,
    /// Helpers told to stop (by a reload or a shutdown) that have not exited yet.
    stopping: Vec<Pid>,
    /// When to start it again after it died.
    pub(super) respawn_at: Option<Instant>,
    /// Consecutive unexpected exits, for the backoff.
    crashes: u32,
}

impl Master {
    pub(super) fn start_helper(&mut self) {
        if self.helper.pid.is_some() || self.stop.is_some() || !crate::helper::needed(&self.cfg) {
            return;
        }
        self.helper.respawn_at = None;
        // Taken before the fork: a master that dies before the child asks getppid() would
        // leave it asking about init, and it would never see its master go.
        let master = nix::unistd::getpid();
        match self.fork_child() {
            Ok(ForkResult::Child) => {
                crate::proctitle::set("proxyd: helper process");
                self.forget_secrets(None);
                crate::scrub::wipe_stack();
                close_other_fds(&[0, 1, 2]);
                if let Err(e) =
                    crate::privileges::drop_to(self.cfg.user.as_deref(), self.cfg.group.as_deref())
                {
                    log::error!("helper process cannot drop privileges: {e}");
                    std::process::exit(2);
                }
                let view = self.shared.region.view();
                std::process::exit(crate::helper::run(&self.cfg, view, master));
            }
            Ok(ForkResult::Parent { child }) => {
                crate::notice!("started helper process {child}");
                self.helper.pid = Some(child);
            }
            Err(e) => {
                log::error!("cannot start the helper process: {e}");
                self.helper.respawn_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    pub(super) fn helper_pid(&self) -> Option<Pid> {
        self.helper.pid
    }

    pub(super) fn stop_helper(&mut self) {
        if let Some(pid) = self.helper.pid.take() {
            let _ = kill(pid, Signal::SIGTERM);
            self.helper.stopping.push(pid);
        }
        self.helper.respawn_at = None;
        self.helper.crashes = 0;
    }

    /// Whether `pid` was the helper (then it is respawned unless it was told to stop).
    pub(super) fn helper_exited(&mut self, pid: Pid, how: &str) -> bool {
        if let Some(i) = self.helper.stopping.iter().position(|&p| p == pid) {
            self.helper.stopping.swap_remove(i);
            crate::notice!("helper process {pid} {how}");
            return true;
        }
        if self.helper.pid != Some(pid) {
            return false;
        }
        self.helper.pid = None;
        if self.stop.is_some() {
            return true;
        }
        self.helper.crashes += 1;
        let delay = Duration::from_millis(100) * 2u32.pow(self.helper.crashes.min(7));
        log::error!("helper process {pid} {how} unexpectedly: restarting in {delay:?}");
        self.helper.respawn_at = Some(Instant::now() + delay);
        true
    }

    pub(super) fn helper_timers(&mut self) {
        if self.helper.respawn_at.is_some_and(|t| t <= Instant::now()) {
            self.start_helper();
        }
    }
}
