//! Raw request and response corpus (RFC 9112 framing and smuggling defenses), each case
//! checked at both ends: what the client got, and exactly which requests the upstream framed
//! out of what proxyd sent it.

mod common;

use common::raw::{bytes, ok, RawUpstream, Reply};
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Splits a byte stream into responses: (status, head, body), by Content-Length, chunked,
/// or to the end.
fn responses(mut data: &[u8], head_request: bool) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&data[..end + 4]).into_owned();
        data = &data[end + 4..];
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let body = if (100..200).contains(&status) || status == 204 || status == 304 || head_request
        {
            Vec::new()
        } else if header("transfer-encoding").is_some() {
            let mut body = Vec::new();
            while let Some(le) = data.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(
                    std::str::from_utf8(&data[..le])
                        .unwrap_or("")
                        .split(';')
                        .next()
                        .unwrap(),
                    16,
                )
                .unwrap_or(0);
                data = &data[le + 2..];
                if size == 0 {
                    let te = data.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                    // Trailers end at an empty line.
                    let end = data
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(te + 2, |e| if te == 0 { 2 } else { e + 4 });
                    data = &data[end.min(data.len())..];
                    break;
                }
                let take = size.min(data.len());
                body.extend_from_slice(&data[..take]);
                data = &data[(take + 2).min(data.len())..];
            }
            body
        } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let n = n.min(data.len());
            let b = data[..n].to_vec();
            data = &data[n..];
            b
        } else {
            let b = data.to_vec();
            data = &[];
            b
        };
        out.push((status, head, body));
    }
    out
}

/// Sends `raw` on a fresh connection, reads the first response, then half-closes and reads
/// whatever else comes until the proxy closes.
fn exchange(addr: &str, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    // Until one final response is complete.
    loop {
        let r = responses(&got, false);
        let complete = r.iter().any(|(st, head, body)| {
            *st >= 200 && {
                let cl = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                });
                cl.is_none_or(|n| body.len() >= n)
                    && !head.to_ascii_lowercase().contains("transfer-encoding")
                    || got.ends_with(b"0\r\n\r\n")
            }
        });
        if complete {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    /// Status of the first response.
    status: u16,
    /// Requests the upstream framed.
    upstream: usize,
    /// Must appear in what the upstream received (all requests together).
    has: &'static [&'static str],
    /// Must not.
    lacks: &'static [&'static str],
}

