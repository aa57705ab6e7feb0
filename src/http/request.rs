//! Request heads: parse what the client sent (httparse) and write the head we send upstream.

use super::body::Framer;
use super::headers::{classify, Headers, Kind};
use super::{path, span, strict, token_list_contains, HeaderSpans, MAX_HEADERS};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Malformed or ambiguous head: 400.
    Malformed,
    /// Head larger than the buffer, or too many header lines: 431.
    TooLarge,
    /// Request target longer than the limit: 414.
    UriTooLong,
    /// Declared body larger than `client_max_body_size`: 413.
    BodyTooLarge,
    /// A transfer coding we cannot frame: 501.
    UnsupportedEncoding,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::Malformed => 400,
            RequestError::TooLarge => 431,
            RequestError::UriTooLong => 414,
            RequestError::BodyTooLarge => 413,
            RequestError::UnsupportedEncoding => 501,
        }
    }
}

/// Per-server bounds a head is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_headers: usize,
    pub max_uri: usize,
    /// 0 means no limit.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_headers: MAX_HEADERS,
            max_uri: 8192,
            max_body: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: String,
    pub uri: String,
    /// The path routes match against: normalized (see `path::normalize`), no query.
    pub route_path: String,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub host: Option<String>,
    pub keep_alive: bool,
    pub body: Framer,
    pub has_body: bool,
    /// The validated `Content-Length`, which the proxy writes itself when forwarding.
    pub content_length: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// Bytes of the head, including the final empty line.
    pub head_len: usize,
    /// The request line carried an absolute URI; `host` came from it.
    pub absolute_form: bool,
    /// `Connection: upgrade` with an `Upgrade` protocol list, on a request without a body:
    /// passed upstream, and a 101 answer turns the connection into a tunnel.
    pub upgrade: Option<String>,
    /// Name and value ranges of every header inside the head bytes.
    headers: HeaderSpans,
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
    let mut head = RequestHead::default();
    Ok(parse_into(buf, limits, &mut head)?.then_some(head))
}

/// Reuses `s` (when there is one) for `v`.
fn put(slot: &mut Option<String>, v: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(v);
        }
        None => *slot = Some(v.to_owned()),
    }
}

