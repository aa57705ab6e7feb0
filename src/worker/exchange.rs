//! Layer 4: one request/response exchange, as an HTTP/1 session (and later an HTTP/2
//! stream) carries it. Its two halves overlap in HTTP/1.1 (an upstream may answer, say 413,
//! before the request body is all sent), so each half has its own state enum rather than
//! one line of phases or a set of flags.

use super::events::Timings;
use super::record::Record;
use super::upstream::Splice;
use crate::config::Config;
use crate::http::body::Framer;
use crate::http::filters::Filter;
use crate::http::request::RequestHead;
use crate::http::request_id::RequestId;
use crate::http::trace::Trace;
use std::time::Instant;

/// The request half, toward the upstream (named so as not to shadow the `Send` trait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Head, then body, as the client delivers it (done when both are out).
    Sending,
    /// Writing to the upstream failed; its response may still come.
    Failed,
}

/// The response half, toward the client.
#[derive(Debug)]
pub enum Recv {
    /// Waiting for the final head. `interim` 1xx heads passed on so far (bounded), `seen`
    /// whether any byte came back (a stale pooled connection sends none), and `by` the
    /// deadline for the whole head, set once the request is sent so a head trickled a byte
    /// at a time cannot push it back.
    Head {
        interim: u32,
        seen: bool,
        by: Option<Instant>,
    },
    /// The head went to the client; the body streams.
    Body(RespState),
    /// The upstream failed after the head went out: flush what arrived, then cut the client
    /// (nothing else can tell it the body is short).
    Truncated,
}

#[derive(Debug)]
pub struct RespState {
    pub body: Framer,
    /// Strip chunked framing (HTTP/1.0 client).
    pub decode: bool,
    /// The upstream connection may carry another request afterwards (so far).
    pub reusable: bool,
    /// The body moves through a pipe instead of the buffer (see `upstream/splice.rs`).
    pub splice: Option<Splice>,
}

/// The request in progress and what the access log needs about it.
pub struct Exchange {
    pub req: RequestHead,
    pub server: usize,
    /// The route it matched (index among the server's routes).
    pub route: Option<usize>,
    /// Index of the upstream; None for a response made here.
    pub upstream: Option<usize>,
    /// The client connection may stay open after this exchange (so far).
    pub keep_alive: bool,
    /// The head sent upstream, and how much of it went out on the current connection.
    pub up_head: Vec<u8>,
    pub up_head_pos: usize,
    /// Framing of the request body, advanced as its bytes are forwarded.
    pub req_body: Framer,
    /// Request body payload bytes read from the client (for `client_max_body_size`).
    pub body_read: u64,
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
    /// A retry waits for its backoff until then (no upstream connection meanwhile).
    pub retry_at: Option<Instant>,
    pub send: Upload,
    pub recv: Recv,
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
}

impl Exchange {
    /// An exchange with nothing in it yet, to parse a request into (see `spare`).
    pub fn blank(now: Instant) -> Exchange {
        Exchange {
            req: RequestHead::default(),
            server: 0,
            route: None,
            upstream: None,
            keep_alive: false,
            up_head: Vec::new(),
            up_head_pos: 0,
            req_body: Framer::Done,
            body_read: 0,
            body_sent: 0,
            tried: Vec::new(),
            attempts: 0,
            stale_replays: 0,
            hash: None,
            retry_at: None,
            send: Upload::Sending,
            recv: Recv::Head {
                interim: 0,
                seen: false,
                by: None,
            },
            status: 0,
            bytes_sent: 0,
            close_after: false,
            timings: Timings::new(now),
            request_id: RequestId::default(),
            trace: Trace::None,
            span_id: None,
            record: Record::default(),
        }
    }

    /// Readies an exchange (new or recycled) for the request just parsed into `req`;
    /// everything else starts over, keeping only the memory of `up_head` and `tried`.
    pub fn start(&mut self, server: usize, keep_alive: bool, now: Instant) {
        self.req_body = self.req.body.clone();
        self.server = server;
        self.route = None;
        self.upstream = None;
        self.keep_alive = keep_alive;
        self.up_head.clear();
        self.up_head_pos = 0;
        self.body_read = 0;
        self.body_sent = 0;
        self.tried.clear();
        self.attempts = 0;
        self.stale_replays = 0;
        self.hash = None;
        self.retry_at = None;
        self.send = Upload::Sending;
        self.recv = Recv::Head {
            interim: 0,
            seen: false,
            by: None,
        };
        self.status = 0;
        self.bytes_sent = 0;
        self.close_after = false;
        self.timings = Timings::new(now);
        self.request_id = RequestId::default();
        self.trace = Trace::None;
        self.span_id = None;
        self.record.clear();
    }

    /// Heap bytes it would keep if recycled.
    pub fn kept_bytes(&self) -> usize {
        let r = &self.req;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        self.up_head.capacity()
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

    /// The route's filter chain.
    pub fn filters<'a>(&self, cfg: &'a Config) -> &'a [Filter] {
        self.route
            .and_then(|r| cfg.server[self.server].route.get(r))
            .map_or(&[], |r| &r.filters)
    }

    /// The final response head has gone to the client (an error page can no longer).
    pub fn head_sent(&self) -> bool {
        !matches!(self.recv, Recv::Head { .. })
    }

    /// Any byte of a response came back on the current connection.
    pub fn response_seen(&self) -> bool {
        !matches!(self.recv, Recv::Head { seen: false, .. })
    }
}
