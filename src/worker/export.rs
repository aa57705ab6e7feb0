//! Span export (`otlp = { endpoint }`): a sink of `Done` events that turns each traced
//! request into one OTLP span (JSON), batches them, and POSTs a batch to the collector about
//! once a second over its own non-blocking connection in the event loop. The loop never
//! waits on the collector: while a batch is in flight the next one gathers, and when the
//! collector is slow or gone, batches past `MAX_PENDING` are dropped (and counted) rather
//! than growing without bound. An https endpoint gets TLS (rustls, driven by the same
//! readiness events), its certificate verified against `ca` or the system's roots.

use super::events::Done;
use crate::config::logs::Otlp;
use crate::http::hex_string;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Span bytes kept while the collector cannot take them.
const MAX_PENDING: usize = 1024 * 1024;
/// A batch is sent at once past this size, not only on the clock.
const FLUSH_AT: usize = 256 * 1024;
/// The exporter's connection token: kind 3 of slot 0 (see `worker::key`).
pub const TOKEN: Token = Token(super::Kind::Exporter as usize);

enum Phase {
    Idle,
    /// Connecting, then writing `out[written..]`, then reading the answer.
    Sending {
        stream: TcpStream,
        /// For https: the batch went into it whole, and `out` is empty.
        tls: Option<Box<rustls::ClientConnection>>,
        out: Vec<u8>,
        written: usize,
        answer: Vec<u8>,
        since: Instant,
    },
}

pub struct Exporter {
    cfg: Otlp,
    /// Spans of the next batch, comma-separated JSON objects.
    pending: Vec<u8>,
    spans: usize,
    phase: Phase,
    pub dropped: u64,
    /// When a failure was last logged (once a minute at most).
    complained: Option<Instant>,
}

fn attr_str(out: &mut String, key: &str, v: &str) {
    out.push_str(&format!(
        "{{\"key\":{},\"value\":{{\"stringValue\":{}}}}},",
        serde_json::Value::from(key),
        serde_json::Value::from(v)
    ));
}

fn attr_int(out: &mut String, key: &str, v: u64) {
    out.push_str(&format!(
        "{{\"key\":\"{key}\",\"value\":{{\"intValue\":\"{v}\"}}}},"
    ));
}

impl Exporter {
    pub fn new(cfg: Otlp) -> Exporter {
        Exporter {
            cfg,
            pending: Vec::new(),
            spans: 0,
            phase: Phase::Idle,
            dropped: 0,
            complained: None,
        }
    }

    /// Adds the span of a finished request that carries a trace and a span of ours.
    pub fn add(&mut self, d: &Done, cfg: &crate::config::Config, now: Instant) {
        let Some(x) = d.x else { return };
        let (Some(parent), Some(span)) = (x.trace.parent(), x.span_id) else {
            return;
        };
        let took = now.saturating_duration_since(x.timings.started);
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let start = end.saturating_sub(took);
        let route = x
            .route
            .and_then(|r| cfg.server[x.server].route.get(r))
            .map_or("-", |r| r.name.as_str());
        let mut s = String::with_capacity(768);
        s.push_str(&format!(
            "{{\"traceId\":\"{}\",\"spanId\":\"{}\",",
            hex_string(&parent.trace_id),
            hex_string(&span)
        ));
        if parent.span_id != span {
            s.push_str(&format!(
                "\"parentSpanId\":\"{}\",",
                hex_string(&parent.span_id)
            ));
        }
        s.push_str(&format!(
            "\"name\":{},\"kind\":2,\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
            serde_json::Value::from(format!("{} {route}", x.req.method)),
            start.as_nanos(),
            end.as_nanos()
        ));
        attr_str(&mut s, "http.request.method", &x.req.method);
        attr_str(&mut s, "url.path", &x.req.route_path);
        if let Some((_, q)) = x.req.uri.split_once('?') {
            attr_str(&mut s, "url.query", q);
        }
        attr_str(&mut s, "http.route", route);
        attr_int(&mut s, "http.response.status_code", d.status as u64);
        attr_str(&mut s, "client.address", d.conn.client.as_str());
        attr_str(&mut s, "proxyd.request_id", x.request_id.as_str());
        if let Some(u) = x.upstream.and_then(|u| cfg.upstream.get(u)) {
            attr_str(&mut s, "proxyd.upstream", &u.name);
            if let Some(a) = x.record.attempts.last().and_then(|a| a.addr) {
                attr_str(&mut s, "server.address", &a.ip().to_string());
                attr_int(&mut s, "server.port", a.port() as u64);
            }
            attr_int(
                &mut s,
                "proxyd.upstream_tries",
                x.record.attempts.len() as u64,
            );
        }
        s.pop();
        // Status ERROR for what a server owns (5xx), unset otherwise (OTel HTTP conventions).
        let code = if d.status >= 500 { 2 } else { 0 };
        s.push_str(&format!("],\"status\":{{\"code\":{code}}}}}"));
        if self.pending.len() + s.len() > MAX_PENDING {
            self.dropped += 1;
            return;
        }
        if !self.pending.is_empty() {
            self.pending.push(b',');
        }
        self.pending.extend_from_slice(s.as_bytes());
        self.spans += 1;
    }