/// `parse` into `head`, reusing its memory: a worker parses every request into a recycled
/// head, so steady keep-alive traffic allocates nothing here. `Ok(false)` means more bytes
/// are needed; after that or an error, `head` holds nothing meaningful.
pub fn parse_into(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<bool, RequestError> {
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // A request line that alone outgrows the URI limit will never fit.
            if !buf.contains(&b'\n') && buf.len() > limits.max_uri + 32 {
                return Err(RequestError::UriTooLong);
            }
            return Ok(false);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(_) => return Err(RequestError::Malformed),
    };
    let raw = &buf[..head_len];
    if !strict::line_endings_ok(raw) {
        return Err(RequestError::Malformed);
    }
    if req.headers.len() > limits.max_headers {
        return Err(RequestError::TooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed);
    };
    if target.len() > limits.max_uri {
        return Err(RequestError::UriTooLong);
    }
    if !strict::target_ok(target.as_bytes()) {
        return Err(RequestError::Malformed);
    }
    head.method.clear();
    head.method.push_str(method);
    head.uri.clear();
    head.uri.push_str(target);
    head.minor = minor;
    head.keep_alive = minor >= 1;
    head.body = Framer::Done;
    head.has_body = false;
    head.content_length = None;
    head.head_len = head_len;
    head.absolute_form = false;
    head.headers.clear();
    // Optional fields keep their strings while each request has them (see `put`).
    let (mut has_host, mut has_referer, mut has_agent) = (false, false, false);
    let mut content_length: Option<u64> = None;
    let mut coding: Option<strict::Coding> = None;
    let mut connection_upgrade = false;
    let mut upgrade: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let (Some(n), Some(v)) = (span(raw, h.name.as_bytes()), span(raw, h.value)) else {
            return Err(RequestError::Malformed);
        };
        let kind = classify(h.name.as_bytes());
        head.headers.push((n, v, kind));
        match kind {
            Kind::Host => {
                let v = strict::trim_ows(h.value);
                if has_host || !strict::host_ok(v) {
                    return Err(RequestError::Malformed);
                }
                has_host = true;
                // host_ok admits ASCII only. Names are case-insensitive: kept lowercase
                // for routing and logs.
                put(&mut head.host, std::str::from_utf8(v).unwrap_or_default());
                if let Some(h) = &mut head.host {
                    h.make_ascii_lowercase();
                }
            }
            Kind::ContentLength => {
                let v = strict::content_length(h.value).ok_or(RequestError::Malformed)?;
                if content_length.is_some_and(|c| c != v) {
                    return Err(RequestError::Malformed);
                }
                content_length = Some(v);
            }
            Kind::TransferEncoding => {
                // Several lines are one list; a second "chunked" makes it unframeable.
                coding = Some(match (coding, strict::transfer_coding(h.value)) {
                    (None, c) => c,
                    _ => strict::Coding::Unsupported,
                });
            }
            Kind::Connection => {
                if token_list_contains(h.value, "close") {
                    head.keep_alive = false;
                } else if minor == 0 && token_list_contains(h.value, "keep-alive") {
                    head.keep_alive = true;
                }
                connection_upgrade |= token_list_contains(h.value, "upgrade");
            }
            Kind::Upgrade => {
                // Two Upgrade lines are ambiguous: no upgrade at all.
                upgrade = if upgrade.is_none() {
                    Some(h.value)
                } else {
                    Some(b"")
                };
            }
            Kind::Referer => {
                has_referer = true;
                put(&mut head.referer, &String::from_utf8_lossy(h.value));
            }
            Kind::UserAgent => {
                has_agent = true;
                put(&mut head.user_agent, &String::from_utf8_lossy(h.value));
            }
            _ => {}
        }
    }
    if !has_host {
        head.host = None;
    }
    if !has_referer {
        head.referer = None;
    }
    if !has_agent {
        head.user_agent = None;
    }
    head.upgrade = None;
    match coding {
        // Both framings at once is the classic smuggling vector (RFC 9112 section 6.1 lets
        // us reject it); HTTP/1.0 has no chunked.
        Some(_) if content_length.is_some() || minor == 0 => return Err(RequestError::Malformed),
        Some(strict::Coding::Chunked) => {
            head.body = Framer::chunked();
            head.has_body = true;
        }
        Some(_) => return Err(RequestError::UnsupportedEncoding),
        None => {
            if let Some(n) = content_length {
                if limits.max_body > 0 && n > limits.max_body {
                    return Err(RequestError::BodyTooLarge);
                }
                head.body = if n == 0 {
                    Framer::Done
                } else {
                    Framer::Length(n)
                };
                head.has_body = n > 0;
                head.content_length = Some(n);
            }
        }
    }
    // Absolute-form ("GET http://host/path"): the authority replaces Host (RFC 9112
    // section 3.2.2) and the upstream gets the origin form.
    let scheme = |s: &str| {
        head.uri
            .as_bytes()
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s.as_bytes()))
    };
    if scheme("http://") || scheme("https://") {
        let rest = &head.uri[head.uri.find("://").map_or(0, |i| i + 3)..];
        let (authority, path) = rest
            .find('/')
            .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        if !strict::host_ok(authority.as_bytes()) {
            return Err(RequestError::Malformed);
        }
        head.host = Some(authority.to_ascii_lowercase());
        head.uri = path.to_string();
        head.absolute_form = true;
    }
    if minor >= 1 && head.host.is_none() {
        return Err(RequestError::Malformed);
    }
    if let (true, Some(protocols), false, 1) = (connection_upgrade, upgrade, head.has_body, minor) {
        let protocols = strict::trim_ows(protocols);
        let valid = protocols
            .iter()
            .all(|&b| strict::is_tchar(b) || b"/, \t".contains(&b));
        if valid && !protocols.is_empty() && !head.body.is_chunked() {
            head.upgrade = Some(String::from_utf8_lossy(protocols).into_owned());
        }
    }
    if head.uri == "*" && head.method == "OPTIONS" {
        head.route_path.clear();
        head.route_path.push('*');
    } else {
        let path = head.uri.split(['?', '#']).next().unwrap_or("");
        path::normalize_into(path, &mut head.route_path).ok_or(RequestError::Malformed)?;
    }
    Ok(true)
}

impl RequestHead {
    /// Header fields its span list has room for (what it keeps when reused).
    pub fn header_capacity(&self) -> usize {
        self.headers.capacity()
    }

    /// Every header's name and value, in order.
    pub fn header_pairs<'a>(
        &'a self,
        raw: &'a [u8],
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + use<'a> {
        self.headers.iter().filter_map(move |(n, v, _)| {
            let name = std::str::from_utf8(raw.get(n.clone())?).ok()?;
            Some((name, raw.get(v.clone())?))
        })
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values<'a, 'n>(
        &'a self,
        raw: &'a [u8],
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers.iter().filter_map(move |(n, v, _)| {
            let n = raw.get(n.clone())?;
            n.eq_ignore_ascii_case(name.as_bytes())
                .then(|| raw.get(v.clone()))
                .flatten()
        })
    }

