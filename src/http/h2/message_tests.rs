use super::*;
use crate::http::request::{self, Limits};

fn list(fields: &[(&str, &str)]) -> HeaderList {
    let mut l = HeaderList::default();
    for (n, v) in fields {
        l.push(n.as_bytes(), v.as_bytes());
    }
    l
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "example.com"),
    (":path", "/a?b=c"),
];

fn head(fields: &[(&str, &str)], end_stream: bool) -> Result<(Kind, String), Malformed> {
    let mut out = Vec::new();
    let kind = request_head(&list(fields), end_stream, &mut out)?;
    Ok((kind, String::from_utf8(out).unwrap()))
}

#[test]
fn a_request_becomes_the_http1_head_the_proxy_already_parses() {
    let mut f = GET.to_vec();
    f.extend([
        ("cookie", "a=1"),
        ("accept", "*/*"),
        ("cookie", "b=2"),
        ("te", "trailers"),
    ]);
    let (kind, text) = head(&f, true).unwrap();
    assert_eq!(kind, Kind::Normal);
    assert_eq!(
        text,
        "GET /a?b=c HTTP/1.1\r\nhost: example.com\r\ncookie: a=1; b=2\r\naccept: */*\r\nte: trailers\r\n\r\n"
    );
    let parsed = request::parse(text.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(parsed.host.as_deref(), Some("example.com"));
    assert_eq!(parsed.uri, "/a?b=c");
    assert!(!parsed.has_body);
}

#[test]
fn a_body_without_length_is_marked_chunked_and_a_length_is_kept() {
    let mut f = GET.to_vec();
    f[0] = (":method", "POST");
    let (_, text) = head(&f, false).unwrap();
    assert!(
        text.ends_with("transfer-encoding: chunked\r\n\r\n"),
        "{text}"
    );
    f.push(("content-length", "5"));
    let (_, text) = head(&f, false).unwrap();
    assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
    let parsed = request::parse(text.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(parsed.content_length, Some(5));
}

#[test]
fn host_stands_in_for_a_missing_authority_but_may_not_contradict_it() {
    let f = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        ("host", "h.test"),
    ];
    assert!(head(&f, true)
        .unwrap()
        .1
        .starts_with("GET / HTTP/1.1\r\nhost: h.test\r\n"));
    let mut f = GET.to_vec();
    f.push(("host", "other.test"));
    assert_eq!(head(&f, true), Err(":authority and host differ"));
    f.pop();
    f.push(("host", "example.com"));
    assert!(head(&f, true).is_ok());
}

#[test]
fn malformed_requests_are_refused_never_forwarded() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/")],
            "neither :authority nor host",
        ),
        (
            vec![(":scheme", "https"), (":authority", "a"), (":path", "/")],
            "no :method",
        ),
        (
            vec![(":method", "GET"), (":authority", "a"), (":path", "/")],
            "no :scheme",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
            ],
            "no :path",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "ftp"),
                (":authority", "a"),
                (":path", "/"),
            ],
            ":scheme neither http nor https",
        ),
        (
            vec![
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/"),
            ],
            "pseudo-header field repeated",
        ),
        (
            vec![
                (":method", "GET"),
                ("accept", "x"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/"),
            ],
            "pseudo-header field after a regular field",
        ),
        (
            vec![(":method", "GET"), (":status", "200")],
            "unknown or response pseudo-header field",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "x"),
            ],
            ":path not a path",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "*"),
            ],
            ":path not a path",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/a b"),
            ],
            ":path with a space, control or non-ASCII octet",
        ),
        (
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "u@a"),
                (":path", "/"),
            ],
            ":authority empty, with userinfo or with octets a host cannot hold",
        ),
        (
            vec![
                (":method", "G T"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/"),
            ],
            ":method not a token",
        ),
        (
            vec![
                (":method", "GET"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/"),
            ],
            ":protocol on a request other than CONNECT",
        ),
        (
            vec![
                (":method", "CONNECT"),
                (":scheme", "https"),
                (":authority", "a:443"),
            ],
            "CONNECT with :scheme or :path, or without :authority",
        ),
    ];
    for (f, why) in cases {
        assert_eq!(head(&f, true), Err(why), "{f:?}");
    }
    for (name, value, why) in [
        ("Accept", "x", "field name not a lower-case token"),
        ("x y", "x", "field name not a lower-case token"),
        ("x", "a\r\nb: c", "field value with forbidden octets"),
        ("x", "a\0", "field value with forbidden octets"),
        ("x", " a", "field value with forbidden octets"),
        ("connection", "close", "connection-specific field"),
        ("transfer-encoding", "chunked", "connection-specific field"),
        ("upgrade", "websocket", "connection-specific field"),
        ("keep-alive", "5", "connection-specific field"),
        ("te", "gzip", "te other than trailers"),
    ] {
        let mut f = GET.to_vec();
        f.push((name, value));
        assert_eq!(head(&f, true), Err(why), "{name}: {value:?}");
    }
    let mut f = GET.to_vec();
    f.extend([("content-length", "1"), ("content-length", "2")]);
    assert_eq!(head(&f, false), Err("content-length values differ"));
}

#[test]
fn connect_kinds_are_told_apart() {
    let plain = [(":method", "CONNECT"), (":authority", "a:443")];
    assert_eq!(head(&plain, false).unwrap().0, Kind::Connect);
    let ws = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":authority", "a"),
        (":path", "/chat"),
        ("sec-websocket-version", "13"),
    ];
    let (kind, text) = head(&ws, false).unwrap();
    assert_eq!(kind, Kind::ExtendedConnect);
    assert_eq!(
        text,
        "GET /chat HTTP/1.1\r\nhost: a\r\nsec-websocket-version: 13\r\n\r\n"
    );
}

#[test]
fn trailers_hold_regular_fields_only() {
    assert!(trailers(&list(&[("grpc-status", "0"), ("x-a", "1")])).is_ok());
    assert!(trailers(&list(&[(":status", "200")])).is_err());
    assert!(trailers(&list(&[("connection", "close")])).is_err());
    assert!(trailers(&list(&[("X-A", "1")])).is_err());
}
