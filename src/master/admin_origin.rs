//! Whether an admin request could come from a web page the operator's browser was made to
//! send it from. Two attacks: DNS rebinding (a page whose name now resolves to the admin
//! address reads and acts as if same-origin; its requests name the page's host in `Host`),
//! and cross-site request forgery (a page on another site submits a form or `fetch` to the
//! admin address; the browser adds basic-auth credentials it signed in with, and with
//! `unauthenticated = true` none are needed). Decided from the head alone, before anything
//! is done.

use crate::config::admin::Admin;
use std::net::{IpAddr, SocketAddr};

/// The header the dashboard sends with every call. A form cannot send it, and a cross-site
/// `fetch` with it needs a CORS preflight, which this listener never grants.
pub(super) const DASHBOARD_HEADER: &str = "x-proxyd-dashboard";

/// Why a request was refused, with the status and text it gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// `Host` is neither this listener's address nor one of `server_names`.
    Host,
    /// A state-changing request from another origin, or from a page that may be.
    CrossSite,
    /// A state-changing request with a body type a form sends.
    ContentType,
}

impl Refused {
    pub(super) fn answer(&self) -> (u16, &'static str) {
        match self {
            Refused::Host => (
                421,
                "Host is not this admin listener's address or one of admin server_names",
            ),
            Refused::CrossSite => (
                403,
                "refused: a state-changing request needs the X-Proxyd-Dashboard header (or Authorization: Bearer) and no other site's Origin",
            ),
            Refused::ContentType => (
                415,
                "refused: a state-changing request carries no body, or application/json",
            ),
        }
    }
}

fn header<'h>(headers: &'h [httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Checks `Host` against `local` (the address the client reached; `None` on a unix socket,
/// which no web page can reach). A request without `Host` is not a browser's.
pub(super) fn check_host(
    admin: &Admin,
    local: Option<SocketAddr>,
    headers: &[httparse::Header],
) -> Result<(), Refused> {
    let Some(local) = local else {
        return Ok(());
    };
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        // None at all is allowed; two are refused.
        return match header(headers, "host") {
            None => Ok(()),
            Some(_) => Err(Refused::Host),
        };
    };
    let Ok(host) = std::str::from_utf8(host.value) else {
        return Err(Refused::Host);
    };
    let (name, port) = split_host(host.trim()).ok_or(Refused::Host)?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let port_ok = port.is_none_or(|p| p == local.port());
    let ours = match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical() == local.ip().to_canonical() && port_ok,
        Err(_) if name == "localhost" => local.ip().is_loopback() && port_ok,
        Err(_) => admin.server_names.contains(&name),
    };
    if ours {
        Ok(())
    } else {
        Err(Refused::Host)
    }
}

/// `name` and port of a `Host` value (`[v6]:port`, `v4:port`, `name:port`, or no port).
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Checks a request that changes something (any method but GET and HEAD). `bearer`: it
/// carried the right token, which a browser never adds by itself.
pub(super) fn check_action(
    method: &str,
    headers: &[httparse::Header],
    bearer: bool,
) -> Result<(), Refused> {
    if matches!(method, "GET" | "HEAD") {
        return Ok(());
    }
    // Another site's page (browsers send Origin on every cross-origin POST, and
    // Sec-Fetch-Site on every request): refused, whatever the credential.
    let same_origin = header(headers, "origin").map(|o| same_origin(o, header(headers, "host")));
    if same_origin == Some(false) {
        return Err(Refused::CrossSite);
    }
    if header(headers, "sec-fetch-site").is_some_and(|s| s != b"same-origin") {
        return Err(Refused::CrossSite);
    }
    if let Some(ct) = header(headers, "content-type") {
        let media = ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
        if !media.eq_ignore_ascii_case(b"application/json") {
            return Err(Refused::ContentType);
        }
    }
    if bearer || same_origin == Some(true) || header(headers, DASHBOARD_HEADER).is_some() {
        Ok(())
    } else {
        Err(Refused::CrossSite)
    }
}

