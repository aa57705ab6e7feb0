//! Layer 8: lifecycle events. Each exchange reports what happened to it (routed, upstream
//! connected, response head, done with bytes and timings) through `Ctx::emit`; the access
//! log, and later metrics and tracing, are sinks of these events rather than code sprinkled
//! through the session.

use super::access_log::Entry;
use super::exchange::Exchange;
use super::Ctx;
use crate::http::request::RequestHead;
use std::time::{Duration, Instant};

/// When an exchange reached each point of its life.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub started: Instant,
    pub upstream_connected: Option<Instant>,
    pub response_head: Option<Instant>,
}

impl Timings {
    pub fn new(now: Instant) -> Timings {
        Timings {
            started: now,
            upstream_connected: None,
            response_head: None,
        }
    }
}

pub enum Event<'a> {
    /// A request head was parsed and matched a route (or none).
    Routed { x: &'a Exchange, client_ip: &'a str },
    /// A connection to a peer is ready for the exchange.
    UpstreamConnected {
        x: &'a Exchange,
        peer: &'a str,
        reused: bool,
    },
    /// The final response head went to the client.
    ResponseHead { x: &'a Exchange },
    /// The exchange ended: answered, cut short, tunnel closed, or refused before a request
    /// could be parsed (`req` is then None).
    Done(Done<'a>),
}

pub struct Done<'a> {
    pub req: Option<&'a RequestHead>,
    /// The server whose access log gets the line.
    pub server: usize,
    pub client_ip: &'a str,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    pub timings: Option<Timings>,
}

impl<'a> Done<'a> {
    /// The end of an exchange, with `status` (which may differ from what the exchange
    /// recorded: 499 for a client gone, 101 for a tunnel).
    pub fn of(x: &'a Exchange, client_ip: &'a str, status: u16) -> Done<'a> {
        Done {
            req: Some(&x.req),
            server: x.server,
            client_ip,
            status,
            bytes: x.bytes_sent,
            timings: Some(x.timings),
        }
    }
}

#[cfg(feature = "alloc-count")]
const ALLOC_WARMUP: u64 = 1000;

impl Ctx {
    /// Hands an event to every sink.
    pub fn emit(&mut self, ev: Event) {
        self.trace_sink(&ev);
        if let Event::Done(d) = ev {
            self.access_log_sink(&d);
            self.requests += 1;
            #[cfg(feature = "alloc-count")]
            if self.requests == ALLOC_WARMUP {
                self.alloc_mark = crate::alloc_count::allocations();
            }
        }
    }

    /// With the `alloc-count` feature: heap allocations per request after the first
    /// ALLOC_WARMUP (pools and buffers filled), logged when the worker exits.
    pub fn log_allocations(&self) {
        #[cfg(feature = "alloc-count")]
        if self.requests > ALLOC_WARMUP {
            let n = crate::alloc_count::allocations() - self.alloc_mark;
            let per = n as f64 / (self.requests - ALLOC_WARMUP) as f64;
            log::warn!(
                "heap allocations: {n} in {} requests after the first {ALLOC_WARMUP}: {per:.3} per request",
                self.requests - ALLOC_WARMUP
            );
        }
    }

    fn access_log_sink(&mut self, d: &Done) {
        let Some(idx) = self.cfg.server[d.server].access_log else {
            return;
        };
        let entry = Entry {
            ip: d.client_ip,
            time: &self.clock.log_time,
            request: d.req.map(|r| (r.method.as_str(), r.uri.as_str(), r.minor)),
            status: d.status,
            bytes: d.bytes,
            referer: d.req.and_then(|r| r.referer.as_deref()),
            user_agent: d.req.and_then(|r| r.user_agent.as_deref()),
        };
        self.access.write(idx, &entry);
    }

    /// Every event at trace level in the error log (off unless `level = "trace"`).
    fn trace_sink(&self, ev: &Event) {
        if !log::log_enabled!(log::Level::Trace) {
            return;
        }
        let since = |t: Instant| self.now.saturating_duration_since(t);
        match ev {
            Event::Routed { x, client_ip } => log::trace!(
                "client {client_ip}: \"{} {}\" routed to server {} route {:?}",
                x.req.method,
                x.req.uri,
                x.server,
                x.route
            ),
            Event::UpstreamConnected { x, peer, reused } => log::trace!(
                "\"{} {}\": upstream {peer} connected (reused: {reused}) after {:?}",
                x.req.method,
                x.req.uri,
                since(x.timings.started)
            ),
            Event::ResponseHead { x } => log::trace!(
                "\"{} {}\": response {} head after {:?}",
                x.req.method,
                x.req.uri,
                x.status,
                since(x.timings.started)
            ),
            Event::Done(d) => log::trace!(
                "client {}: done {} with {} bytes in {:?}",
                d.client_ip,
                d.status,
                d.bytes,
                d.timings.map_or(Duration::ZERO, |t| since(t.started))
            ),
        }
    }
}
