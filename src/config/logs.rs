//! Access logs in the config: named `log_format`s (the built-in `combined`, `main` and
//! `json`, and the operator's own) compiled once, and each server's list of access logs,
//! every one a destination and a format.
//!
//! ```toml
//! [log_format]
//! timing = '$remote_addr "$request" $status $request_time $upstream_response_time'
//! audit = { json = { client = "$remote_addr", status = "$status", id = "$request_id" } }
//!
//! access_log = "/var/log/proxyd/access.log"                     # combined
//! [[server]]
//! access_log = ["/var/log/proxyd/a.log", { path = "/var/log/proxyd/a.json", format = "json" }]
//! ```

use super::raw::S;
use super::validate::Validator;
use super::{LogTarget, Source};
use crate::http::trace::Mode;
use crate::log_format::{self, Captures, Format};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The compiled formats every access log of the config refers to.
#[derive(Debug, Clone, Default)]
pub struct LogFormats {
    /// By index; the built-in ones are compiled only when used.
    pub formats: Vec<Format>,
    names: Vec<String>,
    /// The `[log_format]` table's entries as written, for `-T --effective`.
    pub written: Vec<(String, toml::Value)>,
    /// Header names the formats capture from requests and responses.
    pub captures: Captures,
}

/// One access log of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLog {
    /// Index into `Config::access_logs`.
    pub target: usize,
    /// Index into `LogFormats::formats`.
    pub format: usize,
}

/// An access log as `-T` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLogShown {
    pub path: String,
    pub format: String,
}

/// `request_id = true | false | { header, keep_incoming }` of a server.
#[derive(Debug, Clone, Serialize)]
pub struct RequestIdHeader {
    pub header: String,
    /// A well-formed id the request already carries is kept rather than replaced.
    pub keep_incoming: bool,
}

impl Default for RequestIdHeader {
    fn default() -> RequestIdHeader {
        RequestIdHeader {
            header: "X-Request-Id".into(),
            keep_incoming: true,
        }
    }
}

/// What an access log's `format` may say before it is compiled.
enum Named {
    /// A template given in place.
    Inline(String),
    Name(String),
}

impl LogFormats {
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The index of format `name`, compiling a built-in one on first use.
    fn by_name(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Some(i);
        }
        let f = log_format::builtin(name, &mut self.captures)?;
        Some(self.push(name.to_string(), f))
    }

    fn push(&mut self, name: String, f: Format) -> usize {
        self.formats.push(f);
        self.names.push(name);
        self.formats.len() - 1
    }
}

impl Validator {
    /// Compiles the `[log_format]` table.
    pub(super) fn log_formats(
        &mut self,
        src: &Source,
        raw: Option<&BTreeMap<String, S<toml::Value>>>,
    ) -> LogFormats {
        let mut out = LogFormats::default();
        for (name, v) in raw.into_iter().flatten() {
            if log_format::BUILTIN.contains(&name.as_str()) {
                self.errors.push(src.err(
                    v.span(),
                    format!("log_format \"{name}\" is built in and cannot be redefined"),
                ));
                continue;
            }
            let compiled = match v.get_ref() {
                toml::Value::String(t) => log_format::text(t, &mut out.captures),
                toml::Value::Table(t) => match (t.get("json"), t.len()) {
                    (Some(toml::Value::Table(fields)), 1) => {
                        let mut pairs = Vec::new();
                        let mut bad = None;
                        for (k, v) in fields {
                            match v.as_str() {
                                Some(s) => pairs.push((k.as_str(), s)),
                                None => bad = Some(k),
                            }
                        }
                        match bad {
                            Some(k) => Err(format!("json field \"{k}\" must be a string")),
                            None => log_format::json(pairs.into_iter(), &mut out.captures),
                        }
                    }
                    _ => Err(
                        "expected a template string or { json = { key = \"$variable\", ... } }"
                            .into(),
                    ),
                },
                _ => Err("expected a template string or { json = { ... } }".into()),
            };
            match compiled {
                Ok(f) => {
                    out.push(name.clone(), f);
                    out.written.push((name.clone(), v.get_ref().clone()));
                }
                Err(e) => self
                    .errors
                    .push(src.err(v.span(), format!("log_format \"{name}\": {e}"))),
            }
        }
        out
    }

