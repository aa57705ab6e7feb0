//! Responses proxyd makes itself: configured `return` routes, redirects and error pages.

use super::headers::Headers;

/// The standard reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Nothing: HTTP/1.1 keep-alive is the default.
    Default,
    Close,
    /// An HTTP/1.0 client that asked for keep-alive must be told.
    KeepAlive,
}

/// Puts the fields every response made here starts with, `Server` and `Date` (`date`: the
/// current HTTP-date, formatted once per second by the caller), before those in `h`, so
/// that response filters can edit them like any other.
pub fn own_fields(h: &mut Headers, date: &str) {
    h.prepend("Date", date.as_bytes());
    h.prepend("Server", b"proxyd");
}

/// Whether a response with this status carries no body (RFC 9110 15.3.5, 15.4.5): what a
/// configuration or a filter gave it is not sent.
pub fn bodiless(status: u16) -> bool {
    status == 204 || status == 304
}

/// Writes the head of a response made here: the fields the filters finished (`h`, over
/// `raw`), then the framing (`body_len`) and connection decided here. A 204 gets no
/// Content-Length; a 204 or 304 no body (`bodiless`).
pub fn write_head(
    status: u16,
    h: &Headers,
    raw: &[u8],
    body_len: usize,
    connection: Connection,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason(status));
    h.write(raw, out);
    let body_len = if bodiless(status) { 0 } else { body_len };
    if body_len > 0 && !h.has_named(raw, b"content-type") {
        out.extend_from_slice(b"Content-Type: text/plain\r\n");
    }
    if status != 204 {
        let _ = write!(out, "Content-Length: {body_len}\r\n");
    }
    match connection {
        Connection::Default => {}
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Connection::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// `write_head`, then the whole body (a HEAD request gets the head only).
pub fn write(
    status: u16,
    h: &Headers,
    raw: &[u8],
    body: &[u8],
    head_only: bool,
    connection: Connection,
    out: &mut Vec<u8>,
) {
    write_head(status, h, raw, body.len(), connection, out);
    if !head_only && !bodiless(status) {
        out.extend_from_slice(body);
    }
}

/// The small HTML page sent with an error status.
pub fn error_page(status: u16) -> Vec<u8> {
    format!(
        "<html>\r\n<head><title>{s} {r}</title></head>\r\n<body>\r\n<center><h1>{s} {r}</h1></center>\r\n<hr><center>proxyd</center>\r\n</body>\r\n</html>\r\n",
        s = status,
        r = reason(status)
    )
    .into_bytes()
}

pub fn error_headers() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "text/html".into())]
}
