//! A route's `request_headers` and `response_headers`: set, add and remove, seen by the
//! upstream and the client; framing and connection headers cannot be edited.

mod common;

use common::client::{get, Body, Client};
use common::raw::{bytes, RawUpstream};
use common::*;

#[test]
fn request_and_response_headers_are_edited() {
    let up = RawUpstream::start(|_| {
        vec![bytes(
            "HTTP/1.1 200 OK\r\nServer: secret/1.0\r\nX-Powered-By: php\r\nCache-Control: public\r\nContent-Length: 2\r\n\r\nok",
        )]
    });
    let route = r#"
[[server]]
listen = "127.0.0.1:{port}"
[[server.route]]
path = "/"
upstream = "app"
request_headers = { set = { "X-Env" = "prod", "User-Agent" = "proxyd-test" }, add = { "X-Tag" = "a" }, remove = ["X-Debug", "cookie"] }
response_headers = { set = { "Cache-Control" = "no-store" }, add = { "X-Served-By" = "proxyd" }, remove = ["Server", "x-powered-by"] }
"#;
    let conf = format!(
        "[[upstream]]\nname = \"app\"\npeers = [\"{}\"]\n{route}",
        up.addr()
    );
    let p = Proxyd::start(1, &conf);
    let mut c = Client::connect(&p.addr()).unwrap();
    c.send(
        "GET",
        "/x",
        &[
            ("X-Env", "dev"),
            ("X-Env", "dev2"),
            ("X-Debug", "1"),
            ("Cookie", "a=b"),
            ("X-Tag", "client"),
            ("User-Agent", "curl"),
        ],
        Body::None,
    )
    .unwrap();
    let r = c.recv(false).unwrap();
    assert_eq!(r.text(), "ok");
    // What the client gets.
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-served-by"), Some("proxyd"));
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("content-length"), Some("2"));
    // What the upstream got.
    let got = &up.requests()[0];
    let values = |name: &str| -> Vec<String> {
        got.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    assert_eq!(
        values("x-env"),
        ["prod"],
        "set replaces every field: {}",
        got.head
    );
    assert_eq!(values("user-agent"), ["proxyd-test"]);
    assert_eq!(values("x-tag"), ["client", "a"], "add appends");
    assert!(values("x-debug").is_empty() && values("cookie").is_empty());
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn framing_and_connection_headers_cannot_be_edited() {
    let dir = TempDir::new("edits");
    for (edit, name) in [
        (
            "request_headers = { set = { \"Content-Length\" = \"5\" } }",
            "Content-Length",
        ),
        (
            "request_headers = { add = { \"Transfer-Encoding\" = \"chunked\" } }",
            "Transfer-Encoding",
        ),
        ("request_headers = { remove = [\"Host\"] }", "Host"),
        (
            "response_headers = { set = { \"Connection\" = \"close\" } }",
            "Connection",
        ),
        (
            "response_headers = { add = { \"Upgrade\" = \"h2c\" } }",
            "Upgrade",
        ),
        (
            "request_headers = { set = { \"TE\" = \"trailers\" } }",
            "TE",
        ),
    ] {
        let conf = dir.write(
            "c.toml",
            &format!("[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nupstream = \"app\"\n{edit}\n"),
        );
        let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{edit}");
        assert!(
            err.contains(&format!("header \"{name}\" cannot be edited"))
                && err.contains("c.toml:8:"),
            "{edit}: {err}"
        );
    }
    let conf = dir.write(
        "c.toml",
        "[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nupstream = \"app\"\nrequest_headers = { set = { \"X-A\" = \"a\\r\\nX-Evil: 1\" } }\n",
    );
    let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains a line break"));
}

/// `-T` shows a route's edits as they were configured.
#[test]
fn dump_shows_header_edits() {
    let dir = TempDir::new("edits-dump");
    let conf = dir.write(
        "c.toml",
        "[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nupstream = \"app\"\nrequest_headers = { set = { \"X-Env\" = \"prod\" }, remove = [\"Cookie\"] }\n",
    );
    let out = proxyctl(&["-T", "--effective", "-c", conf.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("X-Env = \"prod\""), "{text}");
    assert!(text.contains("remove = [\"cookie\"]"), "{text}");
}

/// A route's own answer goes through the same filter stage as a proxied response: a
/// `return` with headers and a body on a route that also has `response_headers` (the chain
/// answers, then the response hooks edit the answer's head), and a redirect likewise. Error
/// pages proxyd makes are not edited. A `return` header that would frame the answer a second
/// time is refused.
#[test]
fn a_routes_own_answer_goes_through_its_response_filters() {
    let conf = r#"
[[server]]
listen = "127.0.0.1:{port}"
request_id = { header = "X-Request-Id" }
[[server.route]]
path = "/denied"
return = 401
body = "who are you?"
headers = { "WWW-Authenticate" = "Basic realm=\"x\"", "X-Internal" = "1", "Content-Type" = "text/plain" }
response_headers = { set = { "Cache-Control" = "no-store" }, remove = ["X-Internal", "X-Request-Id"] }
[[server.route]]
path = "/old"
redirect = "/new"
response_headers = { add = { "X-Moved" = "yes" } }
[[server.route]]
path = "/plain"
return = 200
body = "plain"
"#;
    let p = Proxyd::start(1, conf);
    let r = get(&p.addr(), "/denied").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "who are you?");
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"x\""));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-internal"), None, "removed by response_headers");
    assert_eq!(
        r.header("x-request-id"),
        None,
        "the edits run after the id is set"
    );
    assert_eq!(r.header("content-length"), Some("12"));
    let mut c = Client::connect(&p.addr()).unwrap();
    c.send("HEAD", "/denied", &[], Body::None).unwrap();
    let head = c.recv(true).unwrap();
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert_eq!(head.header("content-length"), Some("12"));
    assert_eq!(head.text(), "");
    let r = get(&p.addr(), "/old").unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/new"));
    assert_eq!(r.header("x-moved"), Some("yes"));
    let r = get(&p.addr(), "/plain").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    assert!(
        r.header("x-request-id").is_some(),
        "other routes keep the id"
    );
    assert_eq!(r.header("cache-control"), None);
    // No route matched: the 404 page is proxyd's, not edited by anyone.
    let p2 = Proxyd::start(
        1,
        "[[server]]\nlisten = \"127.0.0.1:{port}\"\n[[server.route]]\npath = \"/only\"\nreturn = 200\nresponse_headers = { add = { \"X-Edited\" = \"1\" } }\n",
    );
    let r = get(&p2.addr(), "/elsewhere").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-edited"), None);

    let dir = TempDir::new("return-headers");
    for (header, name) in [
        ("\"Content-Length\" = \"0\"", "Content-Length"),
        ("\"Transfer-Encoding\" = \"chunked\"", "Transfer-Encoding"),
        ("\"Connection\" = \"close\"", "Connection"),
    ] {
        let conf = dir.write(
            "r.toml",
            &format!("[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 200\nheaders = {{ {header} }}\n"),
        );
        let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{header}");
        assert!(
            err.contains(&format!("header \"{name}\" frames the response"))
                && err.contains("r.toml:5:"),
            "{header}: {err}"
        );
    }
    // Request edits still need an upstream: nothing goes anywhere from a `return` route.
    let conf = dir.write(
        "q.toml",
        "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 200\nrequest_headers = { set = { \"X-A\" = \"1\" } }\n",
    );
    let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("request_headers needs \"upstream\""));
}

