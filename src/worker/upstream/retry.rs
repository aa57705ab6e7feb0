//! Retries (a route's `retry`): a request goes to another peer after a connect failure
//! (nothing was sent, so any request may go), and, for a request that may be replayed, after
//! a timeout before the response head or a 502/503/504 head. Bounded three ways: the
//! route's `tries`, each peer at most once, and the upstream's retry budget in shared memory
//! (a share of its requests, node-wide), so retries cannot multiply an outage. A retry that
//! is not a connect failure waits an exponential backoff with jitter first.

use super::super::session::http1::{Close, Http1};
use super::super::Ctx;
use crate::worker::exchange::{Exchange, Recv, Upload};
use std::time::Duration;

/// Why a failed attempt happened, for the retry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Connect,
    /// The connection broke, or the answer was not HTTP, before the response head.
    Error,
    Timeout,
    Status(u16),
}

/// Whether exchange `x` may go to another peer after `cause`; takes the retry from the
/// budget when it may. The reason when it may not.
pub(super) fn may_retry(w: &mut Ctx, x: &Exchange, cause: Cause) -> Result<(), &'static str> {
    let cfg = w.cfg.clone();
    let Some(route) = x.route.and_then(|r| cfg.server[x.server].route.get(r)) else {
        return Err("no route");
    };
    let rule = &route.retry;
    let Some(up) = x.upstream.and_then(|u| cfg.upstream.get(u)) else {
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
            if x.body_sent > 0 || (x.req.has_body && !x.req_body.is_done()) {
                return Err("its body was sent");
            }
            if !x.req.idempotent() && !rule.non_idempotent {
                return Err("not idempotent");
            }
        }
    }
    if rule.tries > 0 && x.attempts >= rule.tries as usize {
        return Err("tries exhausted");
    }
    if x.tried.len() >= up.peers.len() {
        return Err("every peer tried");
    }
    if !w
        .shared
        .view()
        .take_retry(up.slot, rule.budget_percent, w.now_ms)
    {
        log::warn!(
            "retry budget of upstream \"{}\" spent: not retrying",
            up.name
        );
        return Err("retry budget spent");
    }
    w.shared.retry(up.slot);
    Ok(())
}

impl Http1 {
    /// Sends the exchange again (after `may_retry` said yes): at once after a connect
    /// failure, after a backoff otherwise.
    pub(super) fn retry(&mut self, w: &mut Ctx, cause: Cause) -> Result<(), Close> {
        self.drop_upstream(w);
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        let cfg = w.cfg.clone();
        let x = self.x.as_mut().expect("exchange");
        x.up_head_pos = 0;
        x.send = Upload::Sending;
        x.recv = Recv::Head {
            interim: 0,
            seen: false,
            by: None,
        };
        if cause == Cause::Connect {
            return self.connect(w);
        }
        let rule = &cfg.server[x.server].route[x.route.expect("routed")].retry;
        // The n-th retry waits backoff * 2^(n-1), at most max_backoff, times a random 0.5..1.
        let n = x.attempts.saturating_sub(1).min(16) as u32;
        let full = rule.backoff.saturating_mul(1 << n).min(rule.max_backoff);
        let jitter = 0.5 + (w.balancer.random() % 1000) as f64 / 2000.0;
        x.retry_at = Some(w.now + Duration::from_secs_f64(full.as_secs_f64() * jitter));
        self.arm_timer(w);
        Ok(())
    }

    /// The peer failed before the response head (`why`): try another one if the route
    /// says so (`Cause::Error` or `Cause::Timeout`). Returns whether a retry is under way.
    pub(crate) fn retry_after(&mut self, w: &mut Ctx, cause: Cause, why: &str) -> bool {
        let (Some(x), Some(up)) = (&self.x, &self.up) else {
            return false;
        };
        if x.head_sent() || may_retry(w, x, cause).is_err() {
            return false;
        }
        let cfg = w.cfg.clone();
        log::warn!(
            "{why} (upstream \"{}\" peer {}): retrying{}",
            cfg.upstream[up.upstream].name,
            cfg.upstream[up.upstream].peers[up.peer].label(None),
            self.context(&cfg)
        );
        w.peer_outcome(up.upstream, up.peer, super::Outcome::Failed);
        self.retry(w, cause).is_ok()
    }

    /// Waiting for a retry's backoff: connect once it is over.
    pub(super) fn step_backoff(&mut self, w: &mut Ctx) -> Result<bool, Close> {
        let x = self.x.as_mut().expect("exchange");
        match x.retry_at {
            Some(t) if t > w.now => Ok(false),
            Some(_) => {
                x.retry_at = None;
                self.connect(w)?;
                Ok(true)
            }
            None => Err(Close),
        }
    }
}
