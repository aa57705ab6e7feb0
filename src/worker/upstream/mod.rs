//! Layer 6: the upstream driver. One `Driver` per exchange (one per HTTP/1 request, one per
//! HTTP/2 stream later), in nginx's lifecycle order: balance -> pool take or connect -> send
//! the request -> read the response head -> stream the response -> release (the one
//! `Upstreams::release` checklist). Retries (an idempotent request, or one of which no byte went
//! out) go to another peer from here.
//!
//! The driver owns its connection, its response buffer, its retry state and its splice pipe.
//! It is fed request bytes (the head it was given, then body bytes the session framed) and
//! gives back what the response brought: heads (`Read::Head`) and body bytes framed in its
//! buffer (or waiting in its pipe) for the session to write. It never touches the client
//! socket and never calls into the session: the exchange (`exchange/proxy.rs`) decides what
//! each outcome means for the client.
//!
//! What the drivers of a worker share is `Upstreams` (balancer, idle pool, who holds each
//! connection, spare pipes). An upstream socket's token names its slot in
//! `Upstreams::upconns`, whose entry says who holds it now (`Owner`): an exchange of a
//! session, or the idle pool. The driver is given `Cx`: that and the worker's `Env`.

mod balancer;
mod conn;
mod connect;
mod outlier;
mod pool;
mod recv;
mod retry;
mod send;
mod splice;

pub use balancer::{Balancer, Pick};
pub use conn::{Active, UpConn};
pub use connect::Started;
pub(crate) use outlier::{peer_outcome, Outcome};
pub use pool::{IdleConn, Owner, Pool};
pub use recv::{Read, MAX_INTERIM};
pub use retry::{may_retry, Cause};
pub use send::Advance;
pub use splice::{Pipes, Splice};

use super::buffer::Buf;
use super::env::Env;
use super::output::Output;
use super::record::Record;
use super::token::{key, Kind};
use super::transport::Unread;
use crate::http::body::Framer;
use crate::http::request::RequestHead;
use slab::Slab;
use std::time::Instant;

/// What the upstream drivers of a worker share.
pub struct Upstreams {
    pub balancer: Balancer,
    /// Idle connections kept for reuse.
    pub pool: Pool,
    /// Who holds each upstream connection (indexed by the connection's token slot).
    pub upconns: Slab<Owner>,
    /// Pipes for splicing large bodies.
    pub pipes: Pipes,
}

/// What a driver works with besides itself: the worker's environment and the upstreams it
/// shares with the other drivers.
pub struct Cx<'a> {
    pub env: &'a mut Env,
    pub ups: &'a mut Upstreams,
}

/// Stale pooled connections a request may meet in a row before it connects afresh.
const STALE_REPLAYS: usize = 8;

/// Where an exchange's upstream attempt stands. Each phase holds what it needs: there is
/// a connection exactly when a phase names one.
#[derive(Default)]
pub enum Phase {
    /// No attempt: not started, over, or the response is made here.
    #[default]
    Off,
    /// Routed here with its head written: the first try begins at the exchange's next
    /// step.
    Ready,
    /// A retry waits out its backoff (no connection meanwhile).
    Backoff { until: Instant },
    /// The TCP connect is under way; it (and a TLS handshake after it) must be done by
    /// `by` (`connect_timeout` from its start: nothing the client does moves it).
    Connecting { conn: UpConn, by: Instant },
    /// Connected: the request goes out (a TLS handshake first). The response may begin
    /// before the request is all sent (an early 413): it is read all the same.
    Sending { conn: UpConn, head: HeadWait },
    /// The request is all sent; the final response head must come by `by`: a deadline for
    /// the whole head, so a head trickled a byte at a time cannot push it back.
    AwaitingHead {
        conn: UpConn,
        head: HeadWait,
        by: Instant,
    },
    /// The final head went to the client; the body streams through the buffer.
    Body { conn: UpConn, body: BodyState },
    /// A long Content-Length body moving socket to pipe to socket (`splice.rs`).
    Splicing {
        conn: UpConn,
        splice: Splice,
        /// Body bytes still to come from the peer.
        left: u64,
        reusable: bool,
    },
    /// The peer failed after the head went out: what arrived is flushed, then the client
    /// is cut (nothing else can tell it the body is short).
    Truncated,
    /// The peer answered 101: the connection waits to be handed to a tunnel.
    Switched { conn: UpConn },
}