/// The fields proxyd writes on its own answers, `Server` and `Date`, are fields like any
/// other to a route's response_headers (set replaces, remove removes: never two of them),
/// and an answer of 204 or 304 carries no body, whatever made it.
#[test]
fn own_answer_fields_are_edited_and_bodiless_statuses_send_no_body() {
    let conf = r#"
[[server]]
listen = "127.0.0.1:{port}"
[[server.route]]
path = "/r"
redirect = "/new"
response_headers = { set = { "Server" = "mine", "Date" = "x" } }
[[server.route]]
path = "/n"
return = 204
response_headers = { remove = ["Server"] }
[[server.route]]
path = "/m"
return = 304
"#;
    let p = Proxyd::start(1, conf);
    let raw = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let r = raw("/r");
    assert_eq!(r.matches("\r\nServer: ").count(), 1, "{r}");
    assert!(r.contains("\r\nServer: mine\r\n"), "{r}");
    assert_eq!(r.matches("\r\nDate: ").count(), 1, "{r}");
    assert!(r.contains("\r\nDate: x\r\n"), "{r}");
    let n = raw("/n");
    assert!(n.starts_with("HTTP/1.1 204 No Content\r\n"), "{n}");
    assert!(!n.contains("Server:"), "{n}");
    assert!(!n.to_ascii_lowercase().contains("content-length"), "{n}");
    assert!(n.ends_with("\r\n\r\n"), "no body: {n:?}");
    let m = raw("/m");
    assert!(m.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{m}");
    assert!(m.ends_with("\r\n\r\n"), "no body: {m:?}");

    let dir = TempDir::new("bodiless");
    for status in [204, 304] {
        let conf = dir.write(
            "b.toml",
            &format!("[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = {status}\nbody = \"oops\"\n"),
        );
        let out = proxyctl(&["-t", "-c", conf.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{status}");
        assert!(
            err.contains(&format!("a {status} answer has no body")) && err.contains("b.toml:4:"),
            "{err}"
        );
    }
}
