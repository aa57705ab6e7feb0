//! Access log formats and request ids, end to end: each variable's value checked against
//! what the client sent and got and what the upstream saw; JSON lines parsed by serde_json
//! whatever bytes the request carried; several logs per server; ids kept, replaced, passed
//! upstream, returned and written into error-log lines; bad formats refused at `-t`.

mod common;

use common::upstream::Upstream;
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Every variable, `name=value` separated by tabs.
const ALL: [&str; 36] = [
    "remote_addr",
    "remote_port",
    "remote_user",
    "time_local",
    "time_iso8601",
    "msec",
    "request",
    "request_method",
    "request_uri",
    "uri",
    "args",
    "server_protocol",
    "scheme",
    "status",
    "body_bytes_sent",
    "bytes_sent",
    "request_length",
    "request_time",
    "http_x_test",
    "sent_http_content_type",
    "host",
    "server_name",
    "server_addr",
    "server_port",
    "upstream_name",
    "upstream_addr",
    "upstream_status",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_time",
    "upstream_bytes_received",
    "connection",
    "connection_requests",
    "pid",
    "request_id",
    "route",
];

fn all_format() -> String {
    ALL.iter()
        .map(|v| format!("{v}=${v}"))
        .collect::<Vec<_>>()
        .join("\t")
}

/// The lines of a log file once `n` are there.
fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(3), || read().lines().count() >= n),
        "{}: {}",
        path.display(),
        read()
    );
    read().lines().map(str::to_string).collect()
}

