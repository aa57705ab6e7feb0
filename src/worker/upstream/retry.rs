//! Retries (a route's `retry`): a request goes to another peer after a connect failure
//! (nothing was sent, so any request may go), and, for a request that may be replayed, after
//! a timeout before the response head or a 502/503/504 head. Bounded three ways: the
//! route's `tries`, each peer at most once, and the upstream's retry budget in shared memory
//! (a share of its requests, node-wide), so retries cannot multiply an outage. A retry that
//! is not a connect failure waits an exponential backoff with jitter first.

use super::outlier::Outcome;
use super::{peer_outcome, Cx};
use super::{Driver, Failure, Owner, Phase, Started, Trip, Upload};
use std::time::{Duration, Instant};

/// Why a failed attempt happened, for the retry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Connect,
    /// The connection broke, or the answer was not HTTP, before the response head.
    Error,
    Timeout,
    Status(u16),
}

/// Whether the exchange driven by `d` may go to another peer after `cause`; takes the
/// retry from the budget when it may. The reason when it may not.
pub fn may_retry(w: &mut Cx, d: &Driver, trip: &Trip, cause: Cause) -> Result<(), &'static str> {
    let cfg = w.env.cfg.clone();
    let Some(rule) = trip.rule else {
        return Err("no route");
    };
    let Some(group) = d.upstream.and_then(|u| cfg.upstream.get(u)) else {
        return Err("no upstream");
    };
    match cause {
        Cause::Connect => {}
        Cause::Timeout if !rule.timeout => return Err("not configured"),
        Cause::Error if !rule.error => return Err("not configured"),
        Cause::Status(s) if !rule.statuses.contains(&s) => return Err("not configured"),
        _ => {
            // The body streamed to the failed peer is gone: only a request without one
            // (or none of whose body went out) can be sent again.
            if d.body_sent > 0 || (trip.req.has_body && !trip.body_done) {
                return Err("its body was sent");
            }
            if !trip.req.idempotent() && !rule.non_idempotent {
                return Err("not idempotent");
            }
        }
    }
    if rule.tries > 0 && d.attempts >= rule.tries as usize {
        return Err("tries exhausted");
    }
    if d.tried.len() >= group.peers.len() {
        return Err("every peer tried");
    }
    if !w
        .env
        .shared
        .view()
        .take_retry(group.slot, rule.budget_percent, w.env.now_ms)
    {
        log::warn!(
            "retry budget of upstream \"{}\" spent: not retrying",
            group.name
        );
        return Err("retry budget spent");
    }
    w.env.shared.retry(group.slot);
    Ok(())
}

impl Driver {
    /// Sends the exchange again (after `may_retry` said yes): at once after a connect
    /// failure, after a backoff otherwise.
    pub fn retry(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        cause: Cause,
    ) -> Result<Started, Failure> {
        self.drop_conn(Phase::Off, w);
        if let Some(b) = self.resp.take() {
            w.env.bufs.put(b);
        }
        self.head_pos = 0;
        self.upload = Upload::Sending;
        if cause == Cause::Connect {
            return self.connect(w, owner, trip);
        }
        let Some(rule) = trip.rule else {
            return Err(Failure::new(502, "no route to retry by"));
        };
        // The n-th retry waits backoff * 2^(n-1), at most max_backoff, times a random 0.5..1.
        let n = self.attempts.saturating_sub(1).min(16) as u32;
        let full = rule.backoff.saturating_mul(1 << n).min(rule.max_backoff);
        let jitter = 0.5 + (w.ups.balancer.random() % 1000) as f64 / 2000.0;
        let until = w.env.now + Duration::from_secs_f64(full.as_secs_f64() * jitter);
        self.phase = Phase::Backoff { until };
        Ok(Started::Backoff)
    }

    /// The peer failed before the response head (`why`): try another one if the route
    /// says so (`Cause::Error`, `Cause::Timeout`). Returns whether a retry is under way.
    pub fn retry_after(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        cause: Cause,
        why: &str,
    ) -> bool {
        let Some((u, peer)) = self.conn().map(|c| (c.upstream, c.peer)) else {
            return false;
        };
        if self.head_sent() || may_retry(w, self, trip, cause).is_err() {
            return false;
        }
        let cfg = w.env.cfg.clone();
        log::warn!(
            "{why} (upstream \"{}\" peer {}): retrying{}",
            cfg.upstream[u].name,
            cfg.upstream[u].peers[peer].label(None),
            trip.log
        );
        peer_outcome(w.env, u, peer, Outcome::Failed);
        self.retry(w, owner, trip, cause).is_ok()
    }

    /// The attempt failed with `status` (`why`). A 502 before the head is retried when the
    /// route allows (None: under way). Otherwise the peer is charged and the connection
    /// closed; after the head went out the phase is `Truncated` (what arrived is still
    /// flushed), and the failure goes back for the exchange to log and answer.
    pub fn fail(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        status: u16,
        why: &str,
    ) -> Option<Failure> {
        if status == 502 && self.retry_after(w, owner, trip, Cause::Error, why) {
            return None;
        }
        if let Some(conn) = self.conn() {
            let (u, peer) = (conn.upstream, conn.peer);
            peer_outcome(w.env, u, peer, Outcome::Failed);
        }
        if self.head_sent() {
            self.drop_conn(Phase::Truncated, w);
        } else {
            self.drop_conn(Phase::Off, w);
            if let Some(b) = self.resp.take() {
                w.env.bufs.put(b);
            }
        }
        Some(Failure::new(status, why))
    }

    /// Waiting for a retry's backoff: whether it is over.
    pub fn backoff_over(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Backoff { until } if until <= now)
    }
}