    /// The query string (after '?'), if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.split_once('?').map(|(_, q)| q)
    }

    /// The normalized path, for routing.
    pub fn path(&self) -> &str {
        &self.route_path
    }

    /// The path as the client sent it (no query or fragment).
    pub fn raw_path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("")
    }

    /// The path has an escaped slash or backslash, or a bare backslash (see
    /// `path::has_encoded_slash`).
    pub fn encoded_slash(&self) -> bool {
        path::has_encoded_slash(&self.route_path)
    }

    /// Host without port, lowercased, for routing.
    pub fn host_name(&self) -> Option<&str> {
        let h = self.host.as_deref()?;
        Some(if h.starts_with('[') {
            h.find(']').map_or(h, |i| &h[..=i])
        } else {
            // "example.com." is the same name, fully qualified (nginx drops the dot too).
            let name = h.rsplit_once(':').map_or(h, |(n, _)| n);
            name.strip_suffix('.').unwrap_or(name)
        })
    }

    /// The head's end-to-end fields as they go upstream, into `h` (refilled): the framing
    /// fields left out (`write_upstream` writes its own), `Host` first: the client's, the
    /// authority of an absolute-form target, or `default_host` for an HTTP/1.0 request
    /// without one. The filters edit them next.
    pub fn upstream_fields(&self, default_host: &str, h: &mut Headers) {
        h.fill(&self.headers);
        match (&self.host, self.absolute_form) {
            (None, _) => h.prepend("Host", default_host.as_bytes()),
            (Some(authority), true) => {
                h.remove(Kind::Host);
                h.prepend("Host", authority.as_bytes());
            }
            (Some(_), false) => {}
        }
    }

    /// Writes the head sent upstream: the request line (with `uri` in place of the
    /// client's target when set), the fields the filters finished, the upgrade the client
    /// asked for, and the framing this proxy decided (it never copies framing bytes).
    pub fn write_upstream(&self, raw: &[u8], uri: Option<&str>, h: &Headers, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(raw.len() + 128);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.unwrap_or(&self.uri).as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        h.write(raw, out);
        if let Some(protocols) = &self.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
            out.extend_from_slice(protocols.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if matches!(self.body, Framer::Chunked(_)) {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if let Some(n) = self.content_length {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether a request may be replayed on another connection after a failure.
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker parses every request into a recycled head: whatever the previous request
    /// left in it must not show through.
    #[test]
    fn reused_head_equals_fresh_parse() {
        let reqs: [&[u8]; 7] = [
            b"GET /a HTTP/1.1\r\nHost: A.com\r\nUser-Agent: x\r\nReferer: r\r\n\r\n",
            b"POST /p?q HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\n",
            b"GET http://C.org:8/x HTTP/1.1\r\nHost: other\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: d\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"PUT /c HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"GET /%61//b/./c HTTP/1.0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: f\r\n\r\n",
        ];
        let limits = Limits::default();
        let mut reused = RequestHead::default();
        for round in 0..3 {
            for i in 0..reqs.len() {
                let raw = reqs[(i * (round + 1)) % reqs.len()];
                // A malformed request in between leaves a half-filled head behind.
                let _ = parse_into(
                    b"GET /zz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                    &limits,
                    &mut reused,
                );
                assert!(parse_into(raw, &limits, &mut reused).unwrap());
                let fresh = parse(raw, &limits).unwrap().unwrap();
                assert_eq!(format!("{reused:?}"), format!("{fresh:?}"));
            }
        }
    }

    #[test]
    fn strict_heads() {
        let l = Limits {
            max_headers: 3,
            max_uri: 300,
            max_body: 1000,
        };
        let p = |s: &[u8]| parse(s, &l).map(|h| h.map(|h| h.route_path));
        use RequestError::*;
        for (raw, want) in [
            (&b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..], Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Malformed),
            (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", Malformed),
            (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
            (b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\xc2\xa0\r\n\r\n", Malformed),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Malformed),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Malformed),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", BodyTooLarge),
            (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", TooLarge),
        ] {
            assert_eq!(p(raw), Err(want), "{:?}", String::from_utf8_lossy(raw));
        }
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(300));
        assert_eq!(p(long.as_bytes()), Err(UriTooLong));
        let partial = format!("GET /{}", "a".repeat(400));
        assert_eq!(p(partial.as_bytes()), Err(UriTooLong));
        assert_eq!(
            p(b"GET //%61dmin/./x/../?q=/../.. HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some("/admin/".to_string()))
        );
    }
}
