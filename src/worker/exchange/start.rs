//! A parsed request head becomes an exchange: its server (by Host), its route, its request
//! id and trace context, the request filters, then the route's action: an upstream attempt,
//! or an answer made here (a `return` route answers through its filter chain, a redirect
//! or a refusal directly). Every answer made here goes out through `answer`, with the
//! route's response filters over it when the route made it.

use super::Ctx;
use super::{Exchange, Source};
use crate::config::{Config, Filter};
use crate::http::local;
use crate::http::request_id::RequestId;
use crate::http::trace::Trace;
use crate::worker::events::Event;
use crate::worker::filters::{self, Answer, ClientCert, Cx, Verdict};
use crate::worker::route::{self, Routed};
use crate::worker::transport::PeerIp;
use crate::worker::transport::TlsInfo;
use std::borrow::Cow;
use std::net::SocketAddr;

/// What the session knows of a request beyond its head.
pub struct Arrival<'a> {
    /// The listening address it came to (with Host, it selects the server).
    pub listener: SocketAddr,
    pub client: &'a PeerIp,
    /// "http" or "https".
    pub proto: &'static str,
    /// What the TLS handshake settled, for a TLS client.
    pub tls: Option<TlsInfo<'a>>,
    /// Requests the connection has carried, this one included.
    pub served: u64,
}

/// What the session does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The head for the upstream is written: the next `step` starts the attempt.
    Proxy,
    /// An answer is in `out`: write it, then end the exchange.
    Answered,
}

