//! The chain over real heads: what goes upstream and what goes to the client once the
//! codecs parsed them and the filters finished them, and the verdicts filters give.

use super::*;
use crate::config::filters::{proxy_defaults, Fixed};
use crate::http::body::Framer;
use crate::http::request::{self, RequestError, RequestHead};
use crate::http::response::{self, ClientFraming, ResponseHead};
use crate::http::HeaderSpans;

/// A response head as the worker writes it for a proxied request.
trait Pipe {
    fn pipe(&self, raw: &[u8], minor: u8, keep: bool, out: &mut Vec<u8>) -> ClientFraming;
}

impl Pipe for ResponseHead {
    fn pipe(&self, raw: &[u8], minor: u8, keep: bool, out: &mut Vec<u8>) -> ClientFraming {
        let mut h = Headers::default();
        self.fields(&mut h);
        assert_eq!(
            on_response(&proxy_defaults(), raw, &mut h, &Cx::detached()),
            Verdict::Continue
        );
        self.write_client(raw, minor, keep, &h, out)
    }
}

fn run(chain: &[Filter], raw: &[u8], spans: &HeaderSpans) -> String {
    let mut h = Headers::end_to_end(spans);
    let cx = Cx {
        client_ip: "10.0.0.9",
        proto: "https",
        ..Cx::detached()
    };
    assert_eq!(on_request(chain, raw, &mut h, &cx), Verdict::Continue);
    let mut out = Vec::new();
    h.write(raw, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn chain_is_data() {
    let raw = b"Connection: x-a\r\nX-A: 1\r\nX-Forwarded-For: 1.1.1.1\r\n";
    let spans = vec![
        (0..10, 12..15, Kind::Connection),
        (17..20, 22..23, Kind::Other),
        (25..40, 42..49, Kind::XForwardedFor),
    ];
    // No filters: nothing changes.
    assert_eq!(run(&[], raw, &spans), String::from_utf8_lossy(raw));
    let named = b"Connection: x-a, Host\r\nX-A: 1\r\nHost: h\r\n";
    let spans2 = vec![
        (0..10, 12..21, Kind::Connection),
        (23..26, 28..29, Kind::Other),
        (31..35, 37..38, Kind::Host),
    ];
    assert_eq!(run(&[Filter::HopByHop], named, &spans2), "Host: h\r\n");
    assert_eq!(
        run(&proxy_defaults(), raw, &spans),
        "X-Forwarded-For: 1.1.1.1, 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
    );
    assert_eq!(
        run(&[Filter::HopByHop], raw, &spans),
        "X-Forwarded-For: 1.1.1.1\r\n"
    );
}

/// A chain that answers: the first answer wins (what follows never runs), it carries its
/// status, headers and body, and the response hooks then edit the answer's head.
#[test]
fn an_answer_carries_status_headers_and_body_and_the_response_hooks_edit_it() {
    let edits = HeaderEdits {
        set: [("X-Set".to_string(), "1".to_string())].into(),
        add: Default::default(),
        remove: vec!["X-Gone".to_string()],
    };
    let fixed = Fixed {
        status: 401,
        headers: vec![
            ("WWW-Authenticate".into(), "Basic realm=\"x\"".into()),
            ("X-Gone".into(), "soon".into()),
        ],
        body: b"who are you?"[..].into(),
    };
    let later = Fixed {
        status: 200,
        headers: vec![],
        body: b"never"[..].into(),
    };
    let chain = [
        Filter::EditResponse(edits),
        Filter::Return(fixed),
        Filter::Return(later),
    ];
    let raw = b"X-A: 1\r\n";
    let mut h = Headers::end_to_end(&vec![(0..3, 5..6, Kind::Other)]);
    let Verdict::Answer(a) = on_request(&chain, raw, &mut h, &Cx::detached()) else {
        panic!("the chain must answer");
    };
    assert_eq!(a.status, 401);
    assert_eq!(&*a.body, b"who are you?");
    assert_eq!(a.headers[0].0, "WWW-Authenticate");
    // The request head is untouched by an answer.
    let mut out = Vec::new();
    h.write(raw, &mut out);
    assert_eq!(out, b"X-A: 1\r\n");
    // The answer's head through the response hooks.
    let mut head = Headers::default();
    head.fill_pairs(&a.headers);
    assert_eq!(
        on_response(&chain, b"", &mut head, &Cx::detached()),
        Verdict::Continue
    );
    let mut out = Vec::new();
    head.write(b"", &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "WWW-Authenticate: Basic realm=\"x\"\r\nX-Set: 1\r\n"
    );
}

/// Request edits run in chain order after the forwarding headers; response edits do not
/// touch the request.
#[test]
fn request_and_response_edits_stay_on_their_side() {
    let raw = b"X-A: 1\r\nX-B: 2\r\n";
    let spans = vec![(0..3, 5..6, Kind::Other), (8..11, 13..14, Kind::Other)];
    let req = HeaderEdits {
        set: [("X-A".to_string(), "one".to_string())].into(),
        add: [("X-C".to_string(), "3".to_string())].into(),
        remove: vec![],
    };
    let resp = HeaderEdits {
        remove: vec!["X-B".to_string()],
        ..Default::default()
    };
    let chain = [Filter::EditRequest(req), Filter::EditResponse(resp)];
    assert_eq!(run(&chain, raw, &spans), "X-B: 2\r\nX-A: one\r\nX-C: 3\r\n");
    let mut h = Headers::end_to_end(&spans);
    assert_eq!(
        on_response(&chain, raw, &mut h, &Cx::detached()),
        Verdict::Continue
    );
    let mut out = Vec::new();
    h.write(raw, &mut out);
    assert_eq!(out, b"X-A: 1\r\n");
}

/// The head `h` (parsed from `raw`) as it goes upstream from client `ip`: its fields,
/// the proxy chain, the codec.
fn forward(h: &RequestHead, raw: &[u8], ip: &str) -> Vec<u8> {
    let cx = Cx {
        client_ip: ip,
        ..Cx::detached()
    };
    let mut fields = Headers::default();
    h.upstream_fields("app", &mut fields);
    assert_eq!(
        on_request(&proxy_defaults(), raw, &mut fields, &cx),
        Verdict::Continue
    );
    let mut out = Vec::new();
    h.write_upstream(raw, None, &fields, &mut out);
    out
}

#[test]
fn parses_and_rewrites() {
    let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: Ex.com:8080\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nContent-Length: 3\r\nX-Forwarded-For: 1.2.3.4\r\nKeep-Alive: 5\r\n\r\nabc";
    let h = request::parse(raw, &request::Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.head_len, raw.len() - 3);
    assert_eq!(h.path(), "/a");
    assert_eq!(h.host_name(), Some("ex.com"));
    assert!(h.keep_alive);
    assert_eq!(h.body, Framer::Length(3));
    let out = forward(&h, &raw[..h.head_len], "10.0.0.1");
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.starts_with("POST /a?b=1 HTTP/1.1\r\nHost: Ex.com:8080\r\n"),
        "{s}"
    );
    assert!(
        !s.contains("X-Drop") && !s.contains("Keep-Alive") && !s.contains("Connection"),
        "{s}"
    );
    assert!(s.contains("X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n"), "{s}");
    assert!(
        s.ends_with("X-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\n"),
        "{s}"
    );
}

#[test]
fn folds_forwarded_for_lines_and_replaces_proto() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nx-forwarded-for: 2.2.2.2\r\n\r\n";
    let h = request::parse(raw, &request::Limits::default())
        .unwrap()
        .unwrap();
    let out = forward(&h, raw, "3.3.3.3");
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3\r\n"),
        "{s}"
    );
    assert_eq!(s.matches("orwarded-For").count(), 1, "{s}");
    assert!(
        s.contains("X-Forwarded-Proto: http\r\n") && !s.contains("https"),
        "{s}"
    );
}

