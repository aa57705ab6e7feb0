//! Span export (`otlp`): a small OTLP/HTTP collector (tests/common/collector.py) receives one
//! span per traced request, batched by the worker: a continued trace keeps its trace id and
//! names the caller's span as parent, proxyd's own span is the parent the upstream is told
//! of, a started trace is a root; a collector that is down or refuses costs the requests
//! nothing.

mod common;

use common::upstream::Upstream;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Collector {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Collector {
    fn start(dir: &TempDir, mode: &str) -> Collector {
        Self::start_tls(dir, mode, &[])
    }

    /// `tls`: the certificate and key files of an HTTPS collector, or none.
    fn start_tls(dir: &TempDir, mode: &str, tls: &[&std::path::Path]) -> Collector {
        let out = dir.path().join(format!("spans-{mode}.jsonl"));
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/common/collector.py"
            ))
            .arg(&out)
            .arg(mode)
            .args(tls)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        Collector {
            child,
            port: line.trim().parse().unwrap(),
            out,
        }
    }

    /// Every span received so far, with the request line of its batch.
    fn spans(&self) -> Vec<(String, Value, Value)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut v = Vec::new();
        for line in text.lines() {
            let (head, body) = line.split_once('\t').unwrap();
            let batch: Value = serde_json::from_str(body).unwrap();
            let rs = &batch["resourceSpans"][0];
            for span in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                v.push((head.to_string(), rs["resource"].clone(), span.clone()));
            }
        }
        v
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or(&Value::Null)
}

fn get(p: &Proxyd, path: &str, extra: &str) -> String {
    get_close(&p.addr(), path, "t", extra)
}

/// The traceparent the upstream got (its /headers answer is the head it received).
fn sent_traceparent(r: &str) -> Vec<String> {
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let tp = body
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("{r}"));
    tp.split('-').map(String::from).collect()
}

