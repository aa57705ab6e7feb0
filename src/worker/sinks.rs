//! The sinks of lifecycle events (`events.rs`): the access log, the shared-memory metrics,
//! the span exporter and the trace log, each fed every event through `Sinks::emit`.

use super::access_log::{AccessLog, Line};
use super::env::Env;
use super::events::{Done, Event};
use super::export::Exporter;
use crate::config::Config;
use crate::shm::Hist;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[cfg(feature = "alloc-count")]
const ALLOC_WARMUP: u64 = 1000;

/// Where a worker's events go.
pub struct Sinks {
    pub access: AccessLog,
    /// Sends request spans to the OTLP collector (`otlp`), if there is one.
    pub exporter: Option<Exporter>,
    /// Exchanges finished.
    pub requests: u64,
    /// Allocations counted when the warm-up ended (`alloc-count` feature).
    #[cfg(feature = "alloc-count")]
    alloc_mark: u64,
}

impl Sinks {
    /// The sinks of `cfg`, with its access-log files as the master opened them.
    pub fn new(cfg: &Config, access_logs: Vec<Option<std::fs::File>>) -> Sinks {
        Sinks {
            access: AccessLog::new(&cfg.access_logs, access_logs),
            exporter: cfg.otlp.clone().map(Exporter::new),
            requests: 0,
            #[cfg(feature = "alloc-count")]
            alloc_mark: 0,
        }
    }

    /// Hands an event to every sink.
    pub fn emit(&mut self, env: &Env, ev: Event) {
        trace_sink(env, &ev);
        if let Event::Done(d) = ev {
            self.access_log_sink(env, &d);
            metrics_sink(env, &d);
            if let Some(e) = &mut self.exporter {
                e.add(&d, &env.cfg, env.now);
                if e.full() {
                    e.flush(&env.registry, env.now);
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

    fn access_log_sink(&mut self, env: &Env, d: &Done) {
        let cfg = &env.cfg;
        let logs = &cfg.server[d.server].access_log;
        if logs.is_empty() {
            return;
        }
        let line = Line {
            cfg,
            d,
            clock: &env.clock,
            now: env.now,
        };
        for l in logs {
            self.access
                .write(l.target, &cfg.log_formats.formats[l.format], &line);
        }
    }
}

/// Counts the request in shared memory: its server and route (status class, duration,
/// bytes), and each try of its upstream and peer (status, connect, header and response
/// times).
fn metrics_sink(env: &Env, d: &Done) {
    let (cfg, b) = (&env.cfg, env.shared);
    let srv = &cfg.server[d.server];
    let took = d.x.map_or(Duration::ZERO, |x| {
        env.now.saturating_duration_since(x.started)
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
            let end = a.ended.unwrap_or(env.now);
            b.observe(
                slot,
                Hist::Response,
                end.saturating_duration_since(a.started),
            );
        }
    }
}

/// Every event at trace level in the error log (off unless `level = "trace"`).
fn trace_sink(env: &Env, ev: &Event) {
    if !log::log_enabled!(log::Level::Trace) {
        return;
    }
    let since = |t: Instant| env.now.saturating_duration_since(t);
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
            since(x.started)
        ),
        Event::ResponseHead { x } => log::trace!(
            "\"{} {}\": response {} head after {:?}",
            x.req.method,
            x.req.uri,
            x.status,
            since(x.started)
        ),
        Event::Done(d) => log::trace!(
            "client {}: done {} with {} bytes in {:?}",
            d.conn.client,
            d.status,
            d.bytes,
            d.x.map_or(Duration::ZERO, |x| since(x.started))
        ),
    }
}