/// Whether `Origin` is `http://` + `Host` (the listener speaks plain HTTP).
fn same_origin(origin: &[u8], host: Option<&[u8]>) -> bool {
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix(b"http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host.trim_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::admin::AdminAddr;

    fn admin() -> Admin {
        Admin {
            listen: AdminAddr::Tcp("0.0.0.0:9180".parse().unwrap()),
            token: None,
            basic_auth: Vec::new(),
            decoy: 0,
            unauthenticated: true,
            public_metrics: false,
            server_names: vec!["admin.example".into()],
        }
    }

    fn host(local: &str, value: &str) -> Result<(), Refused> {
        let h = [httparse::Header {
            name: "Host",
            value: value.as_bytes(),
        }];
        check_host(&admin(), Some(local.parse().unwrap()), &h)
    }

    #[test]
    fn hosts() {
        assert_eq!(host("127.0.0.1:9180", "127.0.0.1:9180"), Ok(()));
        assert_eq!(host("127.0.0.1:9180", "localhost:9180"), Ok(()));
        assert_eq!(host("127.0.0.1:9180", "LOCALHOST"), Ok(()));
        assert_eq!(host("10.0.0.1:9180", "localhost:9180"), Err(Refused::Host));
        assert_eq!(host("10.0.0.1:9180", "10.0.0.1:9180"), Ok(()));
        assert_eq!(host("10.0.0.1:9180", "10.0.0.1:9181"), Err(Refused::Host));
        assert_eq!(host("10.0.0.1:9180", "10.0.0.2:9180"), Err(Refused::Host));
        assert_eq!(host("10.0.0.1:9180", "admin.example:443"), Ok(()));
        assert_eq!(host("10.0.0.1:9180", "Admin.Example."), Ok(()));
        assert_eq!(host("127.0.0.1:9180", "evil.test:9180"), Err(Refused::Host));
        assert_eq!(host("[::1]:9180", "[::1]:9180"), Ok(()));
        assert_eq!(host("[::ffff:127.0.0.1]:9180", "127.0.0.1:9180"), Ok(()));
        for bad in ["", ":9180", "[::1", "127.0.0.1:x", "127.0.0.1:99999", "a b"] {
            assert_eq!(host("127.0.0.1:9180", bad), Err(Refused::Host), "{bad}");
        }
    }

    fn action(method: &str, hs: &[(&str, &str)], bearer: bool) -> Result<(), Refused> {
        let h: Vec<httparse::Header> = hs
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        check_action(method, &h, bearer)
    }

    #[test]
    fn actions() {
        let host = ("Host", "127.0.0.1:9180");
        assert_eq!(action("GET", &[host], false), Ok(()));
        assert_eq!(action("POST", &[host], false), Err(Refused::CrossSite));
        assert_eq!(action("POST", &[host], true), Ok(()));
        assert_eq!(
            action("POST", &[host, ("X-Proxyd-Dashboard", "1")], false),
            Ok(())
        );
        assert_eq!(
            action("POST", &[host, ("Origin", "http://127.0.0.1:9180")], false),
            Ok(())
        );
        for origin in ["http://evil.test", "null", "https://127.0.0.1:9180"] {
            assert_eq!(
                action(
                    "POST",
                    &[host, ("Origin", origin), ("X-Proxyd-Dashboard", "1")],
                    true
                ),
                Err(Refused::CrossSite),
                "{origin}"
            );
        }
        assert_eq!(
            action("POST", &[host, ("Sec-Fetch-Site", "cross-site")], true),
            Err(Refused::CrossSite)
        );
        for ct in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                action("POST", &[host, ("Content-Type", ct)], true),
                Err(Refused::ContentType),
                "{ct}"
            );
        }
        assert_eq!(
            action(
                "POST",
                &[host, ("Content-Type", "application/json; charset=utf-8")],
                true
            ),
            Ok(())
        );
    }
}
