//! HTTP semantics of an HTTP/2 request (RFC 9113 8.1-8.3, RFC 8441 4): a decoded header
//! list is checked field by field, and a well-formed one is written as the HTTP/1.1 head
//! the rest of the proxy parses, routes and forwards, as nginx does with its h2 requests.
//! A malformed request is a stream error (PROTOCOL_ERROR): never guessed at, never
//! forwarded.

use std::ops::Range;

/// A decoded header list, in the order received: all names and values in one buffer.
#[derive(Default, Debug)]
pub struct HeaderList {
    bytes: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderList {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let n = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let v = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.fields.push((n..v, v..self.bytes.len()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Why a request is malformed (for the log; the peer gets RST_STREAM PROTOCOL_ERROR).
pub type Malformed = &'static str;

/// What kind of request a well-formed header list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request with a path, written as an HTTP/1.1 head.
    Normal,
    /// Extended CONNECT (RFC 8441): a tunnel for `:protocol` (a WebSocket), written as an
    /// HTTP/1.1 GET; the caller adds the upgrade fields its upstream needs.
    ExtendedConnect,
    /// Plain CONNECT (`:authority` only): a reverse proxy has nothing to connect it to.
    Connect,
}

/// The pseudo-header fields of a request.
#[derive(Default)]
struct Pseudo<'a> {
    method: Option<&'a [u8]>,
    scheme: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    path: Option<&'a [u8]>,
    protocol: Option<&'a [u8]>,
}

/// Fields HTTP/2 forbids (RFC 9113 8.2.2): they describe one HTTP/1 connection.
fn connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"proxy-connection" | b"keep-alive" | b"transfer-encoding" | b"upgrade"
    )
}

/// A field name as RFC 9113 8.2.1 allows it: a token, in lower case (pseudo-headers are
/// checked apart).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// A field value without NUL, CR or LF, and without leading or trailing whitespace
/// (RFC 9113 8.2.1).
fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && !value.first().is_some_and(|&b| b == b' ' || b == b'\t')
        && !value.last().is_some_and(|&b| b == b' ' || b == b'\t')
}

/// Checks a request's header list and writes it to `out` as an HTTP/1.1 head: the
/// request line from `:method` and `:path`, `host` from `:authority`, cookie crumbs
/// joined into one field (8.2.3), then the other fields in order. `end_stream` says the
/// request has no body; a body of unknown length is marked `transfer-encoding: chunked`,
/// which the proxy replaces with its own framing upstream, as for any HTTP/1.1 body.
pub fn request_head(
    list: &HeaderList,
    end_stream: bool,
    out: &mut Vec<u8>,
) -> Result<Kind, Malformed> {
    let mut p = Pseudo::default();
    let mut regular = false;
    let mut host: Option<&[u8]> = None;
    let mut content_length: Option<&[u8]> = None;
    for (name, value) in list.iter() {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err("pseudo-header field after a regular field");
            }
            let slot = match pseudo {
                b"method" => &mut p.method,
                b"scheme" => &mut p.scheme,
                b"authority" => &mut p.authority,
                b"path" => &mut p.path,
                b"protocol" => &mut p.protocol,
                _ => return Err("unknown or response pseudo-header field"),
            };
            if slot.replace(value).is_some() {
                return Err("pseudo-header field repeated");
            }
            if !valid_value(value) {
                return Err("pseudo-header value with forbidden octets");
            }
            continue;
        }
        regular = true;
        if !valid_name(name) {
            return Err("field name not a lower-case token");
        }
        if !valid_value(value) {
            return Err("field value with forbidden octets");
        }
        if connection_specific(name) {
            return Err("connection-specific field");
        }
        match name {
            b"te" if value != b"trailers" => return Err("te other than trailers"),
            b"host" if host.replace(value).is_some() => return Err("host repeated"),
            b"content-length" if content_length.replace(value).is_some_and(|v| v != value) => {
                return Err("content-length values differ")
            }
            _ => {}
        }
    }
    let method = p.method.ok_or("no :method")?;
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
    {
        return Err(":method not a token");
    }
    let kind = match (method, p.protocol) {
        (b"CONNECT", None) => {
            if p.scheme.is_some() || p.path.is_some() || p.authority.is_none() {
                return Err("CONNECT with :scheme or :path, or without :authority");
            }
            return Ok(Kind::Connect);
        }
        (b"CONNECT", Some(_)) => Kind::ExtendedConnect,
        (_, Some(_)) => return Err(":protocol on a request other than CONNECT"),
        _ => Kind::Normal,
    };
    let scheme = p.scheme.ok_or("no :scheme")?;
    if !matches!(scheme, b"http" | b"https") {
        return Err(":scheme neither http nor https");
    }
    let path = p.path.ok_or("no :path")?;
    // origin-form, or `*` for OPTIONS (8.3.1).
    if !(path.starts_with(b"/") || (path == b"*" && method == b"OPTIONS")) {
        return Err(":path not a path");
    }
    // It becomes the request line's target: no space or control octet may split it.
    if !path.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(":path with a space, control or non-ASCII octet");
    }
    let authority = match (p.authority, host) {
        (Some(a), Some(h)) if a != h => return Err(":authority and host differ"),
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err("neither :authority nor host"),
    };
    if authority.is_empty()
        || !authority
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && !b"@/?#".contains(&b))
    {
        return Err(":authority empty, with userinfo or with octets a host cannot hold");
    }
    out.clear();
    out.extend_from_slice(if kind == Kind::ExtendedConnect {
        b"GET"
    } else {
        method
    });
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority);
    out.extend_from_slice(b"\r\n");
    let mut cookies = list.iter().filter(|(n, _)| *n == b"cookie").peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (i, (_, v)) in cookies.enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(v);
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in list.iter() {
        if name.starts_with(b":") || matches!(name, b"host" | b"cookie") {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if content_length.is_none() && !end_stream && kind == Kind::Normal {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(kind)
}

/// Checks a trailer section (8.1): regular fields only, as for a request's fields.
pub fn trailers(list: &HeaderList) -> Result<(), Malformed> {
    for (name, value) in list.iter() {
        if name.starts_with(b":") {
            return Err("pseudo-header field in trailers");
        }
        if !valid_name(name) || !valid_value(value) || connection_specific(name) {
            return Err("trailer field not allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