#[test]
fn absolute_form_sets_host_and_origin_form() {
    let raw = b"GET http://Example.com:81/a/b?q HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = request::parse(raw, &request::Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.uri, "/a/b?q");
    assert_eq!(h.host_name(), Some("example.com"));
    let out = forward(&h, raw, "1.1.1.1");
    let s = String::from_utf8(out).unwrap();
    assert!(
        // Host names are case-insensitive; the parsed one is kept lowercase.
        s.starts_with("GET /a/b?q HTTP/1.1\r\nHost: example.com:81\r\n"),
        "{s}"
    );
    assert!(!s.contains("other"), "{s}");
    assert_eq!(
        request::parse(
            b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            &request::Limits::default()
        )
        .unwrap_err(),
        RequestError::Malformed
    );
}

#[test]
fn framing_rules() {
    let p = |s: &str| request::parse(s.as_bytes(), &request::Limits::default());
    assert!(p("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    assert_eq!(
        p("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
        RequestError::Malformed
    );
    assert_eq!(
        p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap_err(),
        RequestError::Malformed
    );
    assert_eq!(
        p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .unwrap_err(),
        RequestError::Malformed
    );
    assert_eq!(
        p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap_err(),
        RequestError::UnsupportedEncoding
    );
    let h = p("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!h.keep_alive);
    let out = forward(&h, b"GET / HTTP/1.0\r\n\r\n", "1.1.1.1");
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("GET / HTTP/1.1\r\nHost: app\r\n"));
    let h = p("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.keep_alive);
    let h = p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.has_body);
}

#[test]
fn connection_cannot_remove_framing() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 4\r\n\r\n";
    let h = request::parse(raw, &request::Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.body, Framer::Length(4));
    let out = forward(&h, raw, "1.1.1.1");
    let s = String::from_utf8(out).unwrap();
    assert!(
        s.contains("\r\nHost: a\r\n") && s.contains("\r\nContent-Length: 4\r\n"),
        "{s}"
    );
    assert_eq!(s.matches("Content-Length").count(), 1, "{s}");
}

#[test]
fn framing_and_rewrite() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nServer: up\r\n\r\nhello";
    let h = response::parse(raw, false).unwrap().unwrap();
    assert_eq!(h.body, Framer::Length(5));
    assert!(h.reusable);
    let mut out = Vec::new();
    let f = h.pipe(raw, 1, true, &mut out);
    assert_eq!(
        f,
        response::ClientFraming {
            decode_chunked: false,
            close: false
        }
    );
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\n\r\n"
    );

    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let h = response::parse(raw, false).unwrap().unwrap();
    let mut out = Vec::new();
    let f = h.pipe(raw, 0, true, &mut out);
    assert!(f.decode_chunked && f.close);
    assert!(!String::from_utf8(out).unwrap().contains("chunked"));

    let h = response::parse(b"HTTP/1.0 200 OK\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert_eq!(h.body, Framer::UntilClose);
    assert!(!h.reusable);
    let h = response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert_eq!(h.body, Framer::Done);
    assert!(response::parse(b"HTTP/1.1 abc\r\n\r\n", false).is_err());
}

