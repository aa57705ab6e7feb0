//! Response heads: parse what the upstream sent and write the head the client gets.

use super::body::Framer;
use super::headers::{classify, Headers, Kind};
use super::{local, span, strict, token_list_contains, HeaderSpans};
use std::io::Write;
use std::ops::Range;

/// The upstream sent something that is not a valid HTTP/1.x response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse;

/// Most header lines accepted from an upstream.
pub const MAX_RESPONSE_HEADERS: usize = 100;

#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub minor: u8,
    /// The upstream connection may carry another request after this response.
    pub reusable: bool,
    pub body: Framer,
    /// The validated `Content-Length`; the proxy writes the client's framing itself.
    pub content_length: Option<u64>,
    pub head_len: usize,
    /// The reason phrase as sent, when it is one we can pass on (visible ASCII, spaces).
    reason: Option<Range<usize>>,
    /// The `Upgrade` value of a 101.
    upgrade: Option<Range<usize>>,
    headers: HeaderSpans,
}

/// How the body goes to the client, decided by `write_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFraming {
    /// Strip chunked framing (an HTTP/1.0 client cannot read it).
    pub decode_chunked: bool,
    /// The client connection closes after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf`; `head_request` tells that no body follows.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    parse_reusing(buf, head_request, Vec::new())
}

/// `parse`, filling `spans` (emptied first) for the head's header list instead of a new
/// one; `ResponseHead::into_spans` gives it back for the next response.
pub fn parse_reusing(
    buf: &[u8],
    head_request: bool,
    mut spans: HeaderSpans,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse),
    };
    let raw = &buf[..head_len];
    if !strict::line_endings_ok(raw) {
        return Err(BadResponse);
    }
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(BadResponse);
    };
    if status < 100 {
        return Err(BadResponse);
    }
    // "HTTP/1.1 200 OK": the reason starts after the second space. httparse returns a static
    // "" for an empty or non-UTF-8 reason, so it is located in the raw line instead.
    let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let reason = (line_end > 13).then_some(13..line_end).filter(|r| {
        raw[r.clone()]
            .iter()
            .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    });
    let mut reusable = minor >= 1;
    let mut content_length = None;
    let mut coding = None;
    let mut upgrade = None;
    spans.clear();
    spans.reserve(resp.headers.len());
    let mut headers = spans;
    for h in resp.headers.iter() {
        let (Some(n), Some(v)) = (span(raw, h.name.as_bytes()), span(raw, h.value)) else {
            return Err(BadResponse);
        };
        let kind = classify(h.name.as_bytes());
        headers.push((n, v, kind));
        match kind {
            Kind::ContentLength => {
                let v = strict::content_length(h.value).ok_or(BadResponse)?;
                if content_length.is_some_and(|c| c != v) {
                    return Err(BadResponse);
                }
                content_length = Some(v);
            }
            Kind::TransferEncoding => {
                coding = Some(match (coding, strict::transfer_coding(h.value)) {
                    (None, c) => c,
                    _ => strict::Coding::Unsupported,
                });
            }
            Kind::Upgrade => upgrade = span(raw, strict::trim_ows(h.value)),
            Kind::Connection => {
                if token_list_contains(h.value, "close") {
                    reusable = false;
                } else if minor == 0 && token_list_contains(h.value, "keep-alive") {
                    reusable = true;
                }
            }
            _ => {}
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = match coding {
        // Both framings (nginx refuses the same), or a coding we would have to pass on
        // undecoded: nothing safe can be sent to the client.
        Some(_) if content_length.is_some() => return Err(BadResponse),
        // HTTP/1.0 has no transfer codings (as for requests).
        Some(_) if minor == 0 => return Err(BadResponse),
        Some(strict::Coding::Chunked) if !no_body => Framer::chunked(),
        Some(strict::Coding::Chunked) => Framer::Done,
        Some(_) => return Err(BadResponse),
        None if no_body => Framer::Done,
        None => match content_length {
            Some(0) => Framer::Done,
            Some(n) => Framer::Length(n),
            None => Framer::UntilClose,
        },
    };
    if body == Framer::UntilClose {
        reusable = false;
    }
    Ok(Some(ResponseHead {
        status,
        minor,
        reusable,
        body,
        content_length,
        head_len,
        reason,
        upgrade,
        headers,
    }))
}

impl ResponseHead {
    /// The header span list, emptied, for `parse_reusing`.
    pub fn into_spans(self) -> HeaderSpans {
        let mut spans = self.headers;
        spans.clear();
        spans
    }

    /// Header lines in the head.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// An interim response (1xx other than 101) that precedes the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// The head's end-to-end fields, into `h` (refilled; framing left out: `write_client`
    /// writes its own). The filters edit them next.
    pub fn fields(&self, h: &mut Headers) {
        h.fill(&self.headers);
    }

    /// Writes the head sent to the client: the status line, the fields the filters
    /// finished, and the framing decided here; returns how the body must be framed.
    pub fn write_client(
        &self,
        raw: &[u8],
        client_minor: u8,
        client_keep_alive: bool,
        h: &Headers,
        out: &mut Vec<u8>,
    ) -> ClientFraming {
        let chunked = matches!(self.body, Framer::Chunked(_));
        let decode_chunked = chunked && client_minor == 0;
        let close = !client_keep_alive || self.body == Framer::UntilClose || decode_chunked;
        out.reserve(raw.len() + 64);
        let _ = write!(out, "HTTP/1.1 {} ", self.status);
        match &self.reason {
            Some(r) => out.extend_from_slice(&raw[r.clone()]),
            None => out.extend_from_slice(local::reason(self.status).as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        h.write(raw, out);
        // Framing is decided here, never copied: chunked passes through as chunked (or is
        // decoded for HTTP/1.0), a length is the validated one. HEAD and 304 keep the length
        // they announce; 1xx and 204 carry none.
        if chunked && !decode_chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if let Some(n) = self.content_length {
            if !(100..200).contains(&self.status) && self.status != 204 {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if client_minor == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        ClientFraming {
            decode_chunked,
            close,
        }
    }

    /// Writes the `101 Switching Protocols` that turns the connection into a tunnel: the
    /// fields the filters finished, then the upgrade with the upstream's `Upgrade` value.
    /// None when the upstream named no protocol.
    pub fn write_upgrade(&self, raw: &[u8], h: &Headers, out: &mut Vec<u8>) -> Option<()> {
        let protocols = &raw[self.upgrade.clone()?];
        if protocols.is_empty() || self.status != 101 {
            return None;
        }
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        h.write(raw, out);
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.extend_from_slice(protocols);
        out.extend_from_slice(b"\r\n\r\n");
        Some(())
    }

    /// Writes an interim (1xx) head with the fields the filters finished.
    pub fn write_interim(&self, raw: &[u8], h: &Headers, out: &mut Vec<u8>) {
        self.write_client(raw, 1, true, h, out);
    }
}
