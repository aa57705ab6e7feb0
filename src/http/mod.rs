//! HTTP/1.x codecs. Everything here is sans I/O: functions take bytes and return parsed
//! heads, framing decisions or bytes to send.

pub mod body;
#[doc(hidden)]
pub mod fuzz;
pub mod local;
pub mod path;
pub mod request;
pub mod response;
pub mod strict;

use std::ops::Range;

/// Where each header's name and value lie inside the raw head bytes.
pub type HeaderSpans = Vec<(Range<usize>, Range<usize>)>;

/// Where `part` (a slice httparse returned) lies inside `base`. httparse hands back static
/// empty strings for some absent parts (an empty reason phrase), so this checks instead of
/// subtracting pointers; `None` means "not inside", which callers treat as malformed or
/// empty as fits.
pub fn span(base: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let (b, p) = (base.as_ptr() as usize, part.as_ptr() as usize);
    let start = p.checked_sub(b)?;
    let end = start.checked_add(part.len())?;
    (end <= base.len()).then_some(start..end)
}

/// Headers a `Connection` token can never remove: the message's own framing and target.
/// Letting a client or upstream name them is how `Connection: Content-Length` smuggles.
fn protected(name: &[u8]) -> bool {
    [&b"host"[..], b"content-length", b"transfer-encoding"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// Copies the end-to-end headers of a head to `out` as `Name: value` lines, dropping
/// hop-by-hop headers, the framing headers (the proxy writes its own), and those named in
/// `Connection`. `claim` sees each surviving header first and returns true to take it over
/// (it is then not copied).
pub fn copy_end_to_end(
    raw: &[u8],
    headers: &[(Range<usize>, Range<usize>)],
    out: &mut Vec<u8>,
    mut claim: impl FnMut(&[u8], &[u8]) -> bool,
) {
    // Usually there is no Connection header at all; look them up once, not per header.
    let connection: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| raw[n.clone()].eq_ignore_ascii_case(b"connection"))
        .map(|(_, v)| &raw[v.clone()])
        .collect();
    let named_in_connection = |name: &[u8]| {
        !connection.is_empty() && {
            let name = std::str::from_utf8(name).unwrap_or("");
            connection.iter().any(|v| token_list_contains(v, name))
        }
    };
    for (n, v) in headers {
        let (name, value) = (&raw[n.clone()], &raw[v.clone()]);
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || (named_in_connection(name) && !protected(name))
            || claim(name, value)
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Most header lines one head can hold (request or response); `max_headers` in the config
/// is bounded by it.
pub const MAX_HEADERS: usize = 256;

/// Headers that describe one connection and never cross the proxy (RFC 9110 section 7.6.1).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn token_list_contains(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
