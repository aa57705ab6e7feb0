use super::*;
use crate::http::h2::frame::{write_headers, write_ping, write_rst_stream, write_settings};

#[derive(Default)]
struct Seen(Vec<String>);

impl Handler for Seen {
    fn request(&mut self, stream: u32, head: &[u8], kind: Kind, end_stream: bool) {
        let line = String::from_utf8_lossy(head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        self.0
            .push(format!("request {stream} {kind:?} {line} end={end_stream}"));
    }
    fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        self.0
            .push(format!("data {stream} {} end={end_stream}", data.len()));
    }
    fn trailers(&mut self, stream: u32, fields: &HeaderList) {
        self.0.push(format!("trailers {stream} {}", fields.len()));
    }
    fn reset(&mut self, stream: u32, code: ErrorCode) {
        self.0.push(format!("reset {stream} {}", code.name()));
    }
    fn writable(&mut self, stream: u32) {
        self.0.push(format!("writable {stream}"));
    }
}

/// A client: the preface and its SETTINGS, then whatever a test adds.
struct Client {
    bytes: Vec<u8>,
    enc: hpack::Encoder,
}

impl Client {
    fn new() -> Client {
        let mut bytes = PREFACE.to_vec();
        write_settings(&mut bytes, &[]);
        Client {
            bytes,
            enc: hpack::Encoder::default(),
        }
    }

    fn get(&mut self, stream: u32, path: &str, end_stream: bool) -> &mut Client {
        self.request(stream, &[(":path", path)], end_stream)
    }

    fn request(&mut self, stream: u32, extra: &[(&str, &str)], end_stream: bool) -> &mut Client {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "a.test"),
        ];
        if !extra.iter().any(|(n, _)| *n == ":path") {
            fields.push((":path", "/"));
        }
        fields.extend_from_slice(extra);
        let mut block = Vec::new();
        self.enc.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut block,
        );
        write_headers(&mut self.bytes, stream, &block, end_stream, MIN_FRAME_SIZE);
        self
    }

    fn raw(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> &mut Client {
        f(&mut self.bytes);
        self
    }
}

/// What the server sent, a line per frame.
fn sent(c: &mut Conn) -> Vec<String> {
    let out = std::mem::take(&mut c.out);
    let mut v = Vec::new();
    let mut at = 0;
    while let Ok(Some((f, n))) = frame::decode(&out[at..], frame::HEADER_LEN as u32 + (1 << 20)) {
        at += n;
        v.push(match f {
            Frame::Settings(SettingsFrame::Ack) => "SETTINGS ack".into(),
            Frame::Settings(_) => "SETTINGS".into(),
            Frame::WindowUpdate { stream, increment } => {
                format!("WINDOW_UPDATE {stream} {increment}")
            }
            Frame::RstStream { stream, code } => format!("RST_STREAM {stream} {}", code.name()),
            Frame::GoAway {
                last_stream, code, ..
            } => format!("GOAWAY {last_stream} {}", code.name()),
            Frame::Ping { ack, .. } => format!("PING ack={ack}"),
            Frame::Headers {
                stream, end_stream, ..
            } => format!("HEADERS {stream} end={end_stream}"),
            Frame::Data {
                stream,
                data,
                end_stream,
                ..
            } => {
                format!("DATA {stream} {} end={end_stream}", data.len())
            }
            other => format!("{other:?}"),
        });
    }
    v
}

fn feed(c: &mut Conn, bytes: &[u8], h: &mut Seen) -> Result<usize, H2Error> {
    c.receive(bytes, 1_000, h)
}

/// A connection past its preface and SETTINGS (what the server sent for them taken),
/// and the client that opened it, with nothing more to send yet.
fn open(limits: Limits) -> (Conn, Seen, Client) {
    let mut c = Conn::new(limits);
    let mut h = Seen::default();
    let mut cl = Client::new();
    assert_eq!(feed(&mut c, &cl.bytes, &mut h), Ok(cl.bytes.len()));
    sent(&mut c);
    cl.bytes.clear();
    (c, h, cl)
}

#[test]
fn the_connection_starts_with_settings_both_ways() {
    let mut c = Conn::new(Limits::default());
    assert_eq!(sent(&mut c), ["SETTINGS", "WINDOW_UPDATE 0 8323073"]);
    let mut h = Seen::default();
    let hello = Client::new();
    // The preface in two pieces: nothing is taken until it is whole.
    assert_eq!(feed(&mut c, &hello.bytes[..10], &mut h), Ok(0));
    assert_eq!(feed(&mut c, &hello.bytes, &mut h), Ok(hello.bytes.len()));
    assert_eq!(sent(&mut c), ["SETTINGS ack"]);
    assert!(c.settings_unacked());
    let mut ack = Vec::new();
    frame::write_settings_ack(&mut ack);
    feed(&mut c, &ack, &mut h).unwrap();
    assert!(!c.settings_unacked());
}

