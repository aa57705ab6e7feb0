//! Layer 7: lifecycle events. Each exchange reports what happened to it (routed, upstream
//! connected, response head, done with bytes and timings) through `Ctx::emit`; the access
//! log, and later metrics and tracing, are sinks of these events rather than code sprinkled
//! through the session.

use super::access_log::Line;
use super::exchange::Exchange;
use super::transport::PeerIp;
use super::transport::Transport;
use super::Ctx;
use crate::config::Config;
use crate::http::request::RequestHead;
use crate::shm::Hist;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

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

/// The client connection an event happened on.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    /// Its serial number in the worker (`$connection`).
    pub id: u64,
    /// Requests it has carried so far, this one included.
    pub requests: u64,
    pub client: &'a PeerIp,
    pub transport: &'a Transport,
}

pub struct Done<'a> {
    pub conn: Conn<'a>,
    /// None for a request refused before it could be parsed.
    pub x: Option<&'a Exchange>,
    /// The server whose access logs get the line.
    pub server: usize,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// All bytes sent to the client.
    pub sent: u64,
}

impl<'a> Done<'a> {
    /// The end of an exchange, with `status` (which may differ from what the exchange
    /// recorded: 499 for a client gone, 101 for a tunnel).
    pub fn of(x: &'a Exchange, conn: Conn<'a>, status: u16) -> Done<'a> {
        Done {
            conn,
            x: Some(x),
            server: x.server,
            status,
            bytes: x.bytes_sent,
            sent: x.record.wire,
        }
    }
}

/// The end of an error-log line about a request, in nginx's form (`, client: ...,
/// server: ..., request: "..."`), plus the upstream, the peer being tried and the request
/// id, so that a line can be matched with the access log's. Made of the exchange's parts,
/// so that it can be built while its upstream driver is borrowed.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub client: &'a PeerIp,
    /// None before a request could be parsed (the rest is then not shown).
    pub req: Option<&'a RequestHead>,
    pub server: usize,
    pub upstream: Option<usize>,
    /// The peer of the current try.
    pub peer: Option<SocketAddr>,
    pub request_id: &'a str,
}

impl<'a> Context<'a> {
    pub fn of(cfg: &'a Config, client: &'a PeerIp, x: &'a Exchange) -> Context<'a> {
        Context {
            cfg,
            client,
            req: Some(&x.req),
            server: x.server,
            upstream: x.upstream,
            peer: x.record.attempts.last().and_then(|a| a.addr),
            request_id: x.request_id.as_str(),
        }
    }
}

impl std::fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, ", client: {}", self.client)?;
        let Some(req) = self.req else { return Ok(()) };
        let text = |b: &[u8]| {
            let mut v = Vec::new();
            crate::log_format::text_escape(&mut v, b);
            String::from_utf8(v).unwrap_or_default()
        };
        if let Some(name) = self.cfg.server[self.server].server_name.first() {
            write!(f, ", server: {name}")?;
        }
        write!(
            f,
            ", request: \"{} {} HTTP/1.{}\"",
            text(req.method.as_bytes()),
            text(req.uri.as_bytes()),
            req.minor
        )?;
        if let Some(u) = self.upstream.and_then(|u| self.cfg.upstream.get(u)) {
            write!(f, ", upstream: \"{}\"", u.name)?;
            if let Some(addr) = self.peer {
                write!(f, ", peer: {addr}")?;
            }
        }
        if let Some(h) = req.host_name() {
            write!(f, ", host: \"{}\"", text(h.as_bytes()))?;
        }
        if !self.request_id.is_empty() {
            write!(f, ", request_id: {}", self.request_id)?;
        }
        Ok(())
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
            self.metrics_sink(&d);
            if let Some(e) = &mut self.exporter {
                e.add(&d, &self.cfg, self.now);
                if e.full() {
                    e.flush(&self.registry, self.now);
                }
            }
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

    /// Counts the request in shared memory: its server and route (status class, duration,
    /// bytes), and each try of its upstream and peer (status, connect, header and response
    /// times).
    fn metrics_sink(&self, d: &Done) {
        let (cfg, b) = (&self.cfg, self.shared);
        let srv = &cfg.server[d.server];
        let took = d.x.map_or(Duration::ZERO, |x| {
            self.now.saturating_duration_since(x.timings.started)
        });
        let received = d.x.map_or(0, |x| x.req.head_len as u64 + x.body_read);
        let route = d.x.and_then(|x| srv.route.get(x.route?));
        for slot in std::iter::once(srv.slot).chain(route.map(|r| r.slot)) {
            b.status(slot, d.status);
            b.observe(slot, Hist::Request, took);
            b.bytes(slot, received, d.sent);
        }
        let stats = b.stats();
        stats
            .requests
            .store(stats.requests.load(Relaxed) + 1, Relaxed);
        let Some((x, u)) = d.x.and_then(|x| Some((x, cfg.upstream.get(x.upstream?)?))) else {
            return;
        };
        for a in &x.record.attempts {
            let peer = u.peers.get(a.peer).map(|p| p.slot);
            for slot in std::iter::once(u.slot).chain(peer) {
                b.status(slot, a.status);
                if let Some(t) = a.connected {
                    b.observe(slot, Hist::Connect, t.saturating_duration_since(a.started));
                }
                if let Some(t) = a.header {
                    b.observe(slot, Hist::Header, t.saturating_duration_since(a.started));
                }
                let end = a.ended.unwrap_or(self.now);
                b.observe(
                    slot,
                    Hist::Response,
                    end.saturating_duration_since(a.started),
                );
            }
        }
    }

    fn access_log_sink(&mut self, d: &Done) {
        let cfg = &self.cfg;
        let logs = &cfg.server[d.server].access_log;
        if logs.is_empty() {
            return;
        }
        let line = Line {
            cfg,
            d,
            clock: &self.clock,
            now: self.now,
        };
        for l in logs {
            self.access
                .write(l.target, &cfg.log_formats.formats[l.format], &line);
        }
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
                d.conn.client,
                d.status,
                d.bytes,
                d.x.map_or(Duration::ZERO, |x| since(x.timings.started))
            ),
        }
    }
}