    /// An `access_log` value: "off", a path, `{ path, format }`, or a list of those.
    /// Destinations are shared by index in `targets`.
    pub(super) fn access_logs(
        &mut self,
        src: &Source,
        v: &S<toml::Value>,
        base: &Path,
        targets: &mut Vec<LogTarget>,
        formats: &mut LogFormats,
    ) -> Vec<AccessLog> {
        let one = |v: &toml::Value| -> Result<Option<(String, Named)>, String> {
            match v {
                toml::Value::String(s) if s == "off" => Ok(None),
                toml::Value::String(s) => Ok(Some((s.clone(), Named::Name("combined".into())))),
                toml::Value::Table(t) => {
                    if let Some(k) = t.keys().find(|k| *k != "path" && *k != "format") {
                        return Err(format!("unknown access_log key \"{k}\" (path, format)"));
                    }
                    let path = match t.get("path") {
                        Some(toml::Value::String(p)) if p != "off" => p.clone(),
                        _ => return Err("an access_log table needs a path".into()),
                    };
                    let format = match t.get("format") {
                        None => Named::Name("combined".into()),
                        Some(toml::Value::String(f)) if f.contains('$') => Named::Inline(f.clone()),
                        Some(toml::Value::String(f)) => Named::Name(f.clone()),
                        Some(_) => {
                            return Err("an access_log format is a name or a template".into())
                        }
                    };
                    Ok(Some((path, format)))
                }
                _ => Err("expected \"off\", a path, { path, format } or a list of them".into()),
            }
        };
        let items: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            let (path, named) = match one(item) {
                Ok(Some(x)) => x,
                Ok(None) => continue,
                Err(e) => {
                    self.errors.push(src.err(v.span(), e));
                    continue;
                }
            };
            let format = match named {
                Named::Name(n) => match formats.by_name(&n) {
                    Some(i) => i,
                    None => {
                        self.errors.push(src.err(
                            v.span(),
                            format!("unknown log_format \"{n}\" (built in: combined, main, json)"),
                        ));
                        continue;
                    }
                },
                Named::Inline(t) => match log_format::text(&t, &mut formats.captures) {
                    Ok(f) => formats.push(t, f),
                    Err(e) => {
                        self.errors
                            .push(src.err(v.span(), format!("access_log format: {e}")));
                        continue;
                    }
                },
            };
            let t = self.log_target(src, v.span(), base, &path);
            let target = targets.iter().position(|l| *l == t).unwrap_or_else(|| {
                targets.push(t);
                targets.len() - 1
            });
            let log = AccessLog { target, format };
            if !out.contains(&log) {
                out.push(log);
            }
        }
        out
    }
}

impl Validator {
    /// A server's `request_id` (off by default: the id is only logged, as in nginx; the
    /// header costs every request and response its bytes).
    pub(super) fn request_id(
        &mut self,
        src: &Source,
        v: Option<&S<toml::Value>>,
    ) -> Option<RequestIdHeader> {
        let v = v?;
        let mut out = RequestIdHeader::default();
        let err = match v.get_ref() {
            toml::Value::Boolean(on) => return on.then_some(out),
            toml::Value::Table(t) => t.iter().find_map(|(k, val)| match (k.as_str(), val) {
                ("header", toml::Value::String(h))
                    if super::validate::httparse_token(h)
                        && super::filters::HeaderEdits::editable(h) =>
                {
                    out.header = h.clone();
                    None
                }
                ("header", _) => Some(
                    "request_id header must be a header name proxyd does not write itself"
                        .to_string(),
                ),
                ("keep_incoming", toml::Value::Boolean(b)) => {
                    out.keep_incoming = *b;
                    None
                }
                _ => Some(format!(
                    "unknown or mistyped request_id key \"{k}\" (header, keep_incoming)"
                )),
            }),
            _ => Some("request_id is true, false or { header, keep_incoming }".into()),
        };
        if let Some(e) = err {
            self.errors.push(src.err(v.span(), e));
        }
        Some(out)
    }
}

