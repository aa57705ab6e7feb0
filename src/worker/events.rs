//! Layer 7: lifecycle events. Each exchange reports what happened to it (routed, upstream
//! connected, response head, done with bytes and timings) through `Ctx::emit` into `Sinks` (`sinks.rs`)
//! as a view of its parts (`Facts`); the access log, metrics, span export and the trace log
//! are sinks of these events rather than code sprinkled
//! through the session.

use super::record::Record;
use super::transport::PeerIp;
use super::transport::Transport;
use crate::config::Config;
use crate::http::request::RequestHead;
use crate::http::request_id::RequestId;
use crate::http::trace::Trace;
use std::net::SocketAddr;
use std::time::Instant;

/// What the sinks may know of an exchange: a view of its parts (so this module, and the
/// sinks, need not know the exchange itself).
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    pub req: &'a RequestHead,
    pub record: &'a Record,
    /// When its request head was parsed.
    pub started: Instant,
    pub server: usize,
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub request_id: &'a RequestId,
    pub trace: Trace,
    pub span_id: Option<[u8; 8]>,
    /// Request body payload bytes read from the client.
    pub body_read: u64,
    /// The status sent (0: none yet).
    pub status: u16,
    /// Body bytes written to the client.
    pub bytes_sent: u64,
}

pub enum Event<'a> {
    /// A request head was parsed and matched a route (or none).
    Routed { x: Facts<'a>, client_ip: &'a str },
    /// A connection to a peer is ready for the exchange.
    UpstreamConnected {
        x: Facts<'a>,
        peer: &'a str,
        reused: bool,
    },
    /// The final response head went to the client.
    ResponseHead { x: Facts<'a> },
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
    pub x: Option<Facts<'a>>,
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
    pub fn of(x: Facts<'a>, conn: Conn<'a>, status: u16) -> Done<'a> {
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
    pub fn of(cfg: &'a Config, client: &'a PeerIp, x: Facts<'a>) -> Context<'a> {
        Context {
            cfg,
            client,
            req: Some(x.req),
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
