//! Active health checks: every peer of every upstream with a `health_check` is probed once
//! per interval, and each verdict goes into shared memory, where every worker reads it at
//! once.

use super::probe::{Probe, Step};
use crate::config::Config;
use crate::shm::{Checked, ProbeOutcome, View};
use mio::{Interest, Poll, Token};
use std::time::{Duration, Instant};

/// A probe's result: Ok, or what failed and the message for the log.
type Outcome = Result<(), (ProbeOutcome, String)>;

/// One peer under check.
struct Target {
    upstream: usize,
    peer: usize,
    next: Instant,
    /// The probe under way and when it times out.
    probe: Option<(Probe, Instant)>,
    /// Consecutive successes and failures so far.
    ok: u32,
    bad: u32,
}

pub struct Checks {
    targets: Vec<Target>,
}

impl Checks {
    pub fn new(cfg: &Config, now: Instant) -> Checks {
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
        Checks { targets }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// When something is due next.
    pub fn wake(&self) -> Option<Instant> {
        self.targets
            .iter()
            .map(|t| t.probe.as_ref().map_or(t.next, |(_, by)| *by))
            .min()
    }

    /// The probe with token `i` can make progress.
    pub fn ready(&mut self, cfg: &Config, shared: &View, poll: &mut Poll, i: usize) {
        if let Some(t) = self.targets.get_mut(i) {
            step(cfg, shared, poll, t);
        }
    }

    /// Times probes out and starts the ones due.
    pub fn timers(&mut self, cfg: &Config, shared: &View, poll: &mut Poll) {
        let now = Instant::now();
        for (i, t) in self.targets.iter_mut().enumerate() {
            let check = cfg.upstream[t.upstream]
                .health_check
                .as_ref()
                .expect("checked");
            match &t.probe {
                Some((_, by)) if *by <= now => {
                    if let Some((mut p, _)) = t.probe.take() {
                        let _ = poll.registry().deregister(&mut p.stream);
                    }
                    let why = (ProbeOutcome::Timeout, "timed out".to_string());
                    verdict(cfg, shared, t, Err(why), check.timeout);
                }
                None if t.next <= now => {
                    let peer = &cfg.upstream[t.upstream].peers[t.peer];
                    t.next = now + check.interval;
                    // A host name's spare entry: nothing to probe until it has an address.
                    let Some(addr) = peer.address(shared) else {
                        continue;
                    };
                    shared.health(peer.slot).probed();
                    let up = &cfg.upstream[t.upstream];
                    let tls = up
                        .tls
                        .as_ref()
                        .map(|tls| (&tls.config, tls.name_for(peer, &up.names, addr)));
                    match Probe::start(addr, check, &peer.name, tls) {
                        Ok(mut p) => {
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if poll
                                .registry()
                                .register(&mut p.stream, Token(i), interest)
                                .is_ok()
                            {
                                t.probe = Some((p, now + check.timeout));
                            } else {
                                let why = (ProbeOutcome::Io, "cannot register".into());
                                verdict(cfg, shared, t, Err(why), Duration::ZERO);
                            }
                        }
                        Err(e) => {
                            let why = (ProbeOutcome::Connect, format!("connect: {e}"));
                            verdict(cfg, shared, t, Err(why), Duration::ZERO)
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn step(cfg: &Config, shared: &View, poll: &mut Poll, t: &mut Target) {
    let check = cfg.upstream[t.upstream]
        .health_check
        .as_ref()
        .expect("checked");
    let Some((p, by)) = &mut t.probe else { return };
    let result = match p.advance(check) {
        Step::Pending => return,
        Step::Healthy => Ok(()),
        Step::Failed(kind, why) => Err((kind, why)),
    };
    // The deadline less the timeout is when the probe began.
    let took = check
        .timeout
        .saturating_sub(by.saturating_duration_since(Instant::now()));
    if let Some((mut p, _)) = t.probe.take() {
        let _ = poll.registry().deregister(&mut p.stream);
    }
    verdict(cfg, shared, t, result, took);
}

/// Counts a probe's outcome; `rise` successes in a row bring a peer up, `fall` failures
/// take it down. A peer not judged yet counts as `initial` says: up (so `fall` failures take
/// it down; one slow start of a backend does not turn every request away) or down (one
/// good probe brings it up).
fn verdict(cfg: &Config, shared: &View, t: &mut Target, result: Outcome, took: Duration) {
    let up = &cfg.upstream[t.upstream];
    let check = up.health_check.as_ref().expect("checked");
    let peer = &up.peers[t.peer];
    let h = shared.health(peer.slot);
    h.probe_done(
        result
            .as_ref()
            .err()
            .map_or(ProbeOutcome::Ok, |(kind, _)| *kind),
        took,
    );
    let was = h.checked();
    match result {
        Ok(()) => {
            t.ok += 1;
            t.bad = 0;
            if was == Checked::Unknown || (was == Checked::Down && t.ok >= check.rise) {
                if was == Checked::Down {
                    log::warn!(
                        "health check: peer {} of upstream \"{}\" is up again",
                        peer.label(peer.address(shared)),
                        up.name
                    );
                }
                h.set_checked(Checked::Up);
            }
        }
        Err((_, why)) => {
            t.bad += 1;
            t.ok = 0;
            let goes_down = match was {
                Checked::Unknown if check.initial == crate::config::Initial::Down => true,
                Checked::Unknown | Checked::Up => t.bad >= check.fall,
                Checked::Down => false,
            };
            if goes_down {
                log::warn!(
                    "health check: peer {} of upstream \"{}\" is down ({why})",
                    peer.label(peer.address(shared)),
                    up.name
                );
                h.set_checked(Checked::Down);
            }
        }
    }
}