impl Exchange {
    /// Routes the request parsed into `self.req` and decides what answers it; an answer
    /// made here is written to `out` at once.
    pub fn begin(&mut self, w: &mut Ctx, at: &Arrival, raw: &[u8], out: &mut Vec<u8>) -> Begin {
        let cfg = w.env.cfg.clone();
        let server = cfg.hosts.lookup(at.listener, self.req.host_name());
        let srv = &cfg.server[server];
        let keep_alive = self.req.keep_alive
            && !w.env.draining()
            && (srv.keepalive_requests == 0 || at.served < srv.keepalive_requests);
        let client = at.client;
        let (found, routed) = route::route(
            &cfg,
            server,
            &self.req,
            raw,
            &|| client.ip(),
            w.sinks.requests,
        );
        self.start(server, keep_alive, w.env.now);
        self.route = found;
        self.request_id = srv
            .request_id
            .as_ref()
            .filter(|r| r.keep_incoming)
            .and_then(|r| {
                let mut v = self.req.header_values(raw, &r.header);
                // Two ids would be ambiguous: neither is kept.
                let id = v.next();
                v.next().is_none().then_some(id).flatten()
            })
            .and_then(RequestId::incoming)
            .unwrap_or_else(|| w.env.ids.generate());
        let ids = &mut w.env.ids;
        self.trace = Trace::decide(
            srv.traceparent,
            self.req.header_values(raw, "traceparent"),
            || [ids.random(), ids.random(), ids.random()],
        );
        // Exporting spans makes proxyd a hop of the trace: its span is the upstream's parent.
        if cfg.otlp.is_some() {
            self.span_id = match self.trace {
                Trace::Started(t) => Some(t.span_id),
                Trace::Continued(_) => Some((w.env.ids.random() | 1).to_be_bytes()),
                Trace::None | Trace::Dropped => None,
            };
        }
        if !srv.access_log.is_empty() {
            self.record.capture_request(
                &cfg.log_formats.captures.request,
                self.req.header_pairs(raw),
            );
        }
        // The body of a request answered here is not read; closing discards it.
        let close = !self.keep_alive || self.req.has_body;
        // SNI chose the TLS server, and so the client verification of the handshake. A Host
        // naming another server may not ride on it when either server verifies clients,
        // or a client without a certificate would reach a server that requires one.
        let sni = at.tls.as_ref().map(|t| t.server);
        if sni.is_some_and(|s| s != server && (verifies(&cfg, s) || verifies(&cfg, server))) {
            self.write_error(w, at, out, 421, close);
            return Begin::Answered;
        }
        if !srv.allow_encoded_slashes && self.req.encoded_slash() {
            log::info!(
                "refused an escaped slash in the path \"{}\" (allow_encoded_slashes)",
                self.req.raw_path()
            );
            self.write_error(w, at, out, 400, close);
            return Begin::Answered;
        }
        w.emit(Event::Routed {
            x: self.facts(),
            client_ip: at.client,
        });
        let chain = self.chain(&cfg);
        let mut fields = std::mem::take(&mut w.env.scratch.headers);
        let answered = match routed {
            Routed::Proxy { upstream, uri } => {
                let hash = route::balance_hash(&cfg, upstream, &self.req, raw, &|| client.ip());
                self.driver.prepare(upstream, hash);
                self.req
                    .upstream_fields(&cfg.upstream[upstream].name, &mut fields);
                let rid = self.request_id;
                let cx = self.cx(w, &cfg, at, &rid);
                match filters::on_request(chain, raw, &mut fields, &cx) {
                    Verdict::Continue => {
                        // The body will come from the upstream (nothing until its head).
                        self.body = Source::Upstream;
                        self.req.write_upstream(
                            raw,
                            uri.as_deref(),
                            &fields,
                            &mut self.driver.head,
                        );
                        None
                    }
                    Verdict::Answer(a) => Some(a),
                }
            }
            Routed::Answer => {
                let rid = self.request_id;
                let cx = self.cx(w, &cfg, at, &rid);
                match filters::on_request(chain, raw, &mut fields, &cx) {
                    Verdict::Answer(a) => Some(a),
                    // A `return` route's chain ends in its answer: this cannot be.
                    Verdict::Continue => Some(super::answer::error_answer(500)),
                }
            }
            Routed::Redirect { status, location } => Some(Answer {
                status,
                headers: Cow::Owned(vec![
                    ("Location".to_string(), location),
                    ("Content-Type".to_string(), "text/html".to_string()),
                ]),
                body: local::error_page(status).into(),
            }),
            Routed::Refused(status) => {
                w.env.scratch.headers = fields;
                self.write_error(w, at, out, status, close);
                return Begin::Answered;
            }
            Routed::NotFound => {
                w.env.scratch.headers = fields;
                self.write_error(w, at, out, 404, close);
                return Begin::Answered;
            }
        };
        w.env.scratch.headers = fields;
        match answered {
            None => Begin::Proxy,
            Some(a) => {
                self.answer(w, at, out, &a, close, true);
                Begin::Answered
            }
        }
    }

    /// The route's filter chain (none without a route).
    pub(super) fn chain<'c>(&self, cfg: &'c Config) -> &'c [Filter] {
        self.route
            .and_then(|r| cfg.server[self.server].route.get(r))
            .map_or(&[], |r| &r.filters)
    }

    /// What the filters may know of this request (`rid`: its request id).
    pub(super) fn cx<'a>(
        &self,
        w: &Ctx,
        cfg: &'a Config,
        at: &'a Arrival,
        rid: &'a RequestId,
    ) -> Cx<'a> {
        let client_cert = match &at.tls {
            Some(t) if verifies(cfg, t.server) => Some(match t.client {
                None => ClientCert::None,
                Some(id) => ClientCert::Verified {
                    subject: &id.subject,
                    fingerprint: &id.fingerprint,
                },
            }),
            _ => None,
        };
        self.filter_cx(w, cfg, (at.client.as_str(), at.proto, client_cert), rid)
    }
}

/// Whether `server` asks TLS clients for certificates.
pub fn verifies(cfg: &Config, server: usize) -> bool {
    cfg.server[server]
        .tls
        .as_ref()
        .is_some_and(|t| t.verify_client != crate::tls::VerifyClient::Off)
}
