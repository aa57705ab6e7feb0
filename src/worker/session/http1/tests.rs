//! The HTTP/1 session fed bytes (the test's end of a socketpair) on routes answered here:
//! the heads and bodies it writes back, pipelining in order, keep-alive and closing, a bad
//! head refused, an error page sent from its file. No upstream, no event loop: `drive` is called as the loop would.

use super::*;
use crate::worker::testing::{drain, harness, pair};
use std::io::Write;

const CONFIG: &str = r#"
[[server]]
listen = "127.0.0.1:8080"
[[server.route]]
path = "/a"
return = 200
body = "A"
headers = { "X-Route" = "a" }
[[server.route]]
path = "/b"
return = 201
body = "BB"
response_headers = { add = { "X-Edited" = "b" } }
"#;

fn session(w: &mut Ctx) -> (Http1, std::os::unix::net::UnixStream) {
    let (t, client) = pair();
    let mut s = Http1::new(1, 0, t, "127.0.0.1:5555".parse().unwrap(), 0);
    s.start(w.env.now + Duration::from_secs(10), w);
    (s, client)
}

/// A response as the client read it: status line, fields (names lower case), body.
type Response = (String, Vec<(String, String)>, String);

/// The responses in `bytes`, each framed by its Content-Length.
fn responses(mut bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&bytes[..end]).unwrap();
        let mut lines = head.trim_end().split("\r\n");
        let status = lines.next().unwrap().to_string();
        let fields: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        let len: usize = fields
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body = String::from_utf8(bytes[end..end + len].to_vec()).unwrap();
        bytes = &bytes[end + len..];
        out.push((status, fields, body));
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn pipelined_heads_are_answered_in_order_and_the_connection_stays() {
    let mut h = harness(CONFIG);
    let w = &mut h.ctx;
    let (mut s, mut client) = session(w);
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.client.ready.on_event(true, true, false);
    assert_eq!(s.drive(w), Drive::Keep);
    let got = responses(&drain(&mut client));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "HTTP/1.1 200 OK");
    assert_eq!(got[0].2, "A");
    assert_eq!(field(&got[0].1, "x-route"), Some("a"));
    assert_eq!(got[1].0, "HTTP/1.1 201 Created");
    assert_eq!(got[1].2, "BB");
    assert_eq!(field(&got[1].1, "x-edited"), Some("b"), "the route's edits");
    assert_eq!(
        field(&got[1].1, "connection"),
        None,
        "keep-alive is the default"
    );
    assert_eq!(s.served, 2);
    assert!(s.is_idle(), "between requests with nothing buffered");
    assert!(
        s.x.is_none() && s.req_buf.is_none(),
        "an idle connection holds nothing"
    );
}

#[test]
fn a_head_in_pieces_then_head_and_close() {
    let mut h = harness(CONFIG);
    let w = &mut h.ctx;
    let (mut s, mut client) = session(w);
    let pieces = [
        &b"HEAD /a HT"[..],
        b"TP/1.1\r\nHost: x\r\nConnection: cl",
        b"ose\r\n\r\n",
    ];
    for (i, piece) in pieces.iter().enumerate() {
        client.write_all(piece).unwrap();
        s.client.ready.on_event(true, true, false);
        // Asked to close, with everything it sent read: a plain close (no lingering).
        let last = i == pieces.len() - 1;
        assert_eq!(s.drive(w), if last { Drive::Close } else { Drive::Keep });
    }
    let bytes = drain(&mut client);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Length: 1\r\n"),
        "HEAD keeps the length: {text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "no body for HEAD: {text}");
}

#[test]
fn a_bad_head_gets_400_and_an_unknown_path_404() {
    let mut h = harness(CONFIG);
    let w = &mut h.ctx;
    let (mut s, mut client) = session(w);
    client
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.client.ready.on_event(true, true, false);
    assert_eq!(s.drive(w), Drive::Keep);
    let got = responses(&drain(&mut client));
    assert_eq!(got[0].0, "HTTP/1.1 404 Not Found");
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    s.client.ready.on_event(true, true, false);
    let _ = s.drive(w);
    let got = responses(&drain(&mut client));
    assert_eq!(got[0].0, "HTTP/1.1 400 Bad Request");
    assert_eq!(field(&got[0].1, "connection"), Some("close"));
}

#[test]
fn an_error_page_file_is_sent_from_the_file_and_the_connection_stays() {
    let page = std::env::temp_dir().join(format!("proxyd-unit-404-{}.html", std::process::id()));
    let body: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(&page, &body).unwrap();
    let config = CONFIG.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!(
            "listen = \"127.0.0.1:8080\"\nerror_pages = {{ 404 = \"{}\" }}",
            page.display()
        ),
    );
    let mut h = harness(&config);
    let w = &mut h.ctx;
    let (mut s, mut client) = session(w);
    client
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The socket pair holds less than the page: the test reads while the session writes.
    let mut bytes = Vec::new();
    for _ in 0..1000 {
        s.client.ready.on_event(true, true, false);
        assert_eq!(s.drive(w), Drive::Keep);
        bytes.extend(drain(&mut client));
        if s.served == 2 && s.is_idle() {
            break;
        }
    }
    std::fs::remove_file(&page).unwrap();
    let got = responses(&bytes);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "HTTP/1.1 404 Not Found");
    assert_eq!(field(&got[0].1, "content-type"), Some("text/html"));
    assert_eq!(got[0].2, body);
    assert_eq!(got[1].2, "A", "the next request on the connection");
}

#[test]
fn an_error_page_goes_after_the_rest_of_an_interim_head_half_written() {
    let config = format!(
        "[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n{CONFIG}\n[[server.route]]\npath = \"/p\"\nupstream = \"app\"\n"
    );
    let mut h = harness(&config);
    let w = &mut h.ctx;
    let (mut s, mut client) = session(w);
    // Nothing can be written to the client: what the session holds stays in `out`.
    s.client.ready.w = false;
    client
        .write_all(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.client.ready.on_event(true, false, false);
    let _ = s.drive(w);
    assert_eq!(s.phase, Phase::Proxy);
    // A 103 the client's socket took ten bytes of, when the upstream fails.
    let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    s.out = hints.to_vec();
    s.out_pos = 10;
    s.respond_error(w, 502, true);
    assert_eq!(s.out_pos, 0);
    assert!(
        s.out.starts_with(&hints[10..]),
        "{:?}",
        String::from_utf8_lossy(&s.out)
    );
    let page = &s.out[hints.len() - 10..];
    assert!(
        page.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"),
        "{:?}",
        String::from_utf8_lossy(page)
    );
    assert_eq!(s.x.as_ref().map(|x| x.status), Some(502));
}
