//! From a parsed request to what to do with it: the route (see `router`), then its action
//! made concrete for this request: which upstream of a split, the path sent upstream after
//! `rewrite` or `strip_prefix`, the `Location` of a redirect.

use crate::config::{Action, Balance, Config, HashKey, Route};
use crate::hash::stable as hash;
use crate::http::request::RequestHead;
use crate::router::{Request, Vars};
use std::net::IpAddr;

pub enum Routed {
    /// To upstream `upstream`, with the request target replaced when `uri` is set.
    Proxy {
        upstream: usize,
        uri: Option<String>,
    },
    /// A `return` route: its filter chain answers.
    Answer,
    Redirect {
        status: u16,
        location: String,
    },
    NotFound,
    /// Answered with this error status: 500 when a regex could not finish matching (its
    /// backtracking budget), as nginx answers a PCRE error, because the route it guards might
    /// have been the one; 400 when a rewrite made a path that climbs above the root.
    Refused(u16),
}

/// Routes `req` (its head bytes `raw`) on `server`: the route's index and what to do.
pub fn route(
    cfg: &Config,
    server: usize,
    req: &RequestHead,
    raw: &[u8],
    client: &dyn Fn() -> IpAddr,
    seq: u64,
) -> (Option<usize>, Routed) {
    let header = |name: &str| -> Vec<&[u8]> { req.header_values(raw, name).collect() };
    let host = req.host_name();
    let r = Request {
        method: &req.method,
        host,
        query: req.query(),
        header: &header,
        client,
    };
    let path = req.path();
    let srv = &cfg.server[server];
    let i = match srv.routes.lookup(&srv.route, path, &r) {
        Ok(Some(i)) => i,
        Ok(None) => return (None, Routed::NotFound),
        Err(e) => {
            log::error!(
                "route regex of server {server} failed on \"{path}\": {}",
                e.0
            );
            return (None, Routed::Refused(500));
        }
    };
    let route = &cfg.server[server].route[i];
    let tls = cfg.server[server].tls.is_some();
    let slashes = cfg.server[server].allow_encoded_slashes;
    let routed = match &route.action {
        Action::Proxy { index, .. } => match new_uri(route, req, host, tls, slashes) {
            Ok(uri) => Routed::Proxy {
                upstream: *index,
                uri,
            },
            Err(status) => Routed::Refused(status),
        },
        Action::Split { split, sticky } => {
            let total: u64 = split.iter().map(|t| t.weight as u64).sum();
            let key = sticky
                .as_ref()
                .and_then(|s| hash_of(s, req, raw, client))
                .unwrap_or_else(|| seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11);
            let mut at = key % total.max(1);
            let target = split
                .iter()
                .find(|t| {
                    let hit = at < t.weight as u64;
                    at = at.saturating_sub(t.weight as u64);
                    hit
                })
                .unwrap_or(&split[0]);
            match new_uri(route, req, host, tls, slashes) {
                Ok(uri) => Routed::Proxy {
                    upstream: target.index,
                    uri,
                },
                Err(status) => Routed::Refused(status),
            }
        }
        Action::Return { .. } => Routed::Answer,
        Action::Redirect { status, redirect } => {
            let mut location = String::new();
            let caps = captures(route, path);
            redirect.expand_into(&vars(req, host, &caps, tls), &mut location);
            Routed::Redirect {
                status: *status,
                location,
            }
        }
    };
    (Some(i), routed)
}

/// The route regex's groups in `path`. It matched a moment ago, so an error here (the same
/// budget) cannot happen in practice; it would give empty captures.
fn captures(route: &Route, path: &str) -> Vec<Option<(usize, usize)>> {
    route
        .regex
        .as_ref()
        .and_then(|re| re.captures(path).ok().flatten())
        .unwrap_or_default()
}

fn vars<'a>(
    req: &'a RequestHead,
    host: Option<&'a str>,
    caps: &'a [Option<(usize, usize)>],
    tls: bool,
) -> Vars<'a> {
    Vars {
        uri: req.path(),
        args: req.query(),
        request_uri: &req.uri,
        host: host.unwrap_or(""),
        // Every server on a TLS address has tls (config check): the server says the scheme.
        scheme: if tls { "https" } else { "http" },
        captures: caps,
    }
}

