//! The upstream driver against a scripted peer (the test's end of a socketpair): what it
//! sends, the heads and body bytes it gives back, its retries, replays and failures. No
//! session, no client socket, no event loop.

use super::*;
use crate::http::request::{self, Limits};
use crate::worker::testing::{drain, harness, pair, Harness};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CONFIG: &str = r#"
[[upstream]]
name = "app"
peers = ["127.0.0.1:9", "127.0.0.1:10"]
[[server]]
listen = "127.0.0.1:8080"
[[server.route]]
path = "/"
upstream = "app"
retry = { on = ["error", "timeout", "502"], tries = 3, backoff = "10ms" }
"#;

const OWNER: Owner = Owner::Exchange {
    session: 0,
    stream: 0,
};

/// A driver in the middle of its first try: connected to peer 0 (`reused`: a connection
/// from the pool), the request head waiting to go out.
fn scripted(h: &mut Harness, reused: bool) -> (Driver, UnixStream) {
    let (stream, peer) = pair();
    let w = &mut h.ctx;
    let conn = w.ups.upconns.insert(OWNER);
    let slot = w.env.cfg.upstream[0].peers[0].slot;
    let mut d = Driver::default();
    d.reset();
    d.upstream = Some(0);
    d.tried.push(0);
    d.attempts = 1;
    d.head
        .extend_from_slice(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    d.phase = Phase::Sending {
        conn: UpConn {
            stream,
            conn,
            upstream: 0,
            peer: 0,
            version: 0,
            reused,
            requests: 0,
            _active: Active::new(w.env.shared, slot),
        },
        head: HeadWait::default(),
    };
    (d, peer)
}

fn get() -> RequestHead {
    request::parse(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", &Limits::default())
        .unwrap()
        .unwrap()
}

/// Runs `f` with the worker context and a trip for request `req` under the route's retry
/// rule (or none).
fn with_trip<T>(
    h: &mut Harness,
    req: &RequestHead,
    retries: bool,
    f: impl FnOnce(&mut Cx, &mut Trip) -> T,
) -> T {
    let cfg = h.ctx.env.cfg.clone();
    let mut record = Record::default();
    let mut trip = Trip {
        req,
        record: &mut record,
        rule: retries.then(|| &cfg.server[0].route[0].retry),
        body_done: true,
        log: &"",
    };
    f(&mut h.ctx.up(), &mut trip)
}

fn read(h: &mut Harness, d: &mut Driver, req: &RequestHead, retries: bool) -> Read {
    d.on_event(true, false, false);
    with_trip(h, req, retries, |w, trip| {
        d.read(w, OWNER, trip, false, false)
    })
}

#[test]
fn sends_the_head_then_gives_back_the_head_and_the_body() {
    let mut h = harness(CONFIG);
    let (mut d, mut peer) = scripted(&mut h, false);
    let req = get();
    assert!(d.send(None));
    assert!(d.head_written());
    assert_eq!(drain(&mut peer), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    d.request_sent(h.ctx.env.now, Duration::from_secs(1));
    assert!(d.head_deadline().is_some(), "the head's deadline runs");
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhel")
        .unwrap();
    let Read::Head(head) = read(&mut h, &mut d, &req, true) else {
        panic!("a head");
    };
    assert_eq!(head.status, 200);
    assert_eq!(head.body, Framer::Length(5));
    d.body_starts(&mut h.ctx.up(), head, false);
    assert!(d.head_sent());
    assert!(matches!(
        read(&mut h, &mut d, &req, true),
        Read::Quiet(true)
    ));
    let hel = Output::Bytes {
        data: b"hel",
        last: false,
    };
    assert_eq!(d.output(), hel);
    d.took(3);
    assert_eq!(d.output(), Output::Later);
    peer.write_all(b"lo").unwrap();
    assert!(matches!(
        read(&mut h, &mut d, &req, true),
        Read::Quiet(true)
    ));
    let lo = Output::Bytes {
        data: b"lo",
        last: true,
    };
    assert_eq!(d.output(), lo);
    d.took(2);
    assert_eq!(d.output(), Output::Done);
    d.finish(&mut h.ctx.up(), true);
    assert_eq!(
        h.ctx.ups.pool.len(),
        1,
        "a clean connection goes back to the pool"
    );
    assert!(d.conn().is_none() && d.resp.is_none());
}

#[test]
fn interim_heads_are_counted_and_a_chunked_body_is_decoded_for_http10() {
    let mut h = harness(CONFIG);
    let (mut d, mut peer) = scripted(&mut h, false);
    let req = get();
    d.send(None);
    peer.write_all(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    let Read::Head(interim) = read(&mut h, &mut d, &req, true) else {
        panic!("the interim head");
    };
    assert!(interim.is_interim());
    assert!(d.interim_passed(&mut h.ctx.up(), interim));
    assert_eq!(d.head_wait().map(|w| w.interim), Some(1));
    let Read::Head(head) = read(&mut h, &mut d, &req, true) else {
        panic!("the final head");
    };
    d.body_starts(&mut h.ctx.up(), head, true);
    assert!(matches!(
        read(&mut h, &mut d, &req, true),
        Read::Quiet(true)
    ));
    assert_eq!(d.body_pending(), b"hello", "chunked framing stripped");
    d.took(5);
    assert!(d.response_done());
}

#[test]
fn a_502_head_the_route_retries_waits_a_backoff_for_another_peer() {
    let mut h = harness(CONFIG);
    let (mut d, mut peer) = scripted(&mut h, false);
    let req = get();
    d.send(None);
    peer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let Read::Head(head) = read(&mut h, &mut d, &req, true) else {
        panic!("a head");
    };
    assert_eq!(head.status, 502);
    let started = with_trip(&mut h, &req, true, |w, trip| {
        assert!(may_retry(w, &d, trip, Cause::Status(502)).is_ok());
        d.skip_head(w, head);
        d.retry(w, OWNER, trip, Cause::Status(502))
    });
    assert_eq!(started.unwrap(), Started::Backoff);
    let until = d.backoff_until().expect("a backoff");
    assert!(until > h.ctx.env.now && until <= h.ctx.env.now + Duration::from_millis(10));
    assert!(d.conn().is_none() && d.resp.is_none());
    assert_eq!((d.tried.as_slice(), d.attempts), (&[0][..], 1));
    assert!(!d.backoff_over(h.ctx.env.now));
    assert!(d.backoff_over(until));
}

#[test]
fn a_stale_pooled_connection_that_closes_unanswered_is_replayed_not_charged() {
    let mut h = harness(CONFIG);
    let (mut d, peer) = scripted(&mut h, true);
    let req = get();
    d.send(None);
    drop(peer);
    assert!(matches!(read(&mut h, &mut d, &req, true), Read::Replay));
    assert_eq!((d.attempts, d.stale_replays), (0, 1));
    assert!(d.tried.is_empty(), "the peer is not counted as tried");
    assert!(d.conn().is_none());
}

#[test]
fn a_peer_that_closes_before_the_head_is_retried_or_fails_with_502() {
    let mut h = harness(CONFIG);
    let req = get();
    // The route retries on "error": a backoff for the next peer.
    let (mut d, peer) = scripted(&mut h, false);
    d.send(None);
    drop(peer);
    assert!(matches!(
        read(&mut h, &mut d, &req, true),
        Read::Quiet(true)
    ));
    assert!(d.backoff_until().is_some());
    // Without a route (no retry rule): the failure goes back to the exchange.
    let (mut d, peer) = scripted(&mut h, false);
    d.send(None);
    drop(peer);
    let Read::Failed(f) = read(&mut h, &mut d, &req, false) else {
        panic!("a failure");
    };
    // The peer closed with the request unread: a reset, not an end of stream.
    assert_eq!(
        (f.status, f.why.as_str()),
        (
            502,
            "upstream connection broke (reset) while reading the response"
        )
    );
    assert!(matches!(d.phase, Phase::Off));
}

#[test]
fn an_invalid_head_fails_and_a_body_cut_short_truncates() {
    let mut h = harness(CONFIG);
    let req = get();
    let (mut d, mut peer) = scripted(&mut h, false);
    d.send(None);
    peer.write_all(b"HTTP/1.1 abc\r\n\r\n").unwrap();
    let Read::Failed(f) = read(&mut h, &mut d, &req, false) else {
        panic!("a failure");
    };
    assert_eq!(
        (f.status, f.why.as_str()),
        (502, "upstream sent an invalid header")
    );

    let (mut d, mut peer) = scripted(&mut h, false);
    d.send(None);
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let Read::Head(head) = read(&mut h, &mut d, &req, false) else {
        panic!("a head");
    };
    d.body_starts(&mut h.ctx.up(), head, false);
    drop(peer);
    let Read::Failed(f) = read(&mut h, &mut d, &req, false) else {
        panic!("a failure");
    };
    assert_eq!(f.status, 502);
    assert!(
        matches!(d.phase, Phase::Truncated),
        "after the head, the client is cut"
    );
    assert_eq!(
        d.body_pending(),
        b"abc",
        "what arrived still goes out first"
    );
}

#[test]
fn a_request_body_goes_out_behind_the_head_in_one_write() {
    let mut h = harness(CONFIG);
    let (mut d, mut peer) = scripted(&mut h, false);
    let mut body = h.ctx.env.bufs.get(crate::worker::buffer::BUF_SIZE);
    let mut src: &[u8] = b"hello";
    body.read_from(&mut src).unwrap();
    body.pass(5);
    assert!(d.send(Some(&mut body)));
    assert_eq!(d.body_sent, 5);
    assert!(body.is_empty());
    let sent = drain(&mut peer);
    assert!(sent.ends_with(b"\r\n\r\nhello"), "{sent:?}");
}