    /// Whether spans wait to be sent or a batch is in flight: the loop must wake within a
    /// second for it.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty() || matches!(self.phase, Phase::Sending { .. })
    }

    /// Whether a batch should go now, before the clock says so.
    pub fn full(&self) -> bool {
        self.pending.len() >= FLUSH_AT
    }

    /// Starts sending what is pending, if nothing is in flight.
    pub fn flush(&mut self, registry: &Registry, now: Instant) {
        if let Phase::Sending { since, .. } = &self.phase {
            // A collector that has not answered in 10 s is given up on.
            if now.duration_since(*since).as_secs() >= 10 {
                self.fail(registry, "no answer within 10 s");
            } else {
                return;
            }
        }
        if self.pending.is_empty() {
            return;
        }
        let body = format!(
            "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":{}}}}}]}},\"scopeSpans\":[{{\"scope\":{{\"name\":\"proxyd\",\"version\":\"{}\"}},\"spans\":[{}]}}]}}]}}",
            serde_json::Value::from(self.cfg.service_name.as_str()),
            env!("CARGO_PKG_VERSION"),
            String::from_utf8_lossy(&self.pending)
        );
        self.pending.clear();
        self.spans = 0;
        let mut out = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.cfg.path,
            self.cfg.host,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        let tls = match &self.cfg.tls {
            None => None,
            Some((config, name)) => {
                match rustls::ClientConnection::new(config.clone(), name.clone()) {
                    Ok(mut c) => {
                        // The batch waits in rustls until the handshake is done; it is bounded
                        // by MAX_PENDING, and `out` is freed at once.
                        c.set_buffer_limit(None);
                        let _ = c.writer().write_all(&out);
                        out = Vec::new();
                        Some(Box::new(c))
                    }
                    Err(e) => return self.complain(&format!("TLS: {e}")),
                }
            }
        };
        match TcpStream::connect(self.cfg.addr) {
            Ok(mut stream) => {
                if registry
                    .register(&mut stream, TOKEN, Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    self.phase = Phase::Sending {
                        stream,
                        tls,
                        out,
                        written: 0,
                        answer: Vec::new(),
                        since: now,
                    };
                }
            }
            Err(e) => self.complain(&format!("connect failed: {e}")),
        }
    }

    /// The connection is ready: write the batch, then read the answer until the close.
    pub fn on_event(&mut self, registry: &Registry) {
        let Phase::Sending {
            stream,
            tls,
            out,
            written,
            answer,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if let Some(conn) = tls {
            match pump_tls(conn, stream, answer) {
                Ok(false) => return,
                Ok(true) => return self.answered(registry),
                Err(e) => return self.fail(registry, &format!("TLS: {e}")),
            }
        }
        while *written < out.len() {
            match stream.write(&out[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Not connected yet shows as NotConnected before the first writable event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(registry, &e.to_string()),
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // Only the status line matters; the rest is drained, not kept.
                    if answer.len() < 64 {
                        answer.extend_from_slice(&buf[..n.min(64)]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(registry, &e.to_string()),
            }
        }
        self.answered(registry);
    }

    /// The collector closed the connection: its status line says whether the batch landed.
    fn answered(&mut self, registry: &Registry) {
        let Phase::Sending { answer, .. } = &self.phase else {
            return;
        };
        let ok = answer.starts_with(b"HTTP/1.1 2") || answer.starts_with(b"HTTP/1.0 2");
        if ok {
            self.close(registry);
        } else {
            let line = String::from_utf8_lossy(answer.split(|&b| b == b'\r').next().unwrap_or(b""))
                .to_string();
            self.fail(registry, &format!("collector answered \"{line}\""));
        }
    }

    fn close(&mut self, registry: &Registry) {
        // An orderly TLS close is not waited for: the collector has answered, or failed.
        if let Phase::Sending { mut stream, .. } = std::mem::replace(&mut self.phase, Phase::Idle) {
            let _ = registry.deregister(&mut stream);
        }
    }

    fn fail(&mut self, registry: &Registry, why: &str) {
        self.close(registry);
        self.dropped += 1;
        self.complain(why);
    }

    fn complain(&mut self, why: &str) {
        let now = Instant::now();
        if self
            .complained
            .is_none_or(|t| now.duration_since(t).as_secs() >= 60)
        {
            self.complained = Some(now);
            log::warn!(
                "span export to {} failed: {why} ({} batches or spans dropped so far)",
                self.cfg.endpoint,
                self.dropped
            );
        }
    }
}

/// Moves bytes both ways between rustls and the socket until the socket would block. True
/// when the collector has closed (its answer is whole); the first 64 bytes of the answer
/// are kept, the rest read and dropped.
fn pump_tls(
    conn: &mut rustls::ClientConnection,
    stream: &mut TcpStream,
    answer: &mut Vec<u8>,
) -> io::Result<bool> {
    let blocked = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
        )
    };
    loop {
        let mut moved = false;
        while conn.wants_write() {
            match conn.write_tls(stream) {
                Ok(0) => break,
                Ok(_) => moved = true,
                Err(e) if blocked(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut closed = false;
        match conn.read_tls(stream) {
            Ok(0) => closed = true,
            Ok(_) => {
                moved = true;
                conn.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) if blocked(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut buf = [0u8; 1024];
        loop {
            match conn.reader().read(&mut buf) {
                // close_notify: the answer is whole.
                Ok(0) => return Ok(true),
                Ok(n) => {
                    if answer.len() < 64 {
                        answer.extend_from_slice(&buf[..n.min(64 - answer.len())]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Closed without close_notify: what came is all there is.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        if closed {
            return Ok(true);
        }
        if !moved {
            return Ok(false);
        }
    }
}
