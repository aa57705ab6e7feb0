//! Response heads: parse what the upstream sent and write the head the client gets.

use super::body::Framer;
use super::request::parse_content_length;
use super::{copy_end_to_end, token_list_contains, HeaderSpans, MAX_HEADERS};
use std::io::Write;
use std::ops::Range;

/// The upstream sent something that is not a valid HTTP/1.x response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse;

#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub minor: u8,
    /// The upstream connection may carry another request after this response.
    pub reusable: bool,
    pub body: Framer,
    pub head_len: usize,
    reason: Range<usize>,
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

fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// Parses a response head at the start of `buf`; `head_request` tells that no body follows.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse),
    };
    let status = resp.code.ok_or(BadResponse)?;
    let minor = resp.version.unwrap_or(1);
    let reason = offset(buf, resp.reason.unwrap_or("").as_bytes());
    let mut reusable = minor >= 1;
    let mut content_length = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut headers = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        headers.push((offset(buf, h.name.as_bytes()), offset(buf, h.value)));
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = parse_content_length(h.value).ok_or(BadResponse)?;
            if content_length.is_some_and(|c| c != v) {
                return Err(BadResponse);
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            let v = String::from_utf8_lossy(h.value);
            chunked = v
                .rsplit(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if token_list_contains(h.value, "close") {
                reusable = false;
            } else if minor == 0 && token_list_contains(h.value, "keep-alive") {
                reusable = true;
            }
        }
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framer::Done
    } else if transfer_encoding {
        if chunked {
            Framer::chunked()
        } else {
            Framer::UntilClose
        }
    } else if let Some(n) = content_length {
        if n == 0 {
            Framer::Done
        } else {
            Framer::Length(n)
        }
    } else {
        Framer::UntilClose
    };
    if body == Framer::UntilClose {
        reusable = false;
    }
    Ok(Some(ResponseHead {
        status,
        minor,
        reusable,
        body,
        head_len,
        reason,
        headers,
    }))
}

impl ResponseHead {
    /// An interim response (1xx other than 101) that precedes the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Writes the head sent to the client and returns how the body must be framed.
    pub fn write_client(
        &self,
        raw: &[u8],
        client_minor: u8,
        client_keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> ClientFraming {
        let chunked = matches!(self.body, Framer::Chunked(_));
        let decode_chunked = chunked && client_minor == 0;
        let close = !client_keep_alive || self.body == Framer::UntilClose || decode_chunked;
        let _ = write!(out, "HTTP/1.1 {} ", self.status);
        out.extend_from_slice(&raw[self.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        copy_end_to_end(raw, &self.headers, out, |_, _| false);
        if chunked && !decode_chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
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

    /// Writes an interim (1xx) head through unchanged apart from hop-by-hop headers.
    pub fn write_interim(&self, raw: &[u8], out: &mut Vec<u8>) {
        let _ = self.write_client(raw, 1, true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nServer: up\r\n\r\nhello";
        let h = parse(raw, false).unwrap().unwrap();
        assert_eq!(h.body, Framer::Length(5));
        assert!(h.reusable);
        let mut out = Vec::new();
        let f = h.write_client(raw, 1, true, &mut out);
        assert_eq!(
            f,
            ClientFraming {
                decode_chunked: false,
                close: false
            }
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: up\r\n\r\n"
        );

        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = parse(raw, false).unwrap().unwrap();
        let mut out = Vec::new();
        let f = h.write_client(raw, 0, true, &mut out);
        assert!(f.decode_chunked && f.close);
        assert!(!String::from_utf8(out).unwrap().contains("chunked"));

        let h = parse(b"HTTP/1.0 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(h.body, Framer::UntilClose);
        assert!(!h.reusable);
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Framer::Done);
        assert!(parse(b"HTTP/1.1 abc\r\n\r\n", false).is_err());
    }
}