fn fields(line: &str) -> HashMap<String, String> {
    line.split('\t')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_secs(v: &str) -> bool {
    v.split_once('.')
        .is_some_and(|(s, ms)| s.parse::<u64>().is_ok() && ms.len() == 3)
}

#[test]
fn every_variable_has_the_value_the_exchange_had() {
    let up = Upstream::start("up");
    let body = app_conf(
        &up,
        "",
        "server_name = \"site.test\"\nrequest_id = true\naccess_log = { path = \"{dir}/all.log\", format = \"all\" }",
        "fixed",
    )
    .replace(
        "path = \"/\"\nupstream",
        "name = \"root\"\npath = \"/\"\nupstream",
    );
    let p = Proxyd::start_with(
        1,
        &format!("log_format = {{ all = '{}' }}", all_format()),
        &body,
    );
    let log = p.dir.path().join("all.log");
    let mut s = TcpStream::connect(p.addr()).unwrap();
    let req = "POST /headers?a=1&b=2 HTTP/1.1\r\nHost: Site.Test:80\r\nX-Test: one\r\nX-Test: two\r\nContent-Length: 5\r\n\r\nhello";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(b"GET /fixed HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got).to_string();
    let first_len = text.find("HTTP/1.1 200 OK\r\nServer: proxyd").unwrap();
    let first = &text[..first_len];
    let id = first
        .lines()
        .find_map(|l| l.strip_prefix("X-Request-Id: "))
        .expect("the response carries the request id")
        .to_string();
    let l = lines(&log, 2);
    let f = fields(&l[0]);
    let local = s.local_addr().unwrap();
    let want = [
        ("remote_addr", "127.0.0.1".to_string()),
        ("remote_port", local.port().to_string()),
        ("remote_user", "-".into()),
        ("request", "POST /headers?a=1&b=2 HTTP/1.1".into()),
        ("request_method", "POST".into()),
        ("request_uri", "/headers?a=1&b=2".into()),
        ("uri", "/headers".into()),
        ("args", "a=1&b=2".into()),
        ("server_protocol", "HTTP/1.1".into()),
        ("scheme", "http".into()),
        ("status", "200".into()),
        ("bytes_sent", first.len().to_string()),
        ("request_length", req.len().to_string()),
        ("http_x_test", "one, two".into()),
        ("sent_http_content_type", "-".into()),
        ("host", "site.test".into()),
        ("server_name", "site.test".into()),
        ("server_addr", "127.0.0.1".into()),
        ("server_port", p.port.to_string()),
        ("upstream_name", "app".into()),
        ("upstream_addr", up.addr()),
        ("upstream_status", "200".into()),
        ("connection_requests", "1".into()),
        ("pid", p.worker_pids()[0].to_string()),
        ("request_id", id.clone()),
        ("route", "root".into()),
    ];
    for (k, v) in want {
        assert_eq!(f[k], v, "${k} in {}", l[0]);
    }
    let head_end = first.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(f["body_bytes_sent"], (first.len() - head_end).to_string());
    // The upstream's answer (/headers: the head it got) carries the same id.
    assert!(
        first[head_end..].contains(&format!("X-Request-Id: {id}\r\n")),
        "{first}"
    );
    let received: usize = f["upstream_bytes_received"].parse().unwrap();
    assert!(received > first.len() - head_end, "{}", l[0]);
    for k in [
        "request_time",
        "upstream_connect_time",
        "upstream_header_time",
        "upstream_response_time",
        "msec",
    ] {
        assert!(is_secs(&f[k]), "${k} = {}", f[k]);
    }
    assert!(f["time_iso8601"].len() == 25 && f["time_iso8601"].contains('T'));
    assert!(f["time_local"].contains('/') && f["time_local"].contains(' '));
    // The second request on the connection: answered here, no upstream.
    let g = fields(&l[1]);
    assert_eq!(g["connection"], f["connection"]);
    assert_eq!(g["connection_requests"], "2");
    assert_eq!(g["route"], "/fixed");
    assert_eq!(g["sent_http_content_type"], "text/plain");
    for k in ["upstream_name", "upstream_addr", "upstream_status", "args"] {
        assert_eq!(g[k], "-", "${k}");
    }
    assert_eq!(g["bytes_sent"], (got.len() - first.len()).to_string());
    assert_ne!(g["request_id"], id);
}

#[test]
fn json_lines_stay_valid_whatever_the_request_carries() {
    let up = Upstream::start("up");
    let p = Proxyd::start(
        1,
        &app_conf(
            &up,
            "",
            "access_log = { path = \"{dir}/json.log\", format = \"json\" }",
            "fixed",
        ),
    );
    let send = |bytes: &[u8]| send_raw(&p.addr(), bytes);
    // Quotes, backslashes, a tab, obs-text that is not UTF-8, and UTF-8.
    // (to a route answered here: the test upstream reads heads as UTF-8)
    let r = send(b"GET /fixed?a%22b=%00 HTTP/1.1\r\nHost: x\r\nUser-Agent: \"quoted\" \\ tab\there \xff\xfe caf\xc3\xa9\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Refused before it could be parsed: logged too, as valid JSON.
    let r = send(b"GET /\x01\"\\ HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = send(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let l = lines(&p.dir.path().join("json.log"), 3);
    let v: Vec<serde_json::Value> = l
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for (v, line) in v.iter().zip(&l) {
        assert!(v["request_time"].is_number(), "{line}");
        assert!(v["body_bytes_sent"].is_u64(), "{line}");
        assert!(v["status"].is_u64(), "{line}");
        assert!(v["connection"].is_u64(), "{line}");
        assert!(v["remote_port"].is_u64(), "{line}");
    }
    assert_eq!(v[0]["status"], 200);
    assert_eq!(
        v[0]["user_agent"], "\"quoted\" \\ tab\there \u{ff}\u{fe} caf\u{e9}",
        "{}",
        l[0]
    );
    assert_eq!(v[0]["uri"], "/fixed?a%22b=%00");
    assert_eq!(v[0]["route"], "/fixed");
    assert!(v[0]["upstream"].is_null() && v[0]["upstream_status"].is_null());
    assert_eq!(v[0]["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(v[1]["status"], 400);
    assert!(
        v[1]["method"].is_null() && v[1]["request_id"].is_null(),
        "{}",
        l[1]
    );
    assert_eq!(v[2]["route"], "/");
    assert_eq!(v[2]["upstream"], "app");
    assert_eq!(v[2]["upstream_addr"], up.addr());
    assert_eq!(v[2]["upstream_status"], "200");
}

#[test]
fn servers_have_several_logs_or_none() {
    let up = Upstream::start("up");
    let body = format!(
        r#"
[[upstream]]
name = "app"
peers = ["{a}"]

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "logged.test"
access_log = ["{{dir}}/one.log", {{ path = "{{dir}}/two.log", format = "short" }}, {{ path = "{{dir}}/one.log", format = "$status $request_id" }}]
[[server.route]]
path = "/"
upstream = "app"

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "quiet.test"
access_log = "off"
[[server.route]]
path = "/"
upstream = "app"
"#,
        a = up.addr()
    );
    let p = Proxyd::start_with(1, "log_format = { short = '$host $status' }", &body);
    let send =
        |host: &str| assert!(get_close(&p.addr(), "/x", host, "").starts_with("HTTP/1.1 200"));
    send("quiet.test");
    send("logged.test");
    send("quiet.test");
    let one = lines(&p.dir.path().join("one.log"), 2);
    let two = lines(&p.dir.path().join("two.log"), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        std::fs::read_to_string(p.dir.path().join("two.log")).unwrap(),
        "logged.test 200\n"
    );
    assert_eq!(two, ["logged.test 200"]);
    assert_eq!(one.len(), 2, "{one:?}");
    assert!(
        one.iter().any(|l| l.contains("\"GET /x HTTP/1.1\" 200")),
        "{one:?}"
    );
    assert!(
        one.iter().any(|l| l.starts_with("200 ") && l.len() == 36),
        "{one:?}"
    );
    // The global access log (the test header's) is replaced, not added to.
    assert_eq!(p.access_log(), "");
}

#[test]
fn request_ids_are_kept_replaced_passed_and_written_into_error_lines() {
    let up = Upstream::start("up");
    let dead = free_port();
    let body = format!(
        r#"
[[upstream]]
name = "app"
peers = ["{a}"]

[[upstream]]
name = "dead"
peers = ["127.0.0.1:{dead}"]

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "keep.test"
request_id = true
access_log = {{ path = "{{dir}}/ids.log", format = "$host $request_id $upstream_status" }}
[[server.route]]
path = "/"
upstream = "app"
[[server.route]]
path = "/dead"
upstream = "dead"

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "fresh.test"
request_id = {{ header = "X-Trace-Me", keep_incoming = false }}
access_log = {{ path = "{{dir}}/ids.log", format = "$host $request_id $upstream_status" }}
[[server.route]]
path = "/"
upstream = "app"

[[server]]
listen = "127.0.0.1:{{port}}"
server_name = "none.test"
access_log = {{ path = "{{dir}}/ids.log", format = "$host $request_id $upstream_status" }}
[[server.route]]
path = "/"
upstream = "app"
"#,
        a = up.addr()
    );
    let p = Proxyd::start(1, &body);
    let get = |host: &str, path: &str, extra: &str| get_close(&p.addr(), path, host, extra);
    // A well-formed incoming id is kept: upstream, response and log agree.
    let r = get("keep.test", "/headers", "X-Request-Id: lb-1234.abc_Z:9\r\n");
    assert_eq!(
        r.matches("X-Request-Id: lb-1234.abc_Z:9\r\n").count(),
        2,
        "{r}"
    );
    // A malformed one, or two of them, are replaced (once, never passed on).
    let r = get("keep.test", "/headers", "X-Request-Id: a b\"c\r\n");
    assert!(!r.contains("a b\"c"), "{r}");
    let bad_id = r
        .lines()
        .find_map(|l| l.strip_prefix("X-Request-Id: "))
        .unwrap()
        .to_string();
    assert_eq!(bad_id.len(), 32);
    assert_eq!(r.matches(&bad_id).count(), 2, "{r}");
    let r = get(
        "keep.test",
        "/headers",
        "X-Request-Id: one\r\nX-Request-Id: two\r\n",
    );
    assert!(!r.contains(": one") && !r.contains(": two"), "{r}");
    // keep_incoming = false and another header name.
    let r = get("fresh.test", "/headers", "X-Trace-Me: mine\r\n");
    assert!(!r.contains("mine"), "{r}");
    let fresh = r
        .lines()
        .find_map(|l| l.strip_prefix("X-Trace-Me: "))
        .unwrap()
        .to_string();
    assert_eq!(r.matches(&format!("X-Trace-Me: {fresh}")).count(), 2, "{r}");
    assert!(!r.contains("X-Request-Id"), "{r}");
    // request_id off (the default): nothing sent either way, the log still has an id.
    let r = get("none.test", "/headers", "X-Request-Id: passthrough\r\n");
    assert_eq!(r.matches("X-Request-Id: passthrough").count(), 1, "{r}");
    // A failed request: the error line names the id the client got.
    let r = get("keep.test", "/dead", "");
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    let dead_id = r
        .lines()
        .find_map(|l| l.strip_prefix("X-Request-Id: "))
        .unwrap()
        .to_string();
    let l = lines(&p.dir.path().join("ids.log"), 6);
    assert_eq!(l[0], "keep.test lb-1234.abc_Z:9 200");
    assert_eq!(l[1], format!("keep.test {bad_id} 200"));
    assert!(
        l[3].starts_with("fresh.test ") && l[3].contains(&fresh),
        "{l:?}"
    );
    assert!(
        l[4].starts_with("none.test ") && l[4].split(' ').nth(1).unwrap().len() == 32,
        "{l:?}"
    );
    assert_eq!(l[5], format!("keep.test {dead_id} 502"));
    let err = p.error_log();
    let line = err
        .lines()
        .find(|l| l.contains("connect() to 127.0.0.1:") && l.contains(&dead_id))
        .unwrap_or_else(|| panic!("{err}"));
    for part in [
        ", client: 127.0.0.1",
        ", server: keep.test",
        ", request: \"GET /dead HTTP/1.1\"",
        ", upstream: \"dead\"",
        ", host: \"keep.test\"",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[test]
fn bad_formats_are_refused_with_file_and_line() {
    let dir = TempDir::new("logfmt");
    let cases = [
        ("log_format = { a = '$status $nope' }\n", 1, "unknown variable \"$nope\""),
        ("log_format = { combined = '$status' }\n", 1, "is built in"),
        (
            "\n[[server]]\nlisten = \"127.0.0.1:1\"\naccess_log = { path = \"/tmp/x.log\", format = \"mine\" }\n",
            4,
            "unknown log_format \"mine\"",
        ),
        (
            "\n[[server]]\nlisten = \"127.0.0.1:1\"\naccess_log = { path = \"/tmp/x.log\", format = \"$status ${oops\" }\n",
            4,
            "unclosed",
        ),
        ("log_format = { j = { json = { a = 1 } } }\n", 1, "must be a string"),
        (
            "\n[[server]]\nlisten = \"127.0.0.1:1\"\nrequest_id = { header = \"Content-Length\" }\n",
            4,
            "request_id header",
        ),
    ];
    for (text, line, want) in cases {
        let mut full = text.to_string();
        if !full.contains("[[server]]") {
            full.push_str("\n[[server]]\nlisten = \"127.0.0.1:1\"\n");
        }
        let (ok, out) = config_test(&dir, &full);
        assert!(!ok, "{full}");
        assert!(out.contains(&format!("main.toml:{line}:")), "{want}: {out}");
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[test]
fn every_try_of_a_retried_request_is_logged() {
    let up = Upstream::start("up");
    let dead = format!("127.0.0.1:{}", free_port());
    let p = Proxyd::start(
        1,
        &app_conf_peers(
            &[dead.clone(), up.addr()],
            "",
            "access_log = { path = \"{dir}/tries.log\", format = \"$status|$upstream_addr|$upstream_status|$upstream_connect_time|$upstream_bytes_received\" }",
            "fixed",
        ),
    );
    for _ in 0..4 {
        let r = get_close(&p.addr(), "/x", "t", "");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let l = lines(&p.dir.path().join("tries.log"), 4);
    let retried: Vec<&String> = l.iter().filter(|l| l.contains(", ")).collect();
    assert!(!retried.is_empty(), "{l:?}");
    for line in retried {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0], "200");
        assert_eq!(f[1], format!("{dead}, {}", up.addr()));
        assert_eq!(f[2], "502, 200");
        let connect: Vec<&str> = f[3].split(", ").collect();
        assert_eq!(connect[0], "-", "{line}");
        assert!(is_secs(connect[1]), "{line}");
        let bytes: Vec<&str> = f[4].split(", ").collect();
        assert_eq!(bytes[0], "0");
        assert!(bytes[1].parse::<u64>().unwrap() > 0, "{line}");
    }
    for line in l.iter().filter(|l| !l.contains(", ")) {
        assert!(
            line.starts_with(&format!("200|{}|200|", up.addr())),
            "{line}"
        );
    }
}

#[test]
fn trace_context_is_continued_started_or_dropped() {
    let up = Upstream::start("up");
    let server = |name: &str, mode: &str| {
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{{port}}\"\nserver_name = \"{name}\"\n{mode}\naccess_log = {{ path = \"{{dir}}/trace.log\", format = \"$host $trace_id $span_id\" }}\n[[server.route]]\npath = \"/\"\nupstream = \"app\"\n"
        )
    };
    let body = format!(
        "[[upstream]]\nname = \"app\"\npeers = [\"{}\"]\n{}{}{}",
        up.addr(),
        server("cont.test", ""),
        server("start.test", "traceparent = \"start\""),
        server("off.test", "traceparent = \"off\""),
    );
    let p = Proxyd::start(1, &body);
    let get = |host: &str, extra: &str| -> String {
        let r = get_close(&p.addr(), "/headers", host, extra);
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // What the upstream got (its /headers answer).
        r[r.find("\r\n\r\n").unwrap() + 4..].to_string()
    };
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let state = "tracestate: vendor=abc\r\n";
    // Continued: passed on unchanged, with its tracestate; logged.
    let got = get("cont.test", &format!("traceparent: {tp}\r\n{state}"));
    assert!(
        got.contains(&format!("traceparent: {tp}\r\n")) && got.contains(state),
        "{got}"
    );
    // Invalid (upper case), or two of them: dropped with the tracestate.
    let bad = tp.to_ascii_uppercase();
    let got = get("cont.test", &format!("traceparent: {bad}\r\n{state}"));
    assert!(
        !got.contains("traceparent") && !got.contains("tracestate"),
        "{got}"
    );
    let got = get(
        "cont.test",
        &format!("traceparent: {tp}\r\ntraceparent: {tp}\r\n"),
    );
    assert!(!got.contains("traceparent"), "{got}");
    // None and continue: nothing is made up.
    let got = get("cont.test", "");
    assert!(!got.contains("traceparent"), "{got}");
    // Start: a request without one gets a fresh, valid, sampled one; one with a valid one keeps it.
    let got = get("start.test", state);
    let made = got
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("{got}"))
        .to_string();
    assert!(!got.contains("tracestate"), "{got}");
    let parts: Vec<&str> = made.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{made}");
    assert!(parts[1].len() == 32 && parts[2].len() == 16, "{made}");
    assert!(made
        .bytes()
        .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let got = get("start.test", &format!("traceparent: {tp}\r\n"));
    assert!(got.contains(&format!("traceparent: {tp}\r\n")), "{got}");
    // Off: untouched, even when invalid.
    let got = get("off.test", &format!("traceparent: {bad}\r\n{state}"));
    assert!(
        got.contains(&format!("traceparent: {bad}\r\n")) && got.contains(state),
        "{got}"
    );
    let l = lines(&p.dir.path().join("trace.log"), 7);
    assert_eq!(
        l[0],
        "cont.test 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7"
    );
    for i in [1, 2, 3, 6] {
        assert!(l[i].ends_with(" - -"), "{}", l[i]);
    }
    assert_eq!(l[4], format!("start.test {} {}", parts[1], parts[2]));
    assert_eq!(
        l[5],
        "start.test 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7"
    );
}