impl Validator {
    /// A server's `traceparent` mode (default "continue").
    pub(super) fn trace_mode(&mut self, src: &Source, v: Option<&S<String>>) -> Mode {
        match v.map(|v| (v, v.get_ref().as_str())) {
            None => Mode::Continue,
            Some((_, "continue")) => Mode::Continue,
            Some((_, "start")) => Mode::Start,
            Some((_, "off")) => Mode::Off,
            Some((v, other)) => {
                self.errors.push(src.err(
                    v.span(),
                    format!("traceparent \"{other}\" is not one of continue, start, off"),
                ));
                Mode::Continue
            }
        }
    }
}

/// `otlp = { endpoint = "http://127.0.0.1:4318/v1/traces", service_name = "proxyd", ca }`:
/// each worker sends the spans of traced requests there, batched, as OTLP/HTTP JSON; over TLS
/// for an https endpoint, its certificate verified against `ca` or the system's roots.
#[derive(Debug, Clone, Serialize)]
pub struct Otlp {
    pub endpoint: String,
    #[serde(skip)]
    pub addr: std::net::SocketAddr,
    #[serde(skip)]
    pub host: String,
    #[serde(skip)]
    pub path: String,
    pub service_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
    /// For an https endpoint: the client config and the name the certificate must carry.
    #[serde(skip)]
    pub tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl Validator {
    pub(super) fn otlp(
        &mut self,
        src: &Source,
        base: &std::path::Path,
        raw: Option<&S<super::raw::RawOtlp>>,
    ) -> Option<Otlp> {
        use std::net::ToSocketAddrs;
        let raw = raw?;
        let r = raw.get_ref();
        let url = r.endpoint.get_ref();
        let fail = |v: &mut Validator, span: std::ops::Range<usize>, msg: String| {
            v.errors.push(src.err(span, msg));
            None
        };
        let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return fail(
                    self,
                    r.endpoint.span(),
                    format!("otlp endpoint \"{url}\" must be an http:// or https:// URL"),
                )
            }
        };
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/v1/traces" } else { path };
        // host, or host:port; an IPv6 address is in brackets.
        let default_port = if https { 443 } else { 80 };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) => (hostport, default_port),
            },
            _ => (hostport, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                return fail(
                    self,
                    r.endpoint.span(),
                    format!("otlp endpoint \"{url}\": cannot resolve \"{hostport}\""),
                )
            }
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return fail(
                self,
                r.endpoint.span(),
                "otlp endpoint path has spaces or control bytes".into(),
            );
        }
        let ca = r.ca.as_ref().map(|c| super::resolve(base, c.get_ref()));
        let tls = match (https, &ca) {
            (false, Some(_)) => {
                let span = r.ca.as_ref().map_or(raw.span(), |c| c.span());
                return fail(self, span, "otlp ca needs an https:// endpoint".into());
            }
            (false, None) => None,
            (true, _) => {
                let roots = match &ca {
                    Some(c) => crate::tls::load_ca(c),
                    None => crate::tls::upstream::system_roots(),
                };
                let name = rustls_pki_types::ServerName::try_from(host.to_string());
                let config = roots.and_then(|r| {
                    crate::tls::upstream::client_config(
                        crate::tls::upstream::Verify::Roots(r, None),
                        None,
                    )
                });
                match (config, name) {
                    (Ok(c), Ok(n)) => Some((c, n)),
                    (Err(e), _) => {
                        let span = r.ca.as_ref().map_or(r.endpoint.span(), |c| c.span());
                        return fail(self, span, format!("otlp: {e}"));
                    }
                    (_, Err(e)) => {
                        return fail(
                            self,
                            r.endpoint.span(),
                            format!("otlp endpoint host \"{host}\": {e}"),
                        )
                    }
                }
            }
        };
        Some(Otlp {
            endpoint: url.clone(),
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            service_name: r.service_name.clone().unwrap_or_else(|| "proxyd".into()),
            ca,
            tls,
        })
    }
}

/// The access logs of a server, for `-T`.
pub(super) fn shown(
    logs: &[AccessLog],
    targets: &[LogTarget],
    formats: &LogFormats,
) -> Vec<AccessLogShown> {
    logs.iter()
        .map(|l| AccessLogShown {
            path: String::from(targets[l.target].clone()),
            format: formats.name(l.format).to_string(),
        })
        .collect()
}