/// What is known while the final response head is awaited.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadWait {
    /// Interim 1xx heads passed on so far (bounded by MAX_INTERIM).
    pub interim: u32,
    /// Any byte came back on this connection (a stale pooled connection sends none).
    pub seen: bool,
    /// A new connection's TLS handshake must be done by then (its connect's deadline).
    pub handshake_by: Option<Instant>,
}

/// A response body streaming through the buffer.
#[derive(Debug)]
pub struct BodyState {
    pub framer: Framer,
    /// Strip chunked framing (an HTTP/1.0 client).
    pub decode: bool,
    /// The connection may carry another request afterwards (so far).
    pub reusable: bool,
}

/// The request half: head and body bytes toward the peer. Its end overlaps the response in
/// HTTP/1.1, so it is not a phase of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Head, then body, as the client delivers it.
    Sending,
    /// Writing to the peer failed; its response may still come.
    Failed,
}

/// What the driver borrows of its exchange for one call.
pub struct Trip<'a> {
    /// The request (whether it may be replayed, whether it has a body).
    pub req: &'a RequestHead,
    /// The tries, for the access log.
    pub record: &'a mut Record,
    /// The route's retry rule; None for an exchange without a route (never retried).
    pub rule: Option<&'a crate::config::Retry>,
    /// The request body's framing reached its end (so the request, once written, is whole).
    pub body_done: bool,
    /// The end of an error-log line about this request (`events::Context`).
    pub log: &'a dyn std::fmt::Display,
}

/// An attempt that ended without an answer for the client: the status it gets (unless the
/// head already went out: then `Phase::Truncated`) and why, for the error log. Retries
/// were considered before this is returned.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub why: String,
}

impl Failure {
    pub fn new(status: u16, why: impl Into<String>) -> Failure {
        Failure {
            status,
            why: why.into(),
        }
    }
}

/// One exchange's upstream attempt(s), recycled with its exchange (its vectors keep their
/// memory, so a keep-alive request allocates nothing).
pub struct Driver {
    pub phase: Phase,
    /// Index of the upstream; None for an exchange answered here.
    pub upstream: Option<usize>,
    /// Response bytes from the peer: the head, then body bytes framed for the client
    /// (`pending()`). Taken from the pool only while the peer has something to say.
    pub resp: Option<Buf>,
    /// The head sent upstream, and how much of it went out on the current connection.
    pub head: Vec<u8>,
    pub head_pos: usize,
    pub upload: Upload,
    /// Request body bytes written upstream; nonzero makes a retry impossible.
    pub body_sent: u64,
    /// Peers tried for this request, and tries in all (what a route's `tries` bounds).
    pub tried: Vec<usize>,
    pub attempts: usize,
    /// Requests replayed after a stale pooled connection closed with nothing back: not
    /// tries (they say nothing about the peer), but bounded all the same.
    pub stale_replays: usize,
    /// What the upstream's `ip_hash` or `hash` balancer hashes, for this request.
    pub hash: Option<u64>,
}

impl Default for Driver {
    fn default() -> Driver {
        Driver {
            phase: Phase::Off,
            upstream: None,
            resp: None,
            head: Vec::new(),
            head_pos: 0,
            upload: Upload::Sending,
            body_sent: 0,
            tried: Vec::new(),
            attempts: 0,
            stale_replays: 0,
            hash: None,
        }
    }
}

