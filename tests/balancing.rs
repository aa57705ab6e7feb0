//! Upstream peer selection: weighted round-robin and failover to live peers.

mod common;

use common::client::{Body, Client};
use common::upstream::Upstream;
use common::*;

#[test]
fn weighted_round_robin_spreads_requests_by_weight() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let p = Proxyd::start(
        1,
        &format!(
            r#"
[[upstream]]
name = "app"
peers = [{{ addr = "{}", weight = 1 }}, {{ addr = "{}", weight = 3 }}]

[[server]]
listen = "127.0.0.1:{{port}}"
keepalive_requests = 10000
[[server.route]]
upstream = "app"
"#,
            a.addr(),
            b.addr()
        ),
    );
    let mut c = Client::connect(&p.addr()).unwrap();
    let mut seen = (0, 0);
    for i in 0..400 {
        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
        match r.header("x-upstream") {
            Some("a") => seen.0 += 1,
            Some("b") => seen.1 += 1,
            other => panic!("unexpected upstream {other:?}"),
        }
    }
    assert_eq!(seen, (100, 300));
    assert_eq!((a.requests(), b.requests()), (100, 300));
}

#[test]
fn dead_peer_is_skipped() {
    let live = Upstream::start("live");
    let dead = free_port();
    let p = Proxyd::start(
        1,
        &format!(
            r#"
[[upstream]]
name = "app"
peers = ["127.0.0.1:{dead}", "{}"]

[[server]]
listen = "127.0.0.1:{{port}}"
[[server.route]]
upstream = "app"
"#,
            live.addr()
        ),
    );
    let mut c = Client::connect(&p.addr()).unwrap();
    for i in 0..20 {
        let r = c.request("GET", &format!("/{i}"), Body::None).unwrap();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-upstream"), Some("live"));
    }
    // One failed connect marks the dead peer down; it is not retried on every request.
    let failures = p.error_log().matches("connect() to 127.0.0.1:").count();
    assert_eq!(failures, 1, "{}", p.error_log());
}
