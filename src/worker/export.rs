//! Span export (`otlp = { endpoint }`): a sink of `Done` events that turns each traced
//! request into one OTLP span (JSON), batches them, and POSTs a batch to the collector about
//! once a second over its own non-blocking connection in the event loop. The loop never
//! waits on the collector: while a batch is in flight the next one gathers, and when the
//! collector is slow or gone, batches past `MAX_PENDING` are dropped (and counted) rather
//! than growing without bound. Its connection is a `Transport` like any other outgoing one
//! (an https endpoint gets TLS there, its certificate verified against `ca` or the
//! system's roots).

use super::buffer::BufPool;
use super::events::Done;
use super::transport::{would_block, Connect, Transport};
use crate::config::logs::Otlp;
use crate::http::hex_string;
use mio::{Registry, Token};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Span bytes kept while the collector cannot take them.
const MAX_PENDING: usize = 1024 * 1024;
/// A batch is sent at once past this size, not only on the clock.
const FLUSH_AT: usize = 256 * 1024;
/// The exporter's connection token: kind 3 of slot 0 (see `worker::key`).
pub const TOKEN: Token = Token(super::token::Kind::Exporter as usize);

enum Phase {
    Idle,
    /// Connecting, then writing `out[written..]`, then reading the answer.
    Sending {
        stream: Transport,
        connected: bool,
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
    /// The buffer the collector's answer is read through (one, small).
    bufs: BufPool,
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
            bufs: BufPool::default(),
        }
    }

    /// Adds the span of a finished request that carries a trace and a span of ours.
    pub fn add(&mut self, d: &Done, cfg: &crate::config::Config, now: Instant) {
        let Some(x) = d.x else { return };
        let (Some(parent), Some(span)) = (x.trace.parent(), x.span_id) else {
            return;
        };
        let took = now.saturating_duration_since(x.started);
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
        let made = match &self.cfg.tls {
            None => Transport::connect(self.cfg.addr),
            Some((config, name)) => Transport::connect_tls(self.cfg.addr, config, name.clone()),
        };
        match made {
            Ok(mut stream) => {
                if stream.register(registry, TOKEN).is_ok() {
                    self.phase = Phase::Sending {
                        stream,
                        connected: false,
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
    pub fn on_event(&mut self, registry: &Registry, readable: bool, writable: bool, hup: bool) {
        let Phase::Sending {
            stream,
            connected,
            out,
            written,
            answer,
            ..
        } = &mut self.phase
        else {
            return;
        };
        stream.ready.on_event(readable, writable, hup);
        if !*connected {
            match stream.connect_state() {
                Connect::Done => *connected = true,
                Connect::InProgress => return,
                Connect::Failed(e) => return self.fail(registry, &e.to_string()),
            }
        }
        // Write the batch (over TLS, into rustls as far as its buffer takes it, then out of
        // it) and read: reading also moves a TLS handshake on, and after the batch it
        // brings the answer. Until neither side moves.
        let mut buf = self.bufs.get_small();
        let result = 'io: loop {
            let mut moved = false;
            while *written < out.len() && stream.ready.w {
                match stream.write_pair(&out[*written..], &[], false) {
                    Ok(n) => {
                        *written += n;
                        moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => break 'io Err(Self::why(&e)),
                }
            }
            if stream.pending() && stream.ready.w {
                match stream.flush() {
                    Ok(()) => moved = true,
                    Err(e) if would_block(&e) => {}
                    Err(e) => break Err(Self::why(&e)),
                }
            }
            if stream.ready.r {
                match stream.read_into(&mut buf) {
                    Ok(0) if *written == out.len() => break Ok(true),
                    Ok(0) => break Err("the collector closed before the batch was sent".into()),
                    Ok(_) => {
                        // Only the status line matters; the rest is drained, not kept.
                        let got = buf.held();
                        let keep = got.len().min(64usize.saturating_sub(answer.len()));
                        answer.extend_from_slice(&got[..keep]);
                        let n = got.len();
                        buf.skip_head(n);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => break Err(Self::why(&e)),
                }
            }
            if !moved {
                break Ok(false);
            }
        };
        self.bufs.put(buf);
        match result {
            Ok(true) => self.answered(registry),
            Ok(false) => {}
            Err(why) => self.fail(registry, &why),
        }
    }

    /// How an I/O error reads in the log: the transport says InvalidData only for TLS.
    fn why(e: &std::io::Error) -> String {
        if e.kind() == std::io::ErrorKind::InvalidData {
            format!("TLS: {e}")
        } else {
            e.to_string()
        }
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
            let _ = stream.deregister(registry);
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