impl Driver {
    /// Readies a recycled driver for a new request (memory kept); `upstream` is set when
    /// the request is routed to one.
    pub fn reset(&mut self) {
        debug_assert!(self.conn().is_none() && self.resp.is_none());
        self.phase = Phase::Off;
        self.upstream = None;
        self.head.clear();
        self.head_pos = 0;
        self.upload = Upload::Sending;
        self.body_sent = 0;
        self.tried.clear();
        self.attempts = 0;
        self.stale_replays = 0;
        self.hash = None;
    }

    /// The exchange was routed to `upstream` (its head is written into `head` next): the
    /// first try begins at the next `advance`. `hash`: the key of a hashing balancer.
    pub fn prepare(&mut self, upstream: usize, hash: Option<u64>) {
        self.upstream = Some(upstream);
        self.hash = hash;
        self.phase = Phase::Ready;
    }

    /// The connection the current phase holds.
    pub fn conn(&self) -> Option<&UpConn> {
        match &self.phase {
            Phase::Connecting { conn, .. }
            | Phase::Sending { conn, .. }
            | Phase::AwaitingHead { conn, .. }
            | Phase::Body { conn, .. }
            | Phase::Splicing { conn, .. }
            | Phase::Switched { conn } => Some(conn),
            Phase::Off | Phase::Ready | Phase::Backoff { .. } | Phase::Truncated => None,
        }
    }

    pub fn conn_mut(&mut self) -> Option<&mut UpConn> {
        conn_of(&mut self.phase)
    }

    /// Moves to `next`, handing back the connection the phase held (and closing the
    /// splice pipe it may have held: a pipe with bytes in it cannot be reused).
    pub fn take_conn(&mut self, next: Phase, w: &mut Cx) -> Option<UpConn> {
        match std::mem::replace(&mut self.phase, next) {
            Phase::Connecting { conn, .. }
            | Phase::Sending { conn, .. }
            | Phase::AwaitingHead { conn, .. }
            | Phase::Body { conn, .. }
            | Phase::Switched { conn } => Some(conn),
            Phase::Splicing { conn, splice, .. } => {
                w.ups.pipes.put(splice);
                Some(conn)
            }
            Phase::Off | Phase::Ready | Phase::Backoff { .. } | Phase::Truncated => None,
        }
    }

    /// Closes the connection (never back to the pool) and moves to `next`.
    pub fn drop_conn(&mut self, next: Phase, w: &mut Cx) {
        if let Some(conn) = self.take_conn(next, w) {
            w.ups.upconns.try_remove(conn.conn);
        }
    }

    /// Gives back everything: connection (closed), buffer and pipe. For an exchange that
    /// ends or is cut, before it is recycled. A pipe of a splice cut short is closed, not
    /// kept for the next one: what a worker keeps at rest is what finished splices left.
    pub fn close(&mut self, w: &mut Cx) {
        if matches!(self.phase, Phase::Splicing { .. }) {
            // Dropped with the phase (its pipe closed), the connection leaves the table.
            if let Phase::Splicing { conn, .. } = std::mem::take(&mut self.phase) {
                w.ups.upconns.try_remove(conn.conn);
            }
        }
        self.drop_conn(Phase::Off, w);
        if let Some(b) = self.resp.take() {
            w.env.bufs.put(b);
        }
    }

    /// Readiness from the event loop for the connection it holds.
    pub fn on_event(&mut self, readable: bool, writable: bool, hup: bool) {
        if let Some(conn) = self.conn_mut() {
            conn.stream.ready.on_event(readable, writable, hup);
        }
    }

    /// The final response head has gone to the client (an error page can no longer).
    pub fn head_sent(&self) -> bool {
        matches!(
            self.phase,
            Phase::Body { .. } | Phase::Splicing { .. } | Phase::Truncated | Phase::Switched { .. }
        )
    }

