//! HTTP/1.x codecs. Everything here is sans I/O: functions take bytes and return parsed
//! heads, framing decisions or bytes to send.

pub mod body;
pub mod local;
pub mod request;
pub mod response;

/// Most headers accepted in one head (request or response).
pub const MAX_HEADERS: usize = 100;

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