fn case(
    name: &'static str,
    raw: impl AsRef<[u8]>,
    status: u16,
    upstream: usize,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> Case {
    Case {
        name,
        raw: raw.as_ref().to_vec(),
        status,
        upstream,
        has,
        lacks,
    }
}

fn rejected(name: &'static str, raw: impl AsRef<[u8]>, status: u16) -> Case {
    case(name, raw, status, 0, &[], &[])
}

const H: &str = "Host: a\r\n";

fn request_cases() -> Vec<Case> {
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\nX-Pad: 1234\r\n\r\n";
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    vec![
        // Accepted, and forwarded exactly once with proxy-written framing.
        case("simple GET", format!("GET / HTTP/1.1\r\n{H}\r\n"), 200, 1, &["GET / HTTP/1.1\r\n", "Host: a\r\n"], &[]),
        case("query kept", format!("GET /p?a=1&b=%20 HTTP/1.1\r\n{H}\r\n"), 200, 1, &["GET /p?a=1&b=%20 HTTP/1.1"], &[]),
        case("POST length", format!("POST /p HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"), 200, 1, &["Content-Length: 5\r\n", "\r\n\r\nhello"], &[]),
        case("POST zero length", format!("POST /p HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\n"), 200, 1, &["Content-Length: 0\r\n"], &[]),
        case("POST chunked", format!("POST /p HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 200, 1, &["Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"], &["Content-Length"]),
        case("chunk extensions", format!("POST /p HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n"), 200, 1, &["hello"], &[]),
        // Trailers are checked and dropped (as nginx drops them).
        case("chunked trailers", format!("POST /p HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), 200, 1, &["5\r\nhello\r\n0\r\n\r\n"], &["X-T"]),
        case("Chunked any case", format!("POST /p HTTP/1.1\r\n{H}Transfer-Encoding: ChUnKeD\r\n\r\n0\r\n\r\n"), 200, 1, &["Transfer-Encoding: chunked\r\n"], &[]),
        case("HTTP/1.0 without Host", "GET /p HTTP/1.0\r\n\r\n", 200, 1, &["GET /p HTTP/1.1\r\n", "Host: app\r\n"], &[]),
        case("absolute form", "GET http://b.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n", 200, 1, &["GET /p?q HTTP/1.1\r\n", "Host: b.example:81\r\n"], &["other"]),
        case("Connection names Content-Length", format!("POST / HTTP/1.1\r\n{H}Connection: Content-Length\r\nContent-Length: 45\r\n\r\n{smuggled}"), 200, 1, &["Content-Length: 45\r\n", "X-Pad: 1234"], &["Connection"]),
        case("Connection names Host", format!("GET / HTTP/1.1\r\n{H}Connection: Host\r\n\r\n"), 200, 1, &["Host: a\r\n"], &[]),
        case("Connection names Transfer-Encoding", format!("POST / HTTP/1.1\r\n{H}Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 200, 1, &["Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"], &[]),
        case("Connection drops named header", format!("GET / HTTP/1.1\r\n{H}Connection: X-Drop, keep-alive\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n"), 200, 1, &["X-Keep: 2"], &["X-Drop", "Connection"]),
        case("identical Content-Length twice", format!("POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 200, 1, &["Content-Length: 3\r\n"], &["Content-Length: 3\r\nContent-Length"]),
        case("Content-Length with spaces", format!("POST / HTTP/1.1\r\n{H}Content-Length:   3 \t\r\n\r\nabc"), 200, 1, &["Content-Length: 3\r\n"], &[]),
        case("hop-by-hop removed", format!("GET / HTTP/1.1\r\n{H}Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n"), 200, 1, &[], &["Keep-Alive", "Proxy-Connection", "TE:", "Upgrade"]),
        case("X-Forwarded-For folded", format!("GET / HTTP/1.1\r\n{H}X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n\r\n"), 200, 1, &["X-Forwarded-For: 1.1.1.1, 2.2.2.2, 127.0.0.1\r\n", "X-Forwarded-Proto: http\r\n"], &["https"]),
        case("obs-text value", b"GET / HTTP/1.1\r\nHost: a\r\nX-L: caf\xc3\xa9\r\n\r\n", 200, 1, &["X-L: caf"], &[]),
        case("empty value", format!("GET / HTTP/1.1\r\n{H}X-Empty:\r\n\r\n"), 200, 1, &["X-Empty: \r\n"], &[]),
        case("tab in value", format!("GET / HTTP/1.1\r\n{H}X-T: a\tb\r\n\r\n"), 200, 1, &["X-T: a\tb"], &[]),
        case("Host with port", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", 200, 1, &["Host: a.example:8080\r\n"], &[]),
        case("Host IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200, 1, &["Host: [::1]:8080\r\n"], &[]),
        case("leading empty line", format!("\r\nGET / HTTP/1.1\r\n{H}\r\n"), 200, 1, &["GET / HTTP/1.1"], &[]),
        case("two pipelined", format!("GET /1 HTTP/1.1\r\n{H}\r\nGET /2 HTTP/1.1\r\n{H}\r\n"), 200, 2, &["GET /1 ", "GET /2 "], &[]),
        case("upper-case admin is another path", format!("GET /ADMIN HTTP/1.1\r\n{H}\r\n"), 200, 1, &["GET /ADMIN "], &[]),
        // A backend that decodes %2F would see /x/admin or /admin: refused (allow_encoded_slashes).
        rejected("encoded slash", format!("GET /x%2Fadmin HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("encoded slash dot-dot admin", format!("GET /x/..%2fadmin HTTP/1.1\r\n{H}\r\n"), 400),
        // Routed on the normalized path: each of these is /admin (answered 403 by proxyd).
        case("percent-encoded admin", format!("GET /%61dmin HTTP/1.1\r\n{H}\r\n"), 403, 0, &[], &[]),
        case("double slash admin", format!("GET //admin HTTP/1.1\r\n{H}\r\n"), 403, 0, &[], &[]),
        case("dot segment admin", format!("GET /./admin HTTP/1.1\r\n{H}\r\n"), 403, 0, &[], &[]),
        case("dot-dot admin", format!("GET /x/../admin/y HTTP/1.1\r\n{H}\r\n"), 403, 0, &[], &[]),
        case("absolute form admin", "GET http://a//admin HTTP/1.1\r\nHost: a\r\n\r\n", 403, 0, &[], &[]),
        // Ambiguous framing: refused before anything is forwarded.
        rejected("CL then TE", format!("POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        rejected("TE then CL", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), 400),
        rejected("differing CL", format!("POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400),
        rejected("negative CL", format!("POST / HTTP/1.1\r\n{H}Content-Length: -1\r\n\r\n"), 400),
        rejected("CL with NBSP", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\xc2\xa0\r\n\r\nhello", 400),
        rejected("CL plus sign", format!("POST / HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello"), 400),
        rejected("CL hex", format!("POST / HTTP/1.1\r\n{H}Content-Length: 0x5\r\n\r\nhello"), 400),
        rejected("CL list", format!("POST / HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello"), 400),
        rejected("CL empty", format!("POST / HTTP/1.1\r\n{H}Content-Length:\r\n\r\n"), 400),
        rejected("CL overflow", format!("POST / HTTP/1.1\r\n{H}Content-Length: 99999999999999999999\r\n\r\n"), 400),
        rejected("TE gzip", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\n"), 501),
        rejected("TE chunked, gzip", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, gzip\r\n\r\n"), 501),
        rejected("TE gzip, chunked", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n"), 501),
        rejected("TE chunked twice", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, chunked\r\n\r\n"), 501),
        rejected("TE two lines", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 501),
        rejected("TE xchunked", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n"), 501),
        rejected("TE with NBSP", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\xc2\xa0\r\n\r\n", 501),
        rejected("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        // Line and token syntax.
        rejected("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400),
        rejected("bare LF after headers", format!("GET / HTTP/1.1\r\n{H}X: 1\n\r\n"), 400),
        rejected("bare CR", format!("GET / HTTP/1.1\r\n{H}X: a\rb\r\n\r\n"), 400),
        rejected("NUL in value", format!("GET / HTTP/1.1\r\n{H}X: a\0b\r\n\r\n"), 400),
        rejected("DEL in value", format!("GET / HTTP/1.1\r\n{H}X: a\x7fb\r\n\r\n"), 400),
        rejected("obs-fold", format!("GET / HTTP/1.1\r\n{H}X: a\r\n b\r\n\r\n"), 400),
        rejected("fold of first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        rejected("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        rejected("tab before colon", format!("GET / HTTP/1.1\r\n{H}X\t: a\r\n\r\n"), 400),
        rejected("bad name character", format!("GET / HTTP/1.1\r\n{H}X(a): 1\r\n\r\n"), 400),
        rejected("bad method character", format!("G(T / HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("space in target", format!("GET /a b HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("NUL in target", format!("GET /a\0b HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("UTF-8 in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        rejected("above the root", format!("GET /../etc/passwd HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("encoded above the root", format!("GET /%2e%2e/etc HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("bad percent escape", format!("GET /%zz HTTP/1.1\r\n{H}\r\n"), 400),
        rejected("HTTP/2.0 line", format!("GET / HTTP/2.0\r\n{H}\r\n"), 400),
        rejected("lower-case version", format!("GET / http/1.1\r\n{H}\r\n"), 400),
        rejected("HTTP/0.9", "GET /\r\n\r\n", 400),
        // Host.
        rejected("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
        rejected("duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        rejected("same Host twice", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        rejected("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        rejected("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        rejected("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        rejected("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
        rejected("Host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
        rejected("absolute form with userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        rejected("absolute form without host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Bodies: the head goes out first, so the upstream sees no complete request.
        rejected("bad chunk size", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), 400),
        rejected("chunk size bare LF", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), 400),
        rejected("chunk longer than size", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), 400),
        rejected("chunk extension with NUL", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5;a\0\r\nhello\r\n0\r\n\r\n"), 400),
        rejected("trailer fold", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\n X: 1\r\n\r\n"), 400),
        rejected("trailer bare LF", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n"), 400),
        // Limits.
        rejected("too many headers", format!("GET / HTTP/1.1\r\n{H}{many}\r\n"), 431),
        rejected("head too large", format!("GET / HTTP/1.1\r\n{H}X: {}\r\n\r\n", "a".repeat(20_000)), 431),
        rejected("URI too long", format!("GET /{} HTTP/1.1\r\n{H}\r\n", "a".repeat(9000)), 414),
        rejected("declared body too large", format!("POST / HTTP/1.1\r\n{H}Content-Length: 2000\r\n\r\n"), 413),
        rejected("chunked body too large", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n", "a".repeat(2048)), 413),
    ]
}

const CONF: &str = r#"
[[upstream]]
name = "app"
peers = ["UP"]
keepalive = 8

[[server]]
listen = "127.0.0.1:{port}"
client_max_body_size = "1k"

[[server.route]]
path = "/"
upstream = "app"

[[server.route]]
path = "/admin"
return = 403
body = "denied"
"#;

#[test]
fn request_corpus() {
    let up = RawUpstream::start(|_| ok("ok"));
    let p = Proxyd::start(1, &CONF.replace("UP", &up.addr()));
    let workers = p.worker_pids();
    let cases = request_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        up.clear();
        let got = exchange(&p.addr(), &c.raw);
        let rs = responses(&got, false);
        let status = rs.iter().find(|r| r.0 >= 200).map_or(0, |r| r.0);
        std::thread::sleep(Duration::from_millis(20));
        let reqs = up.requests();
        let seen: Vec<u8> = reqs.iter().flat_map(|r| r.raw.clone()).collect();
        let seen = String::from_utf8_lossy(&seen);
        let mut why = Vec::new();
        if status != c.status {
            why.push(format!("status {status}, want {}", c.status));
        }
        if reqs.len() != c.upstream {
            why.push(format!(
                "upstream framed {} requests, want {}",
                reqs.len(),
                c.upstream
            ));
        }
        if c.status == 200 && rs.iter().filter(|r| r.0 == 200).count() != c.upstream {
            why.push(format!("client got {} responses", rs.len()));
        }
        for h in c.has {
            if !seen.contains(h) {
                why.push(format!("upstream lacks {h:?}"));
            }
        }
        for h in c.lacks {
            if seen.contains(h) {
                why.push(format!("upstream got {h:?}"));
            }
        }
        if reqs.iter().any(|r| r.path().starts_with("/admin")) {
            why.push("a request for /admin reached the upstream".into());
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n  client got: {:?}\n  upstream got: {seen:?}",
                c.name,
                why.join("; "),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(p.worker_pids(), workers, "no worker died");
}

/// A scripted upstream answer, what the client must get for it, and whether the upstream
/// connection may be reused afterwards.
struct RespCase {
    name: &'static str,
    reply: Vec<Reply>,
    method: &'static str,
    /// Status of the final response the client gets; 0 when the connection must be cut
    /// after a partial response.
    status: u16,
    /// Must be in / absent from the client's bytes.
    has: &'static [&'static str],
    lacks: &'static [&'static str],
}

fn rc(
    name: &'static str,
    reply: Vec<Reply>,
    status: u16,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> RespCase {
    RespCase {
        name,
        reply,
        method: "GET",
        status,
        has,
        lacks,
    }
}

fn b(s: impl AsRef<[u8]>) -> Vec<Reply> {
    vec![bytes(s)]
}

fn response_cases() -> Vec<RespCase> {
    let forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    vec![
        rc("no reason phrase", b("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"), 200, &["HTTP/1.1 200 OK\r\n"], &[]),
        rc("non-ASCII reason", b(b"HTTP/1.1 200 \xff\xfe\r\nContent-Length: 2\r\n\r\nok"), 200, &["HTTP/1.1 200 OK\r\n"], &["\u{fffd}"]),
        rc("custom reason kept", b("HTTP/1.1 299 Fine Thanks\r\nContent-Length: 2\r\n\r\nok"), 299, &["299 Fine Thanks\r\n"], &[]),
        rc("TE and CL", b("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 502, &[], &["hello"]),
        rc("differing CL", b("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"), 502, &[], &[]),
        rc("CL with NBSP", b(b"HTTP/1.1 200 OK\r\nContent-Length: 2\xc2\xa0\r\n\r\nok"), 502, &[], &[]),
        rc("TE gzip", b("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"), 502, &[], &[]),
        rc("bare LF head", b("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), 502, &[], &[]),
        rc("obs-fold", b("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok"), 502, &[], &[]),
        rc("not HTTP", b("SSH-2.0-OpenSSH\r\n\r\n"), 502, &[], &["SSH"]),
        rc("bad status code", b("HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok"), 502, &[], &[]),
        rc("Connection names framing", b("HTTP/1.1 200 OK\r\nConnection: Content-Length, X-A\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"), 200, &["Content-Length: 2\r\n"], &["X-A", "Connection: Content-Length"]),
        rc("extra bytes after the body", b(format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok{forged}")), 200, &[], &["forged"]),
        rc("interim responses passed on", b("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 200, &["100 Continue\r\n", "103 Early Hints\r\nLink: </s.css>\r\n"], &[]),
        rc("interim flood", vec![Reply::Flood(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), Duration::from_millis(500))], 502, &[], &[]),
        rc("closed without answer", vec![Reply::Close], 502, &[], &[]),
        rc("closed mid-head", vec![bytes("HTTP/1.1 200 OK\r\nContent-Le"), Reply::Close], 502, &[], &[]),
        rc("closed mid-body", vec![bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"), Reply::Close], 0, &["short"], &[]),
        rc("bad chunk mid-body", b("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"), 0, &["2\r\nok"], &["zz"]),
        rc("chunked with trailers", b("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"), 200, &["Transfer-Encoding: chunked\r\n", "2\r\nok\r\n0\r\n\r\n"], &["X-T"]),
        rc("204 with a body", b(format!("HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\n{forged}")), 204, &[], &["forged", "Content-Length"]),
        rc("304 keeps its length", b("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), 304, &["Content-Length: 10\r\n"], &[]),
        rc("read to close", vec![bytes("HTTP/1.1 200 OK\r\n\r\nuntil close"), Reply::Close], 200, &["until close", "Connection: close\r\n"], &[]),
        rc("HTTP/1.0 response", vec![bytes("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), Reply::Close], 200, &["HTTP/1.1 200 OK\r\n"], &[]),
        rc("101 unasked", b("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"), 502, &[], &["101"]),
        rc("head too large", b(format!("HTTP/1.1 200 OK\r\nX: {}\r\nContent-Length: 2\r\n\r\nok", "a".repeat(20_000))), 502, &[], &[]),
        RespCase {
            name: "HEAD keeps its length",
            reply: b("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
            method: "HEAD",
            status: 200,
            has: &["Content-Length: 1000\r\n"],
            lacks: &[],
        },
    ]
}

#[test]
fn response_corpus() {
    let cases = response_cases();
    assert!(cases.len() >= 20);
    let scripts: Vec<Vec<Reply>> = cases.iter().map(|c| c.reply.clone()).collect();
    let up = RawUpstream::start(move |r| {
        if r.path() == "/next" {
            return ok("next");
        }
        let i: usize = r.path().trim_start_matches("/c").parse().unwrap();
        scripts[i].clone()
    });
    let p = Proxyd::start(1, &CONF.replace("UP", &up.addr()));
    let workers = p.worker_pids();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        up.clear();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{} /c{i} HTTP/1.1\r\nHost: a\r\n\r\n", c.method).as_bytes())
            .unwrap();
        // Read until the proxy closes or a final response is complete, then ask for
        // /next on the same connection when it stayed open.
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let mut closed = false;
        loop {
            let rs = responses(&got, c.method == "HEAD");
            if let Some(last) = rs.last() {
                let cl = last.1.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                });
                let complete = last.0 >= 200
                    && (c.method == "HEAD"
                        || last.0 == 204
                        || last.0 == 304
                        || cl.is_some_and(|n| last.2.len() >= n)
                        || got.ends_with(b"\r\n\r\n")
                            && last.1.contains("chunked")
                            && !last.2.is_empty());
                if complete {
                    break;
                }
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let rs = responses(&got, c.method == "HEAD");
        let status = rs.iter().rev().find(|r| r.0 >= 200).map_or(0, |r| r.0);
        let mut why = Vec::new();
        if c.status == 0 {
            // Cut: the head went out, then the connection closed before the promised end.
            if !closed {
                why.push("connection not cut".into());
            }
        } else if status != c.status {
            why.push(format!("status {status}, want {}", c.status));
        }
        for h in c.has {
            if !text.contains(h) {
                why.push(format!("client lacks {h:?}"));
            }
        }
        for h in c.lacks {
            if text.contains(h) {
                why.push(format!("client got {h:?}"));
            }
        }
        if !closed && !text.to_ascii_lowercase().contains("connection: close") {
            // The connection must still serve the next request correctly.
            s.write_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            let mut more = Vec::new();
            while !String::from_utf8_lossy(&more).contains("next") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => more.extend_from_slice(&buf[..n]),
                }
            }
            let more = String::from_utf8_lossy(&more);
            if !more.ends_with("\r\n\r\nnext") {
                why.push(format!("next request got {more:?}"));
            }
        }
        // The upstream side: only this case's request (once, or again when a stale-looking
        // pooled connection made proxyd retry an idempotent request) and then /next, each
        // a clean head with forwarding headers and no body.
        std::thread::sleep(Duration::from_millis(20));
        let reqs = up.requests();
        let this = format!("{} /c{i} HTTP/1.1\r\n", c.method);
        let mine = reqs.iter().filter(|r| r.head.starts_with(&this)).count();
        if mine == 0 || mine > 2 {
            why.push(format!("upstream got the request {mine} times"));
        }
        for r in &reqs {
            let head = &r.head;
            let known = head.starts_with(&this) || head.starts_with("GET /next HTTP/1.1\r\n");
            let clean = head.contains("\r\nHost: a\r\n")
                && head.contains("X-Forwarded-For: 127.0.0.1\r\n")
                && r.body.is_empty();
            if !known || !clean {
                why.push(format!("upstream got {head:?}"));
            }
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n  client got: {text:?}",
                c.name,
                why.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(p.worker_pids(), workers, "no worker died");
    // A connection that carried bytes past a response is never reused: every /next came
    // back "next", which the forged bytes would have replaced.
}
