//! Layer 4: one request/response exchange, as an HTTP/1 session (and later an HTTP/2
//! stream) carries it. It owns the request's life: its route, its upstream attempt (the
//! `Driver`), its timings and what the access log records.
//!
//! What a session gives the exchange: a parsed request head (and the raw bytes it came
//! from) to `begin`; then one `step` per round of its drive, with a `Lend`: the request
//! body bytes it framed, where response heads are serialized, whether the client has taken
//! them, whether its socket is plain. What it gets back (`Next`): carry on, answer now with
//! an error status, switch protocols, or cut the client. The response body it pulls with
//! `body_out` (an `Output`: bytes, a pipe, later, done) and acknowledges with `written`;
//! when it must wake up again it asks `deadline`, giving its own side (`ClientSide`).

mod answer;
mod body;
mod ctx;
mod file;
mod proxy;
mod spare;
mod stage;
mod start;
mod wait;

pub use body::Source;
pub use ctx::Ctx;
pub use proxy::{Lend, Next};
pub use spare::Spare;
pub use start::{Arrival, Begin};
pub use wait::{ClientSide, Wait};

use super::events::Facts;
use super::filters::{ClientCert, Cx};
use super::record::Record;
use super::upstream::Driver;
use crate::config::Config;
use crate::http::body::Framer;
use crate::http::request::RequestHead;
use crate::http::request_id::RequestId;
use crate::http::trace::Trace;
use std::time::Instant;

/// When an exchange reached each point of its life (each try's own times are in its
/// `record::Attempt`).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub started: Instant,
}

impl Timings {
    pub fn new(now: Instant) -> Timings {
        Timings { started: now }
    }
}

/// The request in progress and what the access log needs about it.
pub struct Exchange {
    pub req: RequestHead,
    pub server: usize,
    /// The route it matched (index among the server's routes).
    pub route: Option<usize>,
    /// The client connection may stay open after this exchange (so far).
    pub keep_alive: bool,
    /// Framing of the request body, advanced as its bytes are forwarded.
    pub req_body: Framer,
    /// Request body payload bytes read from the client (for `client_max_body_size`).
    pub body_read: u64,
    /// The upstream attempt(s): connection, response buffer, retries.
    pub driver: Driver,
    /// Where the response body comes from.
    pub body: Source,
    /// Transforms between the body's source and the client, when a feature attached them.
    pub stage: Option<Box<stage::Stage>>,
    /// For the access log: status sent and body bytes written to the client.
    pub status: u16,
    pub bytes_sent: u64,
    /// The client connection closes after this response.
    pub close_after: bool,
    pub timings: Timings,
    /// `$request_id`: kept from the request or made here.
    pub request_id: RequestId,
    /// Its W3C trace context.
    pub trace: Trace,
    /// Its own span, when spans are exported: the parent the upstream is told of.
    pub span_id: Option<[u8; 8]>,
    /// What the access log wants beyond the above (tries, captured headers, bytes).
    pub record: Record,
    /// The deadline set for what it waits for (see `wait.rs`).
    pub armed: Option<wait::Armed>,
}

impl Exchange {
    /// An exchange with nothing in it yet, to parse a request into (see `spare`).
    pub fn blank(now: Instant) -> Exchange {
        Exchange {
            req: RequestHead::default(),
            server: 0,
            route: None,
            keep_alive: false,
            req_body: Framer::Done,
            body_read: 0,
            driver: Driver::default(),
            body: Source::None,
            stage: None,
            status: 0,
            bytes_sent: 0,
            close_after: false,
            timings: Timings::new(now),
            request_id: RequestId::default(),
            trace: Trace::None,
            span_id: None,
            record: Record::default(),
            armed: None,
        }
    }

    /// Readies an exchange (new or recycled) for the request just parsed into `req`;
    /// everything else starts over, keeping only the memory of its vectors.
    pub fn start(&mut self, server: usize, keep_alive: bool, now: Instant) {
        self.req_body = self.req.body.clone();
        self.server = server;
        self.route = None;
        self.keep_alive = keep_alive;
        self.body_read = 0;
        self.driver.reset();
        self.body = Source::None;
        self.stage = None;
        self.status = 0;
        self.bytes_sent = 0;
        self.close_after = false;
        self.timings = Timings::new(now);
        self.request_id = RequestId::default();
        self.trace = Trace::None;
        self.span_id = None;
        self.record.clear();
        self.armed = None;
    }

    /// The upstream it was routed to; None for one answered here.
    pub fn upstream(&self) -> Option<usize> {
        self.driver.upstream
    }

    /// What its filters may know: the client (`client_ip`, `proto`, its certificate when
    /// the server verifies them) and what was decided about the request (`rid`: its id).
    pub(super) fn filter_cx<'a>(
        &self,
        w: &Ctx,
        cfg: &'a Config,
        client: (&'a str, &'static str, Option<ClientCert<'a>>),
        rid: &'a RequestId,
    ) -> Cx<'a> {
        let srv = &cfg.server[self.server];
        let (client_ip, proto, client_cert) = client;
        Cx {
            now: w.env.now,
            now_ms: w.env.now_ms,
            shared: Some(w.env.shared),
            client_ip,
            proto,
            client_cert,
            request_id: srv
                .request_id
                .as_ref()
                .map(|h| (h.header.as_str(), rid.as_str())),
            trace: self.trace,
            span: self.span_id,
            underscores: srv.underscores_in_headers,
        }
    }

    /// What the event sinks may know of it.
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            req: &self.req,
            record: &self.record,
            started: self.timings.started,
            server: self.server,
            route: self.route,
            upstream: self.driver.upstream,
            request_id: &self.request_id,
            trace: self.trace,
            span_id: self.span_id,
            body_read: self.body_read,
            status: self.status,
            bytes_sent: self.bytes_sent,
        }
    }

    /// Heap bytes it would keep if recycled.
    pub fn kept_bytes(&self) -> usize {
        let r = &self.req;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        self.driver.head.capacity()
            + self.driver.tried.capacity() * std::mem::size_of::<usize>()
            + self.record.kept_bytes()
            + r.method.capacity()
            + r.uri.capacity()
            + r.route_path.capacity()
            + opt(&r.host)
            + opt(&r.referer)
            + opt(&r.user_agent)
            + opt(&r.upgrade)
            + r.header_capacity()
                * std::mem::size_of::<(
                    std::ops::Range<usize>,
                    std::ops::Range<usize>,
                    crate::http::headers::Kind,
                )>()
    }
}