#[test]
fn a_wrong_preface_or_first_frame_ends_the_connection() {
    let mut c = Conn::new(Limits::default());
    sent(&mut c);
    let e = feed(&mut c, b"GET / HTTP/1.1\r\n", &mut Seen::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Protocol);
    let mut c = Conn::new(Limits::default());
    sent(&mut c);
    let mut b = PREFACE.to_vec();
    write_ping(&mut b, false, [0; 8]);
    assert!(feed(&mut c, &b, &mut Seen::default()).is_err());
    assert_eq!(sent(&mut c), ["GOAWAY 0 PROTOCOL_ERROR"]);
}

#[test]
fn a_request_is_answered_on_its_stream() {
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.get(1, "/x?y", true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0, ["request 1 Normal GET /x?y HTTP/1.1 end=true"]);
    assert_eq!(c.active(), 1);
    c.send_head(1, [(&b":status"[..], &b"200"[..])], false);
    assert_eq!(c.send_data(1, b"hello", true), 5);
    assert_eq!(sent(&mut c), ["HEADERS 1 end=false", "DATA 1 5 end=true"]);
    assert_eq!(c.active(), 0);
    // A frame on the finished stream now: the connection's error (5.1, closed).
    let mut b = Vec::new();
    frame::write_data_head(&mut b, 1, 1, false);
    b.push(b'x');
    let e = feed(&mut c, &b, &mut h).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StreamClosed);
}

#[test]
fn request_bodies_are_credited_back_only_once_passed_on() {
    // A connection window of 2 x 100.
    let limits = Limits {
        initial_window: 100,
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let (mut c, mut h, mut cl) = open(limits);
    let mut block = Vec::new();
    cl.enc.encode(
        [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"https"),
            (b":authority", b"a"),
            (b":path", b"/up"),
        ],
        &mut block,
    );
    write_headers(&mut cl.bytes, 1, &block, false, MIN_FRAME_SIZE);
    frame::write_data_head(&mut cl.bytes, 1, 60, false);
    cl.bytes.extend_from_slice(&[b'a'; 60]);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0[1], "data 1 60 end=false");
    assert!(sent(&mut c).is_empty(), "no credit before the data is used");
    c.consumed(1, 60);
    assert_eq!(sent(&mut c), ["WINDOW_UPDATE 1 60"]);
    // Past the stream's window: that stream is reset, the connection lives.
    let mut b = Vec::new();
    frame::write_data_head(&mut b, 1, 60, false);
    b.extend_from_slice(&[b'a'; 60]);
    frame::write_data_head(&mut b, 1, 60, false);
    b.extend_from_slice(&[b'a'; 60]);
    feed(&mut c, &b, &mut h).unwrap();
    // The refused octets still count for the connection, and are given back with it:
    // its window never shrinks for good (a client repeating this would stall every
    // stream). 60 owed before, 60 refused now: half the connection's 200 passed.
    assert_eq!(
        sent(&mut c),
        ["WINDOW_UPDATE 0 120", "RST_STREAM 1 FLOW_CONTROL_ERROR"]
    );
}

#[test]
fn streams_past_the_limit_are_refused() {
    let limits = Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let (mut c, mut h, mut cl) = open(limits);
    cl.get(1, "/1", true).get(3, "/3", true).get(5, "/5", true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0.len(), 2);
    assert_eq!(sent(&mut c), ["RST_STREAM 5 REFUSED_STREAM"]);
}

#[test]
fn malformed_requests_are_reset_and_never_reach_the_handler() {
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.request(1, &[("Upper", "x")], true)
        .request(3, &[("connection", "close")], true)
        .request(5, &[("x", "ok")], true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(
        sent(&mut c),
        ["RST_STREAM 1 PROTOCOL_ERROR", "RST_STREAM 3 PROTOCOL_ERROR"]
    );
    assert_eq!(h.0, ["request 5 Normal GET / HTTP/1.1 end=true"]);
}

#[test]
fn stream_ids_must_rise_and_be_odd() {
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.get(2, "/", true);
    assert_eq!(
        feed(&mut c, &cl.bytes, &mut h).unwrap_err().code(),
        ErrorCode::Protocol
    );
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.get(5, "/", true).get(3, "/", true);
    assert_eq!(
        feed(&mut c, &cl.bytes, &mut h).unwrap_err().code(),
        ErrorCode::Protocol
    );
}

#[test]
fn frames_after_the_clients_reset_get_stream_closed() {
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.get(1, "/", false)
        .raw(|b| write_rst_stream(b, 1, ErrorCode::Cancel))
        .raw(|b| {
            frame::write_data_head(b, 1, 1, false);
            b.push(b'x');
        });
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0[1], "reset 1 CANCEL");
    // (its octet is credited to the connection, below the half that sends an update)
    assert_eq!(sent(&mut c), ["RST_STREAM 1 STREAM_CLOSED"]);
}