#[test]
fn reason_phrases_never_panic() {
    for raw in [
        &b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 \xff\xfe\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 Caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
    ] {
        let h = response::parse(raw, false).unwrap().unwrap();
        let mut out = Vec::new();
        h.pipe(raw, 1, true, &mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let raw = b"HTTP/1.1 404 Nope Nope\r\n\r\n";
    let mut out = Vec::new();
    response::parse(raw, true)
        .unwrap()
        .unwrap()
        .pipe(raw, 1, true, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 404 Nope Nope\r\n"));
}

#[test]
fn framing_is_strict_and_rewritten() {
    let bad: [&[u8]; 8] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\xc2\xa0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
    ];
    for raw in bad {
        assert!(
            response::parse(raw, false).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // "Connection: Content-Length" cannot take the framing away from the client.
    let raw = b"HTTP/1.1 200 OK\r\nConnection: Content-Length, X-A\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n";
    let h = response::parse(raw, false).unwrap().unwrap();
    let mut out = Vec::new();
    h.pipe(raw, 1, true, &mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    // HEAD and 304 keep the announced length; 204 loses it.
    let raw = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
    let h = response::parse(raw, false).unwrap().unwrap();
    assert_eq!(h.body, Framer::Done);
    let mut out = Vec::new();
    h.pipe(raw, 1, true, &mut out);
    assert!(out.ends_with(b"Content-Length: 10\r\n\r\n"));
    let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
    let mut out = Vec::new();
    response::parse(raw, false)
        .unwrap()
        .unwrap()
        .pipe(raw, 1, true, &mut out);
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
}