#[test]
fn traced_requests_become_spans_at_the_collector() {
    let dir = TempDir::new("otlp");
    let c = Collector::start(&dir, "ok");
    let up = Upstream::start("up");
    let p = Proxyd::start_with(
        2,
        &format!("otlp = {{ endpoint = \"http://127.0.0.1:{}/v1/traces\", service_name = \"edge\" }}", c.port),
        &app_conf(
            &up,
            "",
            "traceparent = \"start\"\naccess_log = { path = \"{dir}/t.log\", format = \"$trace_id $span_id $status\" }",
            "fixed",
        ),
    );
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r1 = get(
        &p,
        "/headers?q=1",
        &format!("traceparent: {incoming}\r\ntracestate: v=1\r\n"),
    );
    assert!(r1.starts_with("HTTP/1.1 200"), "{r1}");
    let hop = sent_traceparent(&r1);
    // Same trace, proxyd's own span as the parent, tracestate passed on.
    assert_eq!(hop[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(hop[2], "00f067aa0ba902b7");
    assert!(r1.contains("tracestate: v=1\r\n"), "{r1}");
    // Without one: the server starts a trace, and proxyd's span is its root.
    let r2 = get(&p, "/headers", "");
    let root = sent_traceparent(&r2);
    assert!(
        wait_until(Duration::from_secs(5), || c.spans().len() >= 2),
        "{:?}",
        c.spans()
    );
    let spans = c.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (head, resource, s1) = spans.iter().find(|s| s.2["traceId"] == hop[1]).unwrap();
    assert_eq!(head, "/v1/traces application/json");
    assert_eq!(resource["attributes"][0]["value"]["stringValue"], "edge");
    assert_eq!(s1["spanId"], hop[2].as_str());
    assert_eq!(s1["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(s1["kind"], 2);
    assert_eq!(s1["name"], "GET /");
    assert_eq!(attr(s1, "http.request.method")["stringValue"], "GET");
    assert_eq!(attr(s1, "url.path")["stringValue"], "/headers");
    assert_eq!(attr(s1, "url.query")["stringValue"], "q=1");
    assert_eq!(attr(s1, "http.response.status_code")["intValue"], "200");
    assert_eq!(attr(s1, "proxyd.upstream")["stringValue"], "app");
    let start: u128 = s1["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = s1["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start <= end && end - start < 5_000_000_000, "{start} {end}");
    let s2 = &spans.iter().find(|s| s.2["traceId"] == root[1]).unwrap().2;
    assert_eq!(s2["spanId"], root[2].as_str());
    assert!(
        s2.get("parentSpanId").is_none(),
        "a started trace is a root: {s2}"
    );
    // The access log names the same ids.
    let log = std::fs::read_to_string(p.dir.path().join("t.log")).unwrap_or_default();
    assert!(log.contains(&format!("{} {} 200", hop[1], hop[2])), "{log}");
}

#[test]
fn a_missing_or_failing_collector_costs_the_requests_nothing() {
    let dir = TempDir::new("otlp-down");
    let failing = Collector::start(&dir, "fail");
    for endpoint in [
        format!("http://127.0.0.1:{}/v1/traces", free_port()),
        format!("http://127.0.0.1:{}/v1/traces", failing.port),
    ] {
        let up = Upstream::start("up");
        let p = Proxyd::start_with(
            1,
            &format!("otlp = {{ endpoint = \"{endpoint}\" }}"),
            &app_conf(&up, "", "traceparent = \"start\"", "fixed"),
        );
        let worker = p.worker_pids();
        for _ in 0..20 {
            assert!(get(&p, "/x", "").starts_with("HTTP/1.1 200"));
        }
        assert!(
            wait_until(Duration::from_secs(5), || p
                .error_log()
                .contains("span export to")),
            "{}",
            p.error_log()
        );
        for _ in 0..20 {
            assert!(get(&p, "/x", "").starts_with("HTTP/1.1 200"));
        }
        assert_eq!(p.worker_pids(), worker);
        assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());
    }
    assert!(
        !failing.spans().is_empty(),
        "the failing collector was sent batches"
    );
}

#[test]
fn otlp_endpoints_are_checked() {
    let dir = TempDir::new("otlp-conf");
    for (otlp, want) in [
        (
            "{ endpoint = \"ftp://c:4318\" }",
            "must be an http:// or https:// URL",
        ),
        (
            "{ endpoint = \"http://127.0.0.1:4318\", ca = \"ca.pem\" }",
            "otlp ca needs an https:// endpoint",
        ),
        (
            "{ endpoint = \"https://127.0.0.1:4318\", ca = \"missing.pem\" }",
            "cannot read CA bundle",
        ),
        (
            "{ endpoint = \"http://no-such-host.invalid:4318/v1/traces\" }",
            "cannot resolve",
        ),
        (
            "{ endpoint = \"http://127.0.0.1:4318\", color = 1 }",
            "unknown field",
        ),
    ] {
        let text = format!("otlp = {otlp}\n\n[[server]]\nlisten = \"127.0.0.1:1\"\n");
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok, "{text}");
        assert!(
            out.contains("main.toml:1:") && out.contains(want),
            "{want}: {out}"
        );
    }
}

/// An https collector: spans arrive over TLS, verified against the configured CA; a
/// collector whose certificate the CA did not sign gets nothing, and the requests do not
/// notice.
#[test]
fn spans_go_to_an_https_collector_verified_against_its_ca() {
    let dir = TempDir::new("otlp-tls");
    common::certs::ca(dir.path(), "ca");
    common::certs::ca(dir.path(), "other");
    common::certs::server_cert(dir.path(), "collector", "127.0.0.1", "ca");
    let c = Collector::start_tls(
        &dir,
        "tls",
        &[
            &dir.path().join("collector.crt"),
            &dir.path().join("collector.key"),
        ],
    );
    let up = Upstream::start("up");
    // A proxyd that sends its spans to the collector, trusting `ca`; five requests. No
    // access log: nothing but the spans may wake the idle worker to send them.
    let traced = |ca: &str| {
        let p = Proxyd::start_with(
            1,
            &format!(
                "otlp = {{ endpoint = \"https://127.0.0.1:{}/v1/traces\", ca = \"{}\" }}",
                c.port,
                dir.path().join(ca).display()
            ),
            &app_conf(
                &up,
                "",
                "traceparent = \"start\"\naccess_log = \"off\"",
                "fixed",
            ),
        );
        for _ in 0..5 {
            assert!(get(&p, "/x", "").starts_with("HTTP/1.1 200"));
        }
        p
    };
    let p = traced("ca.crt");
    assert!(
        wait_until(Duration::from_secs(5), || c.spans().len() == 5),
        "{} spans; {}",
        c.spans().len(),
        p.error_log()
    );
    let (head, _, span) = &c.spans()[0];
    assert!(head.starts_with("/v1/traces application/json"), "{head}");
    assert_eq!(attr(span, "http.response.status_code")["intValue"], "200");
    assert!(p.unexpected_errors(&[]).is_empty(), "{}", p.error_log());

    // The same collector, trusted through a CA that did not sign it: refused, logged, and
    // the requests carry on.
    let p2 = traced("other.crt");
    assert!(
        wait_until(Duration::from_secs(5), || p2
            .error_log()
            .contains("span export to")),
        "{}",
        p2.error_log()
    );
    assert!(
        p2.error_log().contains("TLS: invalid peer certificate"),
        "{}",
        p2.error_log()
    );
    assert_eq!(c.spans().len(), 5);
}
