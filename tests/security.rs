//! Regressions from the hostile review of issue 19, one test per finding, named after it:
//! what an attacker sends through proxyd, and what the upstream then receives.

mod common;

use common::raw::{ok, RawUpstream};
use common::*;

/// proxyd with one worker, `/` proxied to `up`, and `routes` after that.
fn proxy_to(up: &RawUpstream, routes: &str) -> Proxyd {
    Proxyd::start(
        1,
        &format!(
            "[[upstream]]\nname = \"app\"\npeers = [\"{}\"]\n[[server]]\nlisten = \"127.0.0.1:{{port}}\"\n[[server.route]]\npath = \"/\"\nupstream = \"app\"\n{routes}",
            up.addr()
        ),
    )
}

/// A GET of `path` is answered with `want`.
fn expect(addr: &str, path: &str, want: u16) {
    let r = get_close(addr, path, "t", "");
    assert_eq!(status(&r), want, "{path}: {r}");
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Item 2: `/%2fadmin`, `/x/..%2fadmin` and `/x%2F..%2Fadmin` route with the escape kept, so
/// a backend that decodes `%2F` would resolve `/admin` past a deny route. They are refused
/// with 400 unless the server opts in; what goes upstream is the path that was routed
/// (`//admin` never reaches the backend as `//admin`), and a route may ask for the raw one.
#[test]
fn encoded_slash_bypass() {
    let up = RawUpstream::start(|_| ok("up"));
    let p = Proxyd::start(
        1,
        &format!(
            r#"[[upstream]]
name = "app"
peers = ["{}"]
[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
path = "/"
upstream = "app"
[[server.route]]
regex = '^/admin(/.*)?$'
return = 403
[[server.route]]
path = "/raw/"
upstream = "app"
forward_raw_path = true
[[server.route]]
path = "/strip/"
upstream = "app"
strip_prefix = "/strip"
[[server.route]]
regex = '^/files-(.*)$'
upstream = "app"
rewrite = "/public/$1"
[[server.route]]
path = "/ar/"
upstream = "app"
rewrite = "/api/$args"
[[server.route]]
path = "/q"
match = {{ query = {{ role = "~^admin$" }} }}
return = 403
"#,
            up.addr()
        ),
    );
    let a = p.addr();
    for path in [
        "/%2fadmin",
        "/%2Fadmin",
        "/x/..%2fadmin",
        "/x%2F..%2Fadmin",
        "/x/..%5cadmin",
        "/raw/%2f..%2fadmin",
        // A bare backslash (a separator to some backends) and a fragment (kept by some).
        "/public\\..\\admin",
        "/public#/../admin",
        // A capture carrying `..` into a rewrite, or `$args` an escaped slash.
        "/files-../admin",
        "/files-%2e%2e/admin",
        "/ar/?..%2f..%2fadmin",
        "/ar/?a%5cb",
        "/ar/?..\\..\\admin",
        // Dot segments with parameters, which Tomcat and Spring read as dot segments.
        "/.;/admin",
        "/x/..;/admin",
    ] {
        expect(&a, path, 400);
    }
    for path in [
        "/admin",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/x/%2e%2e/admin",
        // A query condition sees what the backend decodes.
        "/q?role=admin",
        "/q?role=%61dmin",
        "/q?ro%6ce=adm%69n",
    ] {
        expect(&a, path, 403);
    }
    assert!(up.requests().is_empty(), "nothing reached the upstream");

    // The upstream gets the routed (normalized) path; the query as sent.
    for (sent, got) in [
        ("//a//b/./c?q=%2F", "/a/b/c?q=%2F"),
        ("/x/%2e%2e/y", "/y"),
        ("/%7euser/a%2dz", "/~user/a-z"),
        ("/plain/path?x=1", "/plain/path?x=1"),
        ("/strip//x/../y", "/y"),
        ("/raw//a/./b", "/raw//a/./b"),
        ("/files-a//b?x=1", "/public/a/b?x=1"),
    ] {
        up.clear();
        let r = get_close(&a, sent, "t", "");
        assert_eq!(status(&r), 200, "{sent}: {r}");
        let reqs = up.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path(), got, "{sent}");
    }

    // Opting in routes the escape as part of a segment and forwards it as routed.
    p.rewrite(
        1,
        "",
        &format!(
            r#"[[upstream]]
name = "app"
peers = ["{}"]
[[server]]
listen = "127.0.0.1:{{port}}"
allow_encoded_slashes = true
[[server.route]]
path = "/"
upstream = "app"
"#,
            up.addr()
        ),
    );
    p.ctl("reload");
    up.clear();
    let r = get_close(&a, "/files/a%2fb", "t", "");
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(up.requests()[0].path(), "/files/a%2Fb");
    assert!(p
        .error_log()
        .contains("refused an escaped slash in the path \"/%2fadmin\""));
}

/// Item 3: a client's own `X-Client-Verify: SUCCESS` or `X_Client_Subject: CN=admin` must
/// not reach the upstream from a server that does not verify certificates; header names
/// with `_` are dropped unless `underscores_in_headers = true`.
#[test]
fn forged_client_identity() {
    let up = RawUpstream::start(|_| ok("up"));
    let conf = |underscores: bool| {
        format!(
            r#"[[upstream]]
name = "app"
peers = ["{}"]
[[server]]
listen = "127.0.0.1:{{port}}"
underscores_in_headers = {underscores}
[[server.route]]
path = "/"
upstream = "app"
"#,
            up.addr()
        )
    };
    let p = Proxyd::start(1, &conf(false));
    let forged = "X-Client-Verify: SUCCESS\r\nx-client-subject: CN=admin\r\nX-CLIENT-FINGERPRINT: ab\r\n\
                  X_Client_Verify: SUCCESS\r\nX_CLIENT_SUBJECT: CN=admin\r\nx-client_fingerprint: ab\r\n\
                  X_Forwarded_For: 6.6.6.6\r\nx_forwarded-proto: https\r\n\
                  X_Custom_Thing: 1\r\nX-Kept: yes\r\n";
    let r = get_close(&p.addr(), "/", "t", forged);
    assert_eq!(status(&r), 200, "{r}");
    let head = up.requests()[0].head.to_ascii_lowercase();
    assert!(!head.contains("client"), "{head}");
    assert!(!head.contains("x_custom_thing"), "{head}");
    assert!(head.contains("x-kept: yes"), "{head}");

    // With underscores allowed, other names pass; the identity headers still never do.
    p.rewrite(1, "", &conf(true));
    p.ctl("reload");
    up.clear();
    let r = get_close(&p.addr(), "/", "t", forged);
    assert_eq!(status(&r), 200, "{r}");
    let head = up.requests()[0].head.to_ascii_lowercase();
    assert!(!head.contains("client"), "{head}");
    assert!(
        !head.contains("6.6.6.6") && !head.contains("x_forwarded"),
        "{head}"
    );
    assert!(head.contains("x_custom_thing: 1"), "{head}");
}

/// Item 1, found by attacking the literal index: a `~regex` header condition on a deny route
/// is not skipped for a value that is not UTF-8 (`BadBot\xff` was proxied).
#[test]
fn header_regex_sees_values_that_are_not_utf8() {
    let up = RawUpstream::start(|_| ok("up"));
    let p = proxy_to(
        &up,
        "[[server.route]]\npath = \"/\"\nmatch = { header = { user-agent = \"~(?i)badbot\" } }\nreturn = 403\n",
    );
    for ua in [&b"BadBot"[..], b"BadBot\xff", b"\xfe\xffbadbot/1"] {
        let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nUser-Agent: ".to_vec();
        req.extend_from_slice(ua);
        req.extend_from_slice(b"\r\n\r\n");
        let r = send_raw(&p.addr(), &req);
        assert_eq!(status(&r), 403, "{}", String::from_utf8_lossy(ua));
    }
    assert!(up.requests().is_empty());
}

/// Item 9: an upstream chunk size with leading zeros (`00000000000000000005`, 20 digits) was
/// refused after the 200 head went out, so the client got a truncated body; nginx takes it.
#[test]
fn chunk_size_leading_zeros() {
    let up = RawUpstream::start(|_| {
        vec![common::raw::bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0000000000000000000000006\r\n world\r\n0\r\n\r\n",
        )]
    });
    let p = proxy_to(&up, "");
    let mut c = common::client::Client::connect(&p.addr()).unwrap();
    let r = c.request("GET", "/", common::client::Body::None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert!(p.unexpected_errors(&[]).is_empty());
}

/// Item 8: chunked framing is written by proxyd, not copied: a chunk-size line `5 `, leading
/// zeros and extensions come out canonical, and trailers a backend might fold into the head
/// (`Content-Length`, `Transfer-Encoding`, `X-Client-Verify`, names with `_`) are dropped, in
/// requests and in responses alike.
#[test]
fn chunked_framing_is_written_not_copied() {
    let up = RawUpstream::start(|_| {
        vec![common::raw::bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0003 ;q=1\r\nabc\r\n00000000000000000004\r\ndefg\r\n0;z\r\nContent-Length: 99\r\nX-Checksum: 42\r\nTransfer-Encoding: gzip\r\n\r\n",
        )]
    });
    let p = proxy_to(&up, "");
    let resp = send_raw(
        &p.addr(),
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5 \r\nhello\r\n0006;name=\"x y\"\r\n world\r\n000\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
          X-Client-Verify: SUCCESS\r\nX_Client_Subject: CN=admin\r\nHost: evil\r\nX-Digest: abc\r\n\r\n",
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{resp}");
    let sent = String::from_utf8_lossy(&reqs[0].raw).into_owned();
    let body = &sent[sent.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "{sent}");
    // The client's copy: canonical too (the raw bytes, not a decoded body).
    let got = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(got, "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "{resp}");
    assert!(p.unexpected_errors(&[]).is_empty());
}
