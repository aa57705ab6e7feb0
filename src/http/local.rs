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

/// Writes the head of a response made here: the fields the filters finished (`h`, over
/// `raw`), then the framing (`body_len`) and connection decided here. `date` is the current
/// HTTP-date (formatted once per second by the caller).
pub fn write_head(
    status: u16,
    h: &Headers,
    raw: &[u8],
    body_len: usize,
    connection: Connection,
    date: &str,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: proxyd\r\nDate: {date}\r\n",
        status,
        reason(status)
    );
    h.write(raw, out);
    if body_len > 0 && !h.has_named(raw, b"content-type") {
        out.extend_from_slice(b"Content-Type: text/plain\r\n");
    }
    let _ = write!(out, "Content-Length: {body_len}\r\n");
    match connection {
        Connection::Default => {}
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Connection::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// `write_head`, then the whole body (a HEAD request gets the head only).
#[allow(clippy::too_many_arguments)]
pub fn write(
    status: u16,
    h: &Headers,
    raw: &[u8],
    body: &[u8],
    head_only: bool,
    connection: Connection,
    date: &str,
    out: &mut Vec<u8>,
) {
    write_head(status, h, raw, body.len(), connection, date, out);
    if !head_only {
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
