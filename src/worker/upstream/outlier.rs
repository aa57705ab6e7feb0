//! Passive health (outlier detection): what each exchange's outcome says about its peer.
//! `consecutive_failures` in a row (connect errors, timeouts, broken responses, and with
//! `count_5xx` 5xx answers) eject the peer for the node; the n-th ejection in a row lasts n
//! times `ejection`, up to `max_ejection`; no more than `max_ejected_percent` of an
//! upstream's peers are ejected at once. When an ejection ends the peer is on trial
//! (half-open): its next failure ejects it again at once, its first success clears it.

use crate::worker::env::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with a status below 500 (any status without `count_5xx`).
    Success,
    /// Connect refused, reset, or timed out.
    ConnectFailed,
    /// Timed out or broke after connecting.
    Failed,
    /// A 5xx response head.
    Status5xx,
}

/// Records what the exchange learned about peer `peer` of upstream `u`.
pub fn peer_outcome(env: &Env, u: usize, peer: usize, outcome: Outcome) {
    let group = &env.cfg.upstream[u];
    let od = &group.outlier;
    let p = &group.peers[peer];
    let h = env.shared.view().health(p.slot);
    let failure = match outcome {
        Outcome::Success => false,
        Outcome::Status5xx => od.count_5xx,
        Outcome::ConnectFailed | Outcome::Failed => true,
    };
    if !failure {
        if outcome == Outcome::Success {
            h.succeeded();
        }
        return;
    }
    env.shared.failure(p.slot);
    let now = env.now_ms;
    let fails = h.failed();
    let on_trial = h.streak() > 0;
    if fails < od.consecutive_failures && !on_trial {
        return;
    }
    let view = *env.shared.view();
    let present = group.peers.iter().filter(|q| q.present(&view));
    let (mut ejected, mut peers) = (0, 0);
    for q in present {
        peers += 1;
        ejected += view.health(q.slot).ejected(now) as usize;
    }
    // A lone peer is never ejected (the balancer would try it anyway, as nginx ignores
    // max_fails then): an ejection would only make status and metrics say it is out.
    if peers <= 1 {
        return;
    }
    if (ejected + 1) * 100 > od.max_ejected_percent as usize * peers {
        log::info!(
            "peer {} of upstream \"{}\" not ejected: {ejected} of {peers} already are (max_ejected_percent)",
            p.label(p.address(&view)),
            group.name,
        );
        return;
    }
    let (base, max) = (
        od.ejection.as_millis() as u64,
        od.max_ejection.as_millis() as u64,
    );
    if let Some(ms) = h.eject(now, |streak| (base * streak as u64).min(max)) {
        log::warn!(
            "peer {} of upstream \"{}\" ejected for {} ms ({})",
            p.label(p.address(&view)),
            group.name,
            ms,
            if on_trial {
                "failed again after its last ejection".to_string()
            } else {
                format!("{fails} failures in a row")
            }
        );
    }
}
