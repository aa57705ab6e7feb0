//! HTTP codecs: HTTP/1.x heads and body framing, and HTTP/2 frames (`h2`). Everything
//! here is sans I/O: functions take bytes and return parsed heads, frames, framing
//! decisions or bytes to send.

pub mod body;
pub mod h2;
#[doc(hidden)]
pub mod headers;
pub mod local;
pub mod path;
pub mod reframe;
pub mod request;
pub mod request_id;
pub mod response;
pub mod strict;
pub mod trace;

use std::ops::Range;

/// Where each header's name and value lie inside the raw head bytes, and its kind.
pub type HeaderSpans = Vec<(Range<usize>, Range<usize>, headers::Kind)>;

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

/// Most header lines one head can hold (request or response); `max_headers` in the config
/// is bounded by it.
pub const MAX_HEADERS: usize = 256;

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn token_list_contains(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// `bytes` as lower-case hex into `out` (twice their length): trace and span ids, request
/// ids.
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

/// `bytes` as a lower-case hex string.
pub fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}
