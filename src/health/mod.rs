//! The health-check helper: one process per node, started (and restarted) by the master,
//! that probes every peer of every upstream with a `health_check`, once per interval, and
//! writes each verdict into shared memory, where every worker reads it at once. Probes run
//! in one mio event loop of their own; nothing here blocks a worker.

mod probe;

use crate::config::Config;
use crate::shm::{Checked, View};
use mio::{Events, Interest, Poll, Token};
use probe::{Probe, Step};
use std::time::{Duration, Instant};

/// One peer under check.
struct Target {
    upstream: usize,
    peer: usize,
    next: Instant,
    probe: Option<(Probe, Instant)>,
    /// Consecutive successes and failures so far.
    ok: u32,
    bad: u32,
}

/// Runs until the master goes away (or a signal ends the process). Returns an exit code.
pub fn run(cfg: &Config, shared: View) -> i32 {
    let master = nix::unistd::getppid();
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            log::error!("health checks: cannot create the event loop: {e}");
            return 1;
        }
    };
    let now = Instant::now();
    let mut targets: Vec<Target> = Vec::new();
    for (u, up) in cfg.upstream.iter().enumerate() {
        let Some(check) = &up.health_check else {
            continue;
        };
        let n = up.peers.len().max(1) as u32;
        for (p, _) in up.peers.iter().enumerate() {
            // Spread the first probes over the interval rather than all at once.
            targets.push(Target {
                upstream: u,
                peer: p,
                next: now + check.interval * p as u32 / n,
                probe: None,
                ok: 0,
                bad: 0,
            });
        }
    }
    log::info!("health checks: {} peers", targets.len());
    let mut events = Events::with_capacity(256);
    loop {
        let now = Instant::now();
        let wake = targets
            .iter()
            .map(|t| t.probe.as_ref().map_or(t.next, |(_, by)| *by))
            .min()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
            .min(Duration::from_secs(1));
        match poll.poll(&mut events, Some(wake + Duration::from_millis(1))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("health checks: poll failed: {e}");
                return 1;
            }
        }
        if nix::unistd::getppid() != master {
            return 0;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            step(cfg, &shared, &mut poll, &mut targets[i], i);
        }
        let now = Instant::now();
        for (i, t) in targets.iter_mut().enumerate() {
            let check = cfg.upstream[t.upstream]
                .health_check
                .as_ref()
                .expect("checked");
            match &t.probe {
                Some((_, by)) if *by <= now => {
                    if let Some((mut p, _)) = t.probe.take() {
                        let _ = poll.registry().deregister(&mut p.stream);
                    }
                    verdict(cfg, &shared, t, Err("timed out".into()));
                }
                None if t.next <= now => {
                    let peer = &cfg.upstream[t.upstream].peers[t.peer];
                    t.next = now + check.interval;
                    shared.health(peer.slot).probed();
                    match Probe::start(peer.addr, check, &peer.name) {
                        Ok(mut p) => {
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if poll
                                .registry()
                                .register(&mut p.stream, Token(i), interest)
                                .is_ok()
                            {
                                t.probe = Some((p, now + check.timeout));
                            } else {
                                verdict(cfg, &shared, t, Err("cannot register".into()));
                            }
                        }
                        Err(e) => verdict(cfg, &shared, t, Err(format!("connect: {e}"))),
                    }
                }
                _ => {}
            }
        }
    }
}

fn step(cfg: &Config, shared: &View, poll: &mut Poll, t: &mut Target, _i: usize) {
    let check = cfg.upstream[t.upstream]
        .health_check
        .as_ref()
        .expect("checked");
    let Some((p, _)) = &mut t.probe else { return };
    let result = match p.advance(check) {
        Step::Pending => return,
        Step::Healthy => Ok(()),
        Step::Failed(why) => Err(why),
    };
    if let Some((mut p, _)) = t.probe.take() {
        let _ = poll.registry().deregister(&mut p.stream);
    }
    verdict(cfg, shared, t, result);
}

/// Counts a probe's outcome; `rise` successes in a row bring a peer up, `fall` failures
/// take it down (the first verdict after start takes one probe either way).
fn verdict(cfg: &Config, shared: &View, t: &mut Target, result: Result<(), String>) {
    let up = &cfg.upstream[t.upstream];
    let check = up.health_check.as_ref().expect("checked");
    let peer = &up.peers[t.peer];
    let h = shared.health(peer.slot);
    let was = h.checked();
    match result {
        Ok(()) => {
            t.ok += 1;
            t.bad = 0;
            if was == Checked::Unknown || (was == Checked::Down && t.ok >= check.rise) {
                if was == Checked::Down {
                    log::warn!(
                        "health check: peer {} of upstream \"{}\" is up again",
                        peer.name,
                        up.name
                    );
                }
                h.set_checked(Checked::Up);
            }
        }
        Err(why) => {
            t.bad += 1;
            t.ok = 0;
            if was == Checked::Unknown || (was == Checked::Up && t.bad >= check.fall) {
                log::warn!(
                    "health check: peer {} of upstream \"{}\" is down ({why})",
                    peer.name,
                    up.name
                );
                h.set_checked(Checked::Down);
            }
        }
    }
}
