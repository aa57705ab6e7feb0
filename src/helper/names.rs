//! Resolving peers given by host name again, every `resolve_interval` of their upstream, and
//! putting the answers into the peers' shared memory slots (`View::place`): workers use the
//! new addresses from their next pick on, without a reload. A failed lookup changes nothing:
//! the last addresses known stay in use (a name server's outage must not empty an upstream).

use super::NAMES;
use crate::config::{Config, Upstream};
use crate::dns::{Attempt, Progress};
use crate::shm::View;
use mio::{Poll, Token};
use std::net::SocketAddr;
use std::time::Instant;

/// Whether the helper resolves this upstream's names again.
pub fn resolved_again(u: &Upstream) -> bool {
    !u.names.is_empty() && !u.resolve_interval.is_zero()
}

/// One host name of one upstream.
struct Name {
    upstream: usize,
    name: usize,
    next: Instant,
    lookup: Option<Attempt>,
    /// Lookups failed in a row, and when the last one was logged: a name server that stays
    /// down is logged at once and then once a minute, not at every interval.
    failures: u32,
    logged: Option<Instant>,
}

/// Between two log lines about the same name failing again.
const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Names {
    list: Vec<Name>,
}

impl Names {
    pub fn new(cfg: &Config, now: Instant) -> Names {
        let mut list = Vec::new();
        for (u, up) in cfg.upstream.iter().enumerate() {
            if !resolved_again(up) {
                continue;
            }
            for name in 0..up.names.len() {
                // The master resolved every name when it loaded the config.
                list.push(Name {
                    upstream: u,
                    name,
                    next: now + up.resolve_interval,
                    lookup: None,
                    failures: 0,
                    logged: None,
                });
            }
        }
        Names { list }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn wake(&self) -> Option<Instant> {
        self.list
            .iter()
            .map(|n| match &n.lookup {
                Some(Attempt::Asking(l)) => l.deadline(),
                _ => n.next,
            })
            .min()
    }

    /// The lookup with token `i` has datagrams waiting.
    pub fn ready(&mut self, cfg: &Config, shared: &View, poll: &mut Poll, i: usize) {
        let Some(n) = self.list.get_mut(i) else {
            return;
        };
        let progress = match &mut n.lookup {
            Some(Attempt::Asking(l)) => l.readable(poll.registry(), Token(NAMES + i)),
            _ => return,
        };
        advance(cfg, shared, poll, n, i, progress);
    }

    /// Times lookups out and starts the ones due.
    pub fn timers(&mut self, cfg: &Config, shared: &View, poll: &mut Poll) {
        let now = Instant::now();
        for (i, n) in self.list.iter_mut().enumerate() {
            match &mut n.lookup {
                Some(Attempt::Asking(l)) => {
                    let p = l.expired(now);
                    advance(cfg, shared, poll, n, i, p);
                }
                Some(Attempt::Done(_)) => n.lookup = None,
                None if n.next <= now => {
                    let up = &cfg.upstream[n.upstream];
                    n.next = now + up.resolve_interval;
                    let a = Attempt::new(&cfg.resolver, &up.names[n.name].host, now);
                    settle(cfg, shared, poll, n, i, a);
                }
                None => {}
            }
        }
    }
}

/// Moves a registered lookup on after `p`: on to the next server, or to its answer.
fn advance(cfg: &Config, shared: &View, poll: &mut Poll, n: &mut Name, i: usize, p: Progress) {
    if matches!(p, Progress::Pending) {
        return;
    }
    let Some(Attempt::Asking(mut l)) = n.lookup.take() else {
        return;
    };
    l.deregister(poll.registry());
    let host = &cfg.upstream[n.upstream].names[n.name].host;
    let next = Attempt::Asking(l).next(&cfg.resolver, host, p, Instant::now());
    settle(cfg, shared, poll, n, i, next);
}

/// Waits for a new attempt's answer (its socket registered), or takes its result.
fn settle(cfg: &Config, shared: &View, poll: &mut Poll, n: &mut Name, i: usize, a: Attempt) {
    let up = &cfg.upstream[n.upstream];
    let named = &up.names[n.name];
    match a {
        Attempt::Asking(mut l) => {
            let token = Token(NAMES + i);
            match l.register(poll.registry(), token) {
                Ok(()) => n.lookup = Some(Attempt::Asking(l)),
                Err(e) => log::error!("helper: cannot register a name lookup: {e}"),
            }
        }
        Attempt::Done(Ok(ips)) => {
            let addrs: Vec<SocketAddr> = ips
                .iter()
                .map(|&ip| SocketAddr::new(ip, named.port))
                .collect();
            let slots: Vec<u32> = up.peers[named.peers.clone()]
                .iter()
                .map(|p| p.slot)
                .collect();
            crate::dns::log_placed(&up.name, &named.name, &shared.place(&slots, &addrs));
            if n.failures > 0 {
                log::warn!(
                    "peer {} of upstream \"{}\" resolves again (after {} failed lookups)",
                    named.name,
                    up.name,
                    n.failures
                );
            }
            n.failures = 0;
            n.logged = None;
        }
        Attempt::Done(Err(e)) => {
            n.failures += 1;
            let now = Instant::now();
            if n.logged
                .is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_EVERY)
            {
                n.logged = Some(now);
                log::warn!(
                    "cannot resolve peer {} of upstream \"{}\" again ({e}; {} failures in a row): its addresses stay as they were",
                    named.name,
                    up.name,
                    n.failures
                );
            }
        }
    }
}