    /// Any byte of a response came back on the current connection.
    pub fn response_seen(&self) -> bool {
        match &self.phase {
            Phase::Sending { head, .. } | Phase::AwaitingHead { head, .. } => head.seen,
            Phase::Off | Phase::Ready | Phase::Backoff { .. } | Phase::Connecting { .. } => false,
            _ => true,
        }
    }

    /// While the TCP connect, or over TLS the handshake, is under way, when it must be
    /// done: `connect_timeout` from the connect's start applies to both (as nginx's does to
    /// its upstream handshake), and failing is failing to connect.
    pub fn connect_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Connecting { by, .. } => Some(*by),
            // The head may be all written (into rustls) while the handshake still runs.
            Phase::Sending { conn, head } | Phase::AwaitingHead { conn, head, .. }
                if conn.stream.handshaking() =>
            {
                head.handshake_by
            }
            _ => None,
        }
    }

    /// The TCP connect, or over TLS the handshake, is under way.
    pub fn establishing(&self) -> bool {
        self.connect_deadline().is_some()
    }

    /// Connected (the TCP connect done; a TLS handshake may still be under way).
    pub fn connected(&self) -> bool {
        self.conn().is_some() && !matches!(self.phase, Phase::Connecting { .. })
    }

    /// When a retry's backoff ends, while it waits.
    pub fn backoff_until(&self) -> Option<Instant> {
        match self.phase {
            Phase::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// The deadline for the final response head, once the request is all sent.
    pub fn head_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingHead { by, .. } => Some(by),
            _ => None,
        }
    }

    /// The whole body has been read into the buffer (none is left with the peer or in a
    /// pipe): once the buffer is written, the response is complete.
    pub fn all_read(&self) -> bool {
        matches!(&self.phase, Phase::Body { body, .. } if body.framer.is_done())
    }

    /// After a 101: the connection and what the peer sent past the head, for a tunnel.
    pub fn take_switched(&mut self, w: &mut Cx) -> Option<(UpConn, Option<Buf>)> {
        if !matches!(self.phase, Phase::Switched { .. }) {
            return None;
        }
        let conn = self.take_conn(Phase::Off, w)?;
        Some((conn, self.resp.take()))
    }

    /// The request head is out (body bytes may still follow).
    pub fn head_written(&self) -> bool {
        self.head_pos == self.head.len()
    }

    /// Response bytes framed for the client and not yet written to it.
    pub fn body_pending(&self) -> &[u8] {
        self.resp.as_ref().map_or(&[], |b| b.pending())
    }

    /// What the response body has for the client now: the framed bytes in the buffer
    /// first, then the splice pipe's.
    pub fn output(&self) -> Output<'_> {
        let pending = self.body_pending();
        if !pending.is_empty() {
            return Output::Bytes {
                data: pending,
                last: self.all_read(),
            };
        }
        match &self.phase {
            Phase::Splicing { splice, .. } if splice.out().1 > 0 => {
                let (fd, len) = splice.out();
                Output::Pipe { fd, len }
            }
            _ if self.response_done() => Output::Done,
            _ => Output::Later,
        }
    }

    /// The client took `n` bytes of what `output` offered.
    pub fn took(&mut self, n: usize) {
        match &mut self.resp {
            Some(b) if !b.pending().is_empty() => b.consume(n),
            _ => {
                if let Some(s) = self.splice() {
                    s.took(n);
                }
            }
        }
    }

    /// An empty response buffer goes back to the pool while the peer is quiet.
    fn drop_empty_resp(&mut self, w: &mut Cx) {
        if self.resp.as_ref().is_some_and(|b| b.is_empty()) {
            if let Some(b) = self.resp.take() {
                w.env.bufs.put(b);
            }
        }
    }

    /// The whole response came and the client has it all (a spliced body included).
    pub fn response_done(&self) -> bool {
        let framed = match &self.phase {
            Phase::Body { body, .. } => body.framer.is_done(),
            Phase::Splicing { splice, left, .. } => *left == 0 && splice.drained(),
            _ => false,
        };
        framed && self.body_pending().is_empty()
    }

    /// The response is complete: the connection goes back to the pool if it may carry
    /// another request (`request_done`: the request went out whole), else it is closed.
    pub fn finish(&mut self, w: &mut Cx, request_done: bool) {
        let reusable = match &self.phase {
            Phase::Body { body, .. } => body.reusable,
            Phase::Splicing { reusable, .. } => *reusable,
            _ => false,
        };
        let clean_buffer = self.resp.as_ref().is_none_or(|b| b.is_empty());
        if let Some(b) = self.resp.take() {
            w.env.bufs.put(b);
        }
        let upload_ok = self.upload == Upload::Sending;
        if let Some(mut conn) = self.take_conn(Phase::Off, w) {
            let reusable = reusable
                && request_done
                && upload_ok
                && !w.env.draining()
                && clean_buffer
                && nothing_unread(&mut conn);
            w.ups.release(w.env, conn, reusable);
        }
    }
}

