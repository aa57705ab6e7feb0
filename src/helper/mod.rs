//! The helper: one process per node, started (and restarted with each config) by the master,
//! for the work that must happen once per node rather than once per worker, and must never
//! block a worker's loop: active health checks (`checks.rs`) and re-resolving peers given by
//! host name (`names.rs`). Both write into shared memory, where every worker reads the
//! results at once. Both run in one mio event loop of this process.

mod checks;
mod names;
mod probe;

use crate::config::Config;
use crate::shm::View;
use mio::{Events, Poll};
use std::time::{Duration, Instant};

/// Tokens from here on are name lookups; below, health-check probes.
const NAMES: usize = 1 << 30;

/// Whether `cfg` gives the helper anything to do.
pub fn needed(cfg: &Config) -> bool {
    cfg.upstream
        .iter()
        .any(|u| u.health_check.is_some() || names::resolved_again(u))
}

/// Runs until `master` goes away (or a signal ends the process). Returns an exit code.
pub fn run(cfg: &Config, shared: View, master: nix::unistd::Pid) -> i32 {
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            log::error!("helper: cannot create the event loop: {e}");
            return 1;
        }
    };
    let now = Instant::now();
    let mut checks = checks::Checks::new(cfg, now);
    let mut names = names::Names::new(cfg, now);
    log::info!(
        "helper: health checks of {} peers, {} host names to resolve again",
        checks.len(),
        names.len()
    );
    let mut events = Events::with_capacity(256);
    loop {
        let now = Instant::now();
        let wake = [checks.wake(), names.wake()]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
            .min(Duration::from_secs(1));
        match poll.poll(&mut events, Some(wake + Duration::from_millis(1))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("helper: poll failed: {e}");
                return 1;
            }
        }
        if nix::unistd::getppid() != master {
            return 0;
        }
        for ev in events.iter() {
            match ev.token().0 {
                i if i >= NAMES => names.ready(cfg, &shared, &mut poll, i - NAMES),
                i => checks.ready(cfg, &shared, &mut poll, i),
            }
        }
        checks.timers(cfg, &shared, &mut poll);
        names.timers(cfg, &shared, &mut poll);
    }
}
