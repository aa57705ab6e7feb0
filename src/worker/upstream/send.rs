//! The request half: the head the exchange wrote, then the body bytes its session framed,
//! out to the peer in one system call when both wait.

use super::{Cx, Driver, Failure, Owner, Phase, Started, Trip, Upload};
use crate::worker::buffer::Buf;
use crate::worker::transport::would_block;

/// What a step of the request half came to, for the exchange.
#[derive(Debug)]
pub enum Advance {
    /// No connection to send on yet (connecting, or waiting out a backoff); whether
    /// anything moved (a connect began).
    Waiting(bool),
    /// Connected; whether bytes moved.
    Sent(bool),
    /// A connection became ready this step (the exchange reports it): taken from the pool
    /// (`reused`) or its connect completed. What could be sent on it went.
    Connected { reused: bool },
    /// The attempt failed for good (retries were considered).
    Failed(Failure),
}

impl Driver {
    /// The request half of one round, in order: the first try, or a retry whose backoff is
    /// over, connects (to the pool first), a connect that completed or failed is seen, then the head and the
    /// framed `body` bytes go out, and once all of the request is out the response head's
    /// deadline starts.
    pub fn advance(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        body: Option<&mut Buf>,
    ) -> Advance {
        let mut fresh = None;
        let start = matches!(self.phase, Phase::Ready) || self.backoff_over(w.env.now);
        let started = if start {
            Some(self.connect(w, owner, trip))
        } else {
            match self.poll_connect(w, trip) {
                Ok(true) => {
                    fresh = Some(false);
                    None
                }
                Ok(false) => None,
                Err(why) => Some(self.connect_failed(w, owner, trip, &why, false)),
            }
        };
        match started {
            Some(Ok(Started::Pooled)) => fresh = Some(true),
            Some(Ok(Started::Connecting | Started::Backoff)) => return Advance::Waiting(true),
            Some(Err(f)) => return Advance::Failed(f),
            None => {}
        }
        if !self.connected() {
            return Advance::Waiting(false);
        }
        let body_left = |b: &Option<&mut Buf>| b.as_ref().is_some_and(|b| !b.pending().is_empty());
        let mut body = body;
        let moved = self.send(body.as_deref_mut());
        // Only while sending: afterwards the head's deadline is set already.
        if matches!(self.phase, Phase::Sending { .. }) && trip.body_done && !body_left(&body) {
            let read_timeout = self
                .upstream
                .and_then(|u| w.env.cfg.upstream.get(u))
                .map_or(Default::default(), |u| u.read_timeout);
            self.request_sent(w.env.now, read_timeout);
        }
        match fresh {
            Some(reused) => Advance::Connected { reused },
            None => Advance::Sent(moved),
        }
    }

    /// Writes what of the request can go now: the rest of the head, then `body`'s framed
    /// bytes (consumed as they are written). Returns whether anything moved; a write error
    /// marks the upload failed (the response may still come).
    pub fn send(&mut self, body: Option<&mut Buf>) -> bool {
        if self.upload == Upload::Failed {
            return false;
        }
        let conn = match &mut self.phase {
            Phase::Sending { conn, .. }
            | Phase::AwaitingHead { conn, .. }
            | Phase::Body { conn, .. }
            | Phase::Splicing { conn, .. } => conn,
            _ => return false,
        };
        let mut moved = false;
        // TLS records taken earlier and still waiting for the socket.
        if conn.stream.pending() && conn.stream.ready.w {
            match conn.stream.flush() {
                Ok(()) => moved = true,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    self.upload = Upload::Failed;
                    return true;
                }
            }
        }
        let head = &self.head[self.head_pos..];
        let pending = body.as_ref().map_or(&[][..], |b| b.pending());
        if (head.is_empty() && pending.is_empty()) || !conn.stream.ready.w {
            return moved;
        }
        match conn.stream.write_pair(head, pending, false) {
            Ok(n) => {
                let from_head = n.min(head.len());
                self.head_pos += from_head;
                if let Some(b) = body {
                    b.consume(n - from_head);
                }
                self.body_sent += (n - from_head) as u64;
                true
            }
            Err(e) if would_block(&e) => moved,
            Err(_) => {
                self.upload = Upload::Failed;
                true
            }
        }
    }

    /// Whether the peer could take more of the request but cannot now (its socket is full)
    /// while some of it waits: `send_timeout` applies.
    pub fn send_stalled(&self, body_waiting: bool) -> bool {
        let waiting = !self.head_written() || body_waiting;
        self.conn().is_some_and(|c| !c.stream.ready.w) && waiting
    }

    /// The request head went out and the body (framed to its end by the session) too: the
    /// response head's deadline starts (`AwaitingHead`).
    pub fn request_sent(&mut self, now: std::time::Instant, read_timeout: std::time::Duration) {
        if !self.head_written() {
            return;
        }
        if let Phase::Sending { .. } = self.phase {
            let Phase::Sending { conn, head } = std::mem::take(&mut self.phase) else {
                return;
            };
            self.phase = Phase::AwaitingHead {
                conn,
                head,
                by: now + read_timeout,
            };
        }
    }
}