impl Upstreams {
    pub fn new(groups: &[crate::config::Upstream]) -> Upstreams {
        Upstreams {
            balancer: Balancer::new(groups),
            pool: Pool::new(groups.len()),
            upconns: Slab::new(),
            pipes: Pipes::default(),
        }
    }

    /// Closes an idle pooled connection.
    pub fn drop_idle(&mut self, slot: usize) {
        if let Some(c) = self.pool.remove(slot) {
            self.upconns.try_remove(c.conn);
        }
    }

    /// The one way an upstream connection goes back to the pool (nginx
    /// `ngx_http_upstream_free_keepalive_peer`): only a clean, reusable connection under the
    /// pool and request limits, in a worker that is not draining.
    /// `conn` has just carried one more request; `reusable` is the driver's verdict on it.
    pub(crate) fn release(&mut self, env: &mut Env, conn: UpConn, reusable: bool) {
        let group = &env.cfg.upstream[conn.upstream];
        let requests = conn.requests + 1;
        // A peer given by host name that moved: its old address is on its way out.
        let moved = group.peers[conn.peer].address_version(env.shared.view()) != conn.version;
        if !reusable
            || moved
            || env.draining()
            || group.keepalive == 0
            || requests >= group.keepalive_requests
        {
            self.upconns.try_remove(conn.conn);
            return;
        }
        let (expires, max_idle) = (env.now + group.keepalive_timeout, group.keepalive);
        let id = env.next_id();
        let slot = conn.conn;
        let idle = IdleConn {
            stream: conn.stream,
            conn: slot,
            upstream: conn.upstream,
            peer: conn.peer,
            version: conn.version,
            requests,
            id,
            expires,
        };
        let (idle_slot, evicted) = self.pool.put(idle, max_idle);
        if let Some(old) = evicted {
            self.upconns.try_remove(old.conn);
        }
        self.upconns[slot] = Owner::Idle(idle_slot);
        env.timers.add(expires, key(idle_slot, Kind::Idle), id);
    }
}

/// The connection a phase holds (a free function, so that it borrows the phase alone).
fn conn_of(phase: &mut Phase) -> Option<&mut UpConn> {
    match phase {
        Phase::Connecting { conn, .. }
        | Phase::Sending { conn, .. }
        | Phase::AwaitingHead { conn, .. }
        | Phase::Body { conn, .. }
        | Phase::Splicing { conn, .. }
        | Phase::Switched { conn } => Some(conn),
        Phase::Off | Phase::Ready | Phase::Backoff { .. } | Phase::Truncated => None,
    }
}

/// Whether the kernel holds nothing more from this upstream connection: bytes past the
/// response would otherwise reach the next client of the connection.
fn nothing_unread(conn: &mut UpConn) -> bool {
    match conn.stream.unread() {
        Unread::Nothing => true,
        Unread::Closed => false,
        Unread::Bytes => {
            log::warn!("upstream sent more data than specified; closing it");
            false
        }
    }
}

#[cfg(test)]
mod tests;
