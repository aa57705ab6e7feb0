//! What a proxied exchange waits for, and so when it times out: one answer from the
//! upstream side (backoff, connect, head, body) and the client side the session describes
//! (a body still to read, a socket that does not take the response). A deadline moves only
//! when what it waits for moves: a client sending pipelined bytes does not keep a stalled
//! upstream's exchange alive, nor a client that never reads its response.

use super::Exchange;
use crate::config::Config;
use crate::worker::upstream::Phase;
use std::time::Instant;

/// The client side of a proxied exchange, as its session sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientSide {
    /// Framed request body bytes wait for the upstream.
    pub body_left: bool,
    /// Nothing to read from the client and nothing of it buffered.
    pub quiet: bool,
    /// Response bytes wait for the client's socket.
    pub full: bool,
}

/// What the exchange waits for now, first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A retry's backoff, until then (then the next step connects).
    Backoff(Instant),
    /// No connection: the upstream failed and what it sent is being flushed (`send_timeout`).
    Gone,
    /// The TCP connect or TLS handshake, by then (`connect_timeout` from the connect's
    /// start); None: the first try starts at the next step.
    Connecting(Option<Instant>),
    /// The request body from a client that sends nothing (`client_body_timeout`).
    ClientBody,
    /// The upstream's socket, full while request bytes wait (`send_timeout`).
    UpstreamFull,
    /// The client's socket, full while response bytes wait (the server's `send_timeout`).
    ClientFull,
    /// The final response head: by then once the request is all sent, else `read_timeout`
    /// from now.
    Head(Option<Instant>),
    /// The response body (`read_timeout`, at least the server's `send_timeout`).
    Body,
}

/// The deadline set for the wait in progress, and how far that wait had got then.
#[derive(Debug, Clone, Copy)]
pub struct Armed {
    wait: Wait,
    progress: u64,
    at: Instant,
}

impl Exchange {
    /// What the exchange waits for, given the client side.
    pub fn wait(&self, c: ClientSide) -> Wait {
        let d = &self.driver;
        if let Some(until) = d.backoff_until() {
            return Wait::Backoff(until);
        }
        if matches!(d.phase, Phase::Ready) {
            return Wait::Connecting(None);
        }
        if let Some(by) = d.connect_deadline() {
            return Wait::Connecting(Some(by));
        }
        if d.conn().is_none() {
            return Wait::Gone;
        }
        if d.connected() && d.head_written() && !self.req_body.is_done() && c.quiet {
            return Wait::ClientBody;
        }
        if d.send_stalled(c.body_left) {
            return Wait::UpstreamFull;
        }
        if c.full {
            return Wait::ClientFull;
        }
        if d.head_sent() {
            Wait::Body
        } else {
            Wait::Head(d.head_deadline())
        }
    }

    /// How far what `wait` waits for has got: the bytes whose movement is progress for it.
    fn progress(&self, wait: Wait) -> u64 {
        let request_out = self.driver.head_pos as u64 + self.driver.body_sent;
        match wait {
            Wait::Body => {
                let received = self.record.attempts.last().map_or(0, |a| a.received);
                received + self.bytes_sent
            }
            Wait::ClientFull | Wait::Gone => self.record.wire,
            Wait::UpstreamFull | Wait::Head(None) => request_out,
            Wait::ClientBody => self.body_read,
            // Fixed deadlines.
            Wait::Backoff(_) | Wait::Connecting(_) | Wait::Head(Some(_)) => 0,
        }
    }

    /// When the exchange times out if what it waits for does not move before: the deadline
    /// last set, while the wait is the same and has not moved; else one from now.
    pub fn deadline(&mut self, cfg: &Config, now: Instant, c: ClientSide) -> Instant {
        let wait = self.wait(c);
        let progress = self.progress(wait);
        if let Some(a) = self.armed {
            if a.wait == wait && a.progress == progress {
                return a.at;
            }
        }
        let srv = &cfg.server[self.server];
        let (connect_timeout, send_timeout, read_timeout) = self
            .upstream()
            .and_then(|u| cfg.upstream.get(u))
            .map_or(Default::default(), |u| {
                (u.connect_timeout, u.send_timeout, u.read_timeout)
            });
        let at = match wait {
            Wait::Backoff(until) => until,
            Wait::Gone | Wait::ClientFull => now + srv.send_timeout,
            Wait::Connecting(Some(by)) => by,
            Wait::Connecting(None) => now + connect_timeout,
            Wait::ClientBody => now + srv.client_body_timeout,
            Wait::UpstreamFull => now + send_timeout,
            Wait::Head(Some(by)) => by,
            Wait::Head(None) => now + read_timeout,
            Wait::Body => now + read_timeout.max(srv.send_timeout),
        };
        self.armed = Some(Armed { wait, progress, at });
        at
    }
}