#[test]
fn floods_end_the_connection_with_enhance_your_calm() {
    // Rapid reset: open and cancel, again and again.
    let (mut c, mut h, mut cl) = open(Limits::default());
    for i in 0..500u32 {
        let id = 2 * i + 1;
        cl.get(id, "/", false)
            .raw(|b| write_rst_stream(b, id, ErrorCode::Cancel));
    }
    let e = feed(&mut c, &cl.bytes, &mut h).unwrap_err();
    assert_eq!(e.code(), ErrorCode::EnhanceYourCalm);
    let requests = h.0.iter().filter(|l| l.starts_with("request")).count();
    assert!(requests <= 129, "{requests}");
    assert!(sent(&mut c).last().unwrap().ends_with("ENHANCE_YOUR_CALM"));
    // PING flood.
    let (mut c, mut h, _) = open(Limits::default());
    let mut b = Vec::new();
    for _ in 0..1000 {
        write_ping(&mut b, false, [1; 8]);
    }
    assert_eq!(
        feed(&mut c, &b, &mut h).unwrap_err().code(),
        ErrorCode::EnhanceYourCalm
    );
    let acks = sent(&mut c)
        .iter()
        .filter(|l| l.starts_with("PING"))
        .count();
    assert_eq!(acks, 100);
    // Header blocks interleaved with other frames.
    let (mut c, mut h, _) = open(Limits::default());
    let mut b = Vec::new();
    frame::write_head(&mut b, 0, frame::HEADERS, 0, 1);
    write_ping(&mut b, false, [1; 8]);
    assert_eq!(
        feed(&mut c, &b, &mut h).unwrap_err().code(),
        ErrorCode::Protocol
    );
}

#[test]
fn a_frame_wrong_for_one_stream_resets_that_stream_only() {
    let (mut c, mut h, _) = open(Limits::default());
    let mut b = Vec::new();
    frame::write_head(&mut b, 4, frame::PRIORITY, 0, 3);
    b.extend_from_slice(&[0; 4]);
    write_ping(&mut b, false, [2; 8]);
    assert_eq!(feed(&mut c, &b, &mut h), Ok(b.len()));
    assert_eq!(
        sent(&mut c),
        ["RST_STREAM 3 FRAME_SIZE_ERROR", "PING ack=true"]
    );
}

#[test]
fn a_drain_takes_streams_in_flight_then_sends_the_real_goaway() {
    let (mut c, mut h, mut cl) = open(Limits::default());
    cl.get(1, "/a", true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    sent(&mut c);
    c.drain();
    assert_eq!(
        sent(&mut c),
        ["GOAWAY 2147483647 NO_ERROR", "PING ack=false"]
    );
    // Sent before the client saw the GOAWAY: still taken.
    cl.bytes.clear();
    cl.get(3, "/b", true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0.len(), 2);
    // The PING comes back: the real last stream id.
    let mut b = Vec::new();
    write_ping(&mut b, true, DRAIN_PING);
    feed(&mut c, &b, &mut h).unwrap();
    assert_eq!(sent(&mut c), ["GOAWAY 3 NO_ERROR"]);
    // Later streams are not taken; those in progress finish, then the connection may go.
    cl.bytes.clear();
    cl.get(5, "/c", true);
    feed(&mut c, &cl.bytes, &mut h).unwrap();
    assert_eq!(h.0.len(), 2);
    assert!(!c.is_finished());
    for s in [1, 3] {
        c.send_head(s, [(&b":status"[..], &b"200"[..])], false);
        c.send_trailers(s, [(&b"grpc-status"[..], &b"0"[..])]);
    }
    assert_eq!(
        sent(&mut c),
        [
            "HEADERS 1 end=false",
            "HEADERS 1 end=true",
            "HEADERS 3 end=false",
            "HEADERS 3 end=true"
        ]
    );
    assert!(c.is_finished());
}
