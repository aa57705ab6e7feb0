//! The strict parts of RFC 9112 that httparse leaves to us: line endings, framing header
//! values, `Host` syntax. Requests and responses share them, so an ambiguous message is
//! refused the same way whichever side sent it.

/// Every line of a head ends in CRLF: no bare LF (httparse accepts it), no bare CR, no NUL.
/// Two parsers that disagree on line ends are how requests get smuggled.
pub fn line_endings_ok(head: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (head.first(), head.last()) else {
        return true;
    };
    // Pairs of neighbours, folded without branches so the loop vectorizes: it runs on every
    // head in both directions.
    let bad = head.iter().zip(&head[1..]).fold(false, |bad, (&p, &b)| {
        bad | (b == 0) | ((b == b'\n') & (p != b'\r')) | ((p == b'\r') & (b != b'\n'))
    });
    !bad && first != b'\n' && first != 0 && last != b'\r'
}

/// Optional whitespace around a field value is SP and HTAB only (RFC 9110 section 5.6.3);
/// a non-breaking space or any other byte stays part of the value, and so makes a framing
/// value invalid.
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// A `Content-Length` value: ASCII digits only, at most 18 of them (no overflow).
pub fn content_length(v: &[u8]) -> Option<u64> {
    let v = trim_ows(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// What a `Transfer-Encoding` value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Exactly `chunked`: the only coding proxyd frames.
    Chunked,
    /// Codings that do not end in `chunked` (a request cannot be framed; a response is read
    /// until close).
    NotChunked,
    /// Anything else we could frame but will not pass on: `gzip, chunked`, `chunked, chunked`,
    /// empty elements, bad token characters.
    Unsupported,
}

pub fn transfer_coding(v: &[u8]) -> Coding {
    let items: Vec<&[u8]> = v.split(|&b| b == b',').map(trim_ows).collect();
    if items
        .iter()
        .any(|t| t.is_empty() || !t.iter().all(|&b| is_tchar(b)))
    {
        return Coding::Unsupported;
    }
    let chunked = |t: &&[u8]| t.eq_ignore_ascii_case(b"chunked");
    match items.iter().filter(|t| chunked(t)).count() {
        0 => Coding::NotChunked,
        1 if items.len() == 1 => Coding::Chunked,
        _ => Coding::Unsupported,
    }
}

/// RFC 9110 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `Host` value (or an absolute-form authority without userinfo): `reg-name` or
/// `IP-literal`, then an optional numeric port. Empty is refused.
pub fn host_ok(v: &[u8]) -> bool {
    if v.is_empty() {
        return false;
    }
    let (name, port) = if v[0] == b'[' {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        let rest = &v[close + 1..];
        match rest.split_first() {
            None => return true,
            Some((b':', port)) => (&v[..0], port),
            Some(_) => return false,
        }
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &v[..0]),
        }
    };
    let reg_name_ok = name
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
    reg_name_ok && port_ok && (v[0] == b'[' || !name.is_empty())
}

/// A request target byte: visible ASCII only (raw UTF-8 or controls are refused; clients
/// percent-encode).
pub fn target_ok(t: &[u8]) -> bool {
    // No fragment either (RFC 9112 3.2): `/public#/../admin` would be routed as `/public`
    // while a backend that keeps the rest resolves `/admin`.
    !t.is_empty() && t.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        assert!(line_endings_ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!line_endings_ok(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(!line_endings_ok(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"));
        assert!(!line_endings_ok(b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"));
        assert!(!line_endings_ok(b"x\r"));
    }

    #[test]
    fn framing_values() {
        assert_eq!(content_length(b" 42\t"), Some(42));
        assert_eq!(content_length(b"5\xc2\xa0"), None);
        assert_eq!(content_length(b"+5"), None);
        assert_eq!(content_length(b"5, 5"), None);
        assert_eq!(content_length(b"1234567890123456789"), None);
        assert_eq!(transfer_coding(b"chunked"), Coding::Chunked);
        assert_eq!(transfer_coding(b" Chunked "), Coding::Chunked);
        assert_eq!(transfer_coding(b"gzip"), Coding::NotChunked);
        assert_eq!(transfer_coding(b"gzip, chunked"), Coding::Unsupported);
        assert_eq!(transfer_coding(b"chunked, gzip"), Coding::Unsupported);
        assert_eq!(transfer_coding(b"chunked, chunked"), Coding::Unsupported);
        assert_eq!(transfer_coding(b"chunked\xc2\xa0"), Coding::Unsupported);
        assert_eq!(transfer_coding(b""), Coding::Unsupported);
    }

    #[test]
    fn hosts() {
        for ok in [
            "a",
            "example.com:8080",
            "[::1]",
            "[::1]:80",
            "10.0.0.1",
            "xn--a.b",
        ] {
            assert!(host_ok(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "a b", "a/b", "u@h", ":80", "a:80x", "[::1", "[zz]", "a\\b", "[::1]x",
        ] {
            assert!(!host_ok(bad.as_bytes()), "{bad}");
        }
    }
}