/// The request target after the route's `rewrite` or `strip_prefix`, or else the normalized
/// path unless the route has `forward_raw_path` (None: the target as the client sent it). The
/// query string is kept unless the rewrite sets its own. A rewrite is normalized like a
/// client's path; one with a dot segment (`/public/$1` with `$1` = `../admin`) is refused
/// with 400.
fn new_uri(
    route: &Route,
    req: &RequestHead,
    host: Option<&str>,
    tls: bool,
    allow_encoded_slashes: bool,
) -> Result<Option<String>, u16> {
    let path = req.path();
    let mut out = String::new();
    if let Some(t) = &route.rewrite {
        let caps = captures(route, path);
        t.expand_into(&vars(req, host, &caps, tls), &mut out);
        let (p, q) = out.split_once('?').unwrap_or((&out, ""));
        // A capture can carry `..` from a segment like `files-..`, and `$args` or `$host`
        // anything the client wrote there (`..%2F..%2Fadmin`): the rewrite would then name a
        // path outside the one the route was written for.
        if crate::http::path::has_dot_segment(p)
            || !allow_encoded_slashes && crate::http::path::has_encoded_slash(p)
        {
            return Err(400);
        }
        let normal = crate::http::path::normalize(p).ok_or(400u16)?;
        if normal != p {
            let q = (!q.is_empty() || out.ends_with('?')).then(|| q.to_string());
            out = normal;
            if let Some(q) = q {
                out.push('?');
                out.push_str(&q);
            }
        }
        if !t.has_query() {
            if let Some(q) = req.query() {
                out.push('?');
                out.push_str(q);
            }
        }
        return Ok(Some(out));
    }
    // "/api" stripped from "/apix" is no path boundary: that path goes as it was routed.
    let stripped = route
        .strip_prefix
        .as_ref()
        .and_then(|p| path.strip_prefix(p.as_str()))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
    match stripped {
        Some(rest) => out.push_str(if rest.is_empty() { "/" } else { rest }),
        None if route.forward_raw_path || req.raw_path() == path => return Ok(None),
        // What goes upstream is what was routed: a backend that resolves `//admin` or
        // `/x/%2e%2e/admin` itself would otherwise see a path no route was chosen for.
        None => out.push_str(path),
    }
    if let Some(q) = req.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(Some(out))
}

/// The hash of a request's value for `key`, or None when the request has none.
pub fn hash_of(
    key: &HashKey,
    req: &RequestHead,
    raw: &[u8],
    client: &dyn Fn() -> IpAddr,
) -> Option<u64> {
    match key {
        HashKey::Uri => Some(hash(req.uri.as_bytes())),
        HashKey::Path => Some(hash(req.path().as_bytes())),
        HashKey::Host => req.host_name().map(|h| hash(h.as_bytes())),
        HashKey::ClientIp => Some(match client() {
            IpAddr::V4(a) => hash(&a.octets()),
            IpAddr::V6(a) => hash(&a.octets()),
        }),
        HashKey::Header(h) => req.header_values(raw, h).next().map(hash),
        HashKey::Cookie(name) => req
            .header_values(raw, "cookie")
            .flat_map(|v| v.split(|&b| b == b';'))
            .find_map(|kv| {
                let kv = kv.trim_ascii();
                let eq = kv.iter().position(|&b| b == b'=')?;
                (&kv[..eq] == name.as_bytes()).then(|| hash(&kv[eq + 1..]))
            }),
        HashKey::Query(name) => req.query().and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then(|| hash(v.as_bytes()))
            })
        }),
    }
}

/// The hash the upstream's balancer needs for this request (ip_hash, hash), if any.
pub fn balance_hash(
    cfg: &Config,
    upstream: usize,
    req: &RequestHead,
    raw: &[u8],
    client: &dyn Fn() -> IpAddr,
) -> Option<u64> {
    match &cfg.upstream[upstream].balance {
        Balance::IpHash => hash_of(&HashKey::ClientIp, req, raw, client),
        Balance::Hash(k) => hash_of(k, req, raw, client),
        _ => None,
    }
}
