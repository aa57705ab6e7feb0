//! The value of each `log_format` variable for one finished exchange, read from the `Done`
//! event, the exchange's record and the client connection's transport. Costly values
//! (`$server_addr` takes a system call, `$ssl_client_*` a certificate parse once per
//! connection) are worked out only when a format asks for them.

use crate::config::Config;
use crate::log_format::{Values, Var};
use crate::worker::clock::Clock;
use crate::worker::events::Done;
use crate::worker::record::Attempt;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Line<'a> {
    pub cfg: &'a Config,
    pub d: &'a Done<'a>,
    pub clock: &'a Clock,
    pub now: Instant,
}

/// Seconds with milliseconds, as nginx writes times ("0.004").
fn secs(out: &mut Vec<u8>, d: Duration) {
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    crate::http::write_hex(&mut out[start..], bytes);
}

fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

impl Line<'_> {
    /// One value per upstream try, joined by ", " as nginx does; none without tries.
    fn per_try(&self, out: &mut Vec<u8>, f: impl Fn(&Attempt, &mut Vec<u8>)) -> bool {
        let Some(x) = self.d.x else { return false };
        for (i, a) in x.record.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            f(a, out);
        }
        !x.record.attempts.is_empty()
    }

    fn since(out: &mut Vec<u8>, from: Instant, to: Option<Instant>) {
        match to {
            Some(t) => secs(out, t.saturating_duration_since(from)),
            None => out.push(b'-'),
        }
    }
}

impl Values for Line<'_> {
    fn value(&self, var: Var, out: &mut Vec<u8>) -> bool {
        let d = self.d;
        let x = d.x;
        let req = x.map(|x| x.req);
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            true
        };
        let num = |out: &mut Vec<u8>, n: u64| {
            let _ = write!(out, "{n}");
            true
        };
        match var {
            Var::RemoteAddr => put(out, d.conn.client.as_str()),
            Var::RemotePort => num(out, d.conn.client.port() as u64),
            Var::RemoteUser => false,
            Var::TimeLocal => put(out, &self.clock.log_time),
            Var::TimeIso8601 => put(out, &self.clock.iso_time),
            Var::Msec => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                secs(out, t);
                true
            }
            Var::Request => match req {
                Some(r) => {
                    let _ = write!(out, "{} {} HTTP/1.{}", r.method, r.uri, r.minor);
                    true
                }
                None => false,
            },
            Var::RequestMethod => req.is_some_and(|r| put(out, &r.method)),
            Var::RequestUri => req.is_some_and(|r| put(out, &r.uri)),
            Var::Uri => req.is_some_and(|r| put(out, &r.route_path)),
            Var::Args => req
                .and_then(|r| r.uri.split_once('?'))
                .is_some_and(|(_, q)| put(out, q)),
            Var::ServerProtocol => req.is_some_and(|r| {
                let _ = write!(out, "HTTP/1.{}", r.minor);
                true
            }),
            Var::Scheme => put(
                out,
                if d.conn.transport.is_plain() {
                    "http"
                } else {
                    "https"
                },
            ),
            Var::Status => num(out, d.status as u64),
            Var::BodyBytesSent => num(out, d.bytes),
            Var::BytesSent => num(out, d.sent),
            Var::RequestLength => x.is_some_and(|x| num(out, x.req.head_len as u64 + x.body_read)),
            Var::RequestTime => {
                let t = x.map_or(Duration::ZERO, |x| {
                    self.now.saturating_duration_since(x.started)
                });
                secs(out, t);
                true
            }
            Var::Http(i) => x.and_then(|x| x.record.request_header(i)).is_some_and(|v| {
                out.extend_from_slice(v);
                true
            }),
            Var::SentHttp(i) => x
                .and_then(|x| x.record.response_header(i))
                .is_some_and(|v| {
                    out.extend_from_slice(v);
                    true
                }),
            Var::Host => match req.and_then(|r| r.host_name()) {
                Some(h) => put(out, &h.to_ascii_lowercase()),
                None => self.value(Var::ServerName, out),
            },
            Var::ServerName => self.cfg.server[d.server]
                .server_name
                .first()
                .is_some_and(|n| put(out, n)),
            Var::ServerAddr => d
                .conn
                .transport
                .local_addr()
                .is_ok_and(|a| put(out, &a.ip().to_string())),
            Var::ServerPort => d
                .conn
                .transport
                .local_addr()
                .is_ok_and(|a| num(out, a.port() as u64)),
            Var::UpstreamName => x
                .and_then(|x| self.cfg.upstream.get(x.upstream?))
                .is_some_and(|u| put(out, &u.name)),
            Var::UpstreamAddr => self.per_try(out, |a, out| match a.addr {
                Some(addr) => {
                    let _ = write!(out, "{addr}");
                }
                None => out.push(b'-'),
            }),
            Var::UpstreamStatus => self.per_try(out, |a, out| match a.status {
                0 => out.push(b'-'),
                s => {
                    let _ = write!(out, "{s}");
                }
            }),
            Var::UpstreamConnectTime => {
                self.per_try(out, |a, out| Self::since(out, a.started, a.connected))
            }
            Var::UpstreamHeaderTime => {
                self.per_try(out, |a, out| Self::since(out, a.started, a.header))
            }
            Var::UpstreamResponseTime => self.per_try(out, |a, out| {
                Self::since(out, a.started, Some(a.ended.unwrap_or(self.now)))
            }),
            Var::UpstreamBytesReceived => self.per_try(out, |a, out| {
                let _ = write!(out, "{}", a.received);
            }),
            Var::Connection => num(out, d.conn.id),
            Var::ConnectionRequests => num(out, d.conn.requests),
            Var::Pid => num(out, std::process::id() as u64),
            Var::Hostname => put(out, hostname()),
            Var::RequestId => x
                .filter(|x| !x.request_id.is_empty())
                .is_some_and(|x| put(out, x.request_id.as_str())),
            Var::TraceId => x.and_then(|x| x.trace.parent().copied()).is_some_and(|t| {
                hex(out, &t.trace_id);
                true
            }),
            Var::SpanId => x
                .and_then(|x| x.span_id.or(x.trace.parent().map(|t| t.span_id)))
                .is_some_and(|s| {
                    hex(out, &s);
                    true
                }),
            Var::Route => x
                .and_then(|x| self.cfg.server[x.server].route.get(x.route?))
                .is_some_and(|r| put(out, &r.name)),
            Var::SslProtocol => {
                let tls = d.conn.transport.tls_info();
                tls.and_then(|t| t.protocol).is_some_and(|p| put(out, p))
            }
            Var::SslCipher => {
                let tls = d.conn.transport.tls_info();
                tls.and_then(|t| t.cipher).is_some_and(|c| put(out, c))
            }
            Var::SslServerName => {
                let tls = d.conn.transport.tls_info();
                tls.and_then(|t| t.sni).is_some_and(|n| put(out, n))
            }
            Var::SslClientVerify => d.conn.transport.tls_info().is_some_and(|t| {
                put(
                    out,
                    if t.client.is_some() {
                        "SUCCESS"
                    } else {
                        "NONE"
                    },
                )
            }),
            Var::SslClientSDn => {
                let tls = d.conn.transport.tls_info();
                tls.and_then(|t| t.client)
                    .is_some_and(|c| put(out, &c.subject))
            }
            Var::SslClientFingerprint => {
                let tls = d.conn.transport.tls_info();
                tls.and_then(|t| t.client)
                    .is_some_and(|c| put(out, &c.fingerprint))
            }
        }
    }
}
