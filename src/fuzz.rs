//! Entry points for the fuzz targets (`tests/fuzz`) and for the test that replays their
//! corpus under `cargo test`. Each runs one codec on arbitrary bytes and checks invariants;
//! any panic is a bug (in the worker it would abort every connection).

use crate::config::filters::proxy_defaults;
use crate::http::body::Framer;
use crate::http::headers::Headers;
use crate::http::request::{self, Limits, RequestHead};
use crate::http::response::{self, ClientFraming, ResponseHead};
use crate::worker::filters::{self, Cx, Verdict};

/// A request head as the worker sends it upstream: fields, the proxy chain, the codec.
fn forward(head: &RequestHead, raw: &[u8], h: &mut Headers, out: &mut Vec<u8>) {
    head.upstream_fields("app", h);
    let chain = proxy_defaults();
    let verdict = filters::on_request(&chain, raw, h, &Cx::detached());
    assert_eq!(verdict, Verdict::Continue, "the proxy chain never answers");
    head.write_upstream(raw, None, h, out);
}

/// A response head as the worker sends it to a client.
fn respond(
    head: &ResponseHead,
    raw: &[u8],
    minor: u8,
    keep: bool,
    h: &mut Headers,
    out: &mut Vec<u8>,
) -> ClientFraming {
    head.fields(h);
    let chain = proxy_defaults();
    let verdict = filters::on_response(&chain, raw, h, &Cx::detached());
    assert_eq!(verdict, Verdict::Continue, "the proxy chain never answers");
    head.write_client(raw, minor, keep, h, out)
}

pub fn request_head(data: &[u8]) {
    let (cfg, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    let limits = Limits {
        max_headers: 1 + usize::from(cfg & 0x3f),
        max_uri: 64 + usize::from(cfg) * 16,
        max_body: u64::from(cfg) * 100,
    };
    let fresh = request::parse(data, &limits);
    // The worker parses into a recycled head: one that held another request first must
    // come out the same as a fresh parse.
    let mut reused = request::parse(
        b"POST http://Old.example:81/o?x HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nReferer: r\r\nContent-Length: 3\r\n\r\n",
        &Limits::default(),
    )
    .ok()
    .flatten()
    .expect("the seed request parses");
    match (&fresh, request::parse_into(data, &limits, &mut reused)) {
        (Ok(Some(f)), Ok(true)) => assert_eq!(format!("{f:?}"), format!("{reused:?}")),
        (Ok(None), Ok(false)) => {}
        (Err(a), Err(b)) => assert_eq!(a.status(), b.status()),
        (a, b) => panic!("fresh parse {a:?} but parse into a used head {b:?}"),
    }
    if let Ok(Some(head)) = fresh {
        assert!(head.head_len <= data.len());
        assert!(head.path().starts_with('/') || head.path() == "*");
        let mut out = Vec::new();
        forward(
            &head,
            &data[..head.head_len],
            &mut Headers::default(),
            &mut out,
        );
        // The worker edits every head in one reused header list: a list that held another
        // request's fields (and added values) writes the same bytes as a fresh one.
        let mut used = Headers::default();
        let seed = b"GET / HTTP/1.1\r\nHost: seed\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: x-a\r\nX-A: 1\r\n\r\n";
        if let Ok(Some(s)) = request::parse(seed, &Limits::default()) {
            let mut scratch = Vec::new();
            forward(&s, seed, &mut used, &mut scratch);
        }
        let mut again_out = Vec::new();
        forward(&head, &data[..head.head_len], &mut used, &mut again_out);
        assert_eq!(again_out, out, "a reused header list changes nothing");
        // What goes upstream is itself one valid request with the same framing.
        let again = request::parse(&out, &Limits::default())
            .expect("the forwarded head parses")
            .expect("the forwarded head is complete");
        assert_eq!(again.head_len, out.len());
        assert_eq!(again.body, head.body);
    }
}

pub fn response_head(data: &[u8]) {
    let (cfg, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    if let Ok(Some(head)) = response::parse(data, cfg & 1 == 1) {
        assert!(head.head_len <= data.len());
        for minor in [0, 1] {
            let mut out = Vec::new();
            let framing = respond(
                &head,
                &data[..head.head_len],
                minor,
                cfg & 2 == 2,
                &mut Headers::default(),
                &mut out,
            );
            // Parsed into reused spans and written through a used header list, as the
            // worker does: the same bytes.
            let seed = b"HTTP/1.1 200 OK\r\nServer: s\r\nKeep-Alive: 5\r\nX-A: 1\r\n\r\n";
            let mut used = Headers::default();
            let mut spans = Vec::new();
            if let Ok(Some(s)) = response::parse(seed, false) {
                let mut scratch = Vec::new();
                respond(&s, seed, 1, true, &mut used, &mut scratch);
                spans = s.into_spans();
            }
            let reparsed = response::parse_reusing(data, cfg & 1 == 1, spans)
                .expect("parsed once already")
                .expect("complete");
            let mut again_out = Vec::new();
            let again_framing = respond(
                &reparsed,
                &data[..head.head_len],
                minor,
                cfg & 2 == 2,
                &mut used,
                &mut again_out,
            );
            assert_eq!(
                again_out, out,
                "reused spans and header list change nothing"
            );
            assert_eq!(again_framing, framing);
            // The proxy adds up to two lines (framing, Connection), which may take a head at
            // the header-count limit over it; the invariant holds below it.
            if head.header_count() + 2 > response::MAX_RESPONSE_HEADERS {
                continue;
            }
            let again = response::parse(&out, cfg & 1 == 1)
                .expect("the forwarded head parses")
                .expect("the forwarded head is complete");
            assert_eq!(again.status, head.status);
            if !framing.decode_chunked {
                assert_eq!(again.body, head.body);
            }
        }
    }
}

pub fn chunked(data: &[u8]) {
    let (split, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    // Whole input at once.
    let mut whole = Framer::chunked();
    let whole_result = whole.advance_raw(data);
    // The same input in pieces of `split` bytes must reach the same verdict.
    let piece = usize::from(split).max(1);
    let mut f = Framer::chunked();
    let mut pos = 0;
    let mut pieces_result = Ok((0, false));
    while pos < data.len() {
        let end = (pos + piece).min(data.len());
        match f.advance_raw(&data[pos..end]) {
            Ok((n, done)) => {
                pos += n;
                pieces_result = Ok((pos, done));
                if done || n < end - (pos - n) {
                    break;
                }
            }
            Err(e) => {
                pieces_result = Err(e);
                break;
            }
        }
    }
    match (&whole_result, &pieces_result) {
        (Ok((a, true)), Ok((b, true))) => assert_eq!(a, b),
        (Ok((_, true)), other) => panic!("pieces disagree: {other:?}"),
        (Err(_), Ok((_, true))) => panic!("pieces accepted what the whole refused"),
        _ => {}
    }
    // Decoding yields no more payload than input.
    let mut d = Framer::chunked();
    let mut rest = data;
    let mut payload = 0;
    while let Ok(step) = d.step(rest) {
        payload += step.data.len();
        rest = &rest[step.consumed..];
        if step.done || step.consumed == 0 {
            break;
        }
    }
    assert!(payload <= data.len());
    // Rewriting the framing (`reframe`) accepts what the framer accepts, keeps the payload,
    // and its output is already canonical: rewriting it again changes nothing.
    if let Ok((n, true)) = whole_result {
        let decode = |bytes: &[u8]| {
            let mut f = Framer::chunked();
            let mut rest = bytes;
            let mut out = Vec::new();
            while let Ok(s) = f.step(rest) {
                out.extend_from_slice(&rest[s.data.clone()]);
                rest = &rest[s.consumed..];
                if s.done || s.consumed == 0 {
                    break;
                }
            }
            out
        };
        let reframe = |bytes: &[u8]| {
            let mut buf = bytes.to_vec();
            let r = Framer::chunked().reframe(&mut buf, 0, 0);
            assert_eq!(r.result, Ok(true));
            assert_eq!(r.inp, bytes.len());
            buf.truncate(r.out);
            buf
        };
        let once = reframe(&data[..n]);
        assert_eq!(decode(&once), decode(&data[..n]));
        assert_eq!(reframe(&once), once);
    }
}

/// HTTP/2 frames: the decoder on arbitrary bytes, whole and grown a piece at a time (as a
/// connection sees them arrive), and every frame written back decoding to itself.
pub fn h2_frames(data: &[u8]) {
    use crate::http::h2::frame::{self, Frame, SettingsFrame};
    use crate::http::h2::settings::{MAX_FRAME_SIZE_LIMIT, MIN_FRAME_SIZE};
    let (cfg, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    let max = (MIN_FRAME_SIZE << (cfg & 7)).min(MAX_FRAME_SIZE_LIMIT);
    let piece = usize::from(cfg >> 3).max(1);
    let frames = |upto: usize| {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            match frame::decode(&data[at..upto], max) {
                Ok(Some((f, n))) => {
                    assert!(n >= frame::HEADER_LEN && at + n <= upto);
                    out.push(format!("{f:?}"));
                    at += n;
                }
                Ok(None) => return (out, at, None),
                Err(e) => return (out, at, Some(e)),
            }
        }
    };
    let (whole, used, err) = frames(data.len());
    // A prefix yields a prefix of the frames, and the error only once its frame is in
    // (an oversized frame's header is enough).
    let mut upto = 0;
    while upto < data.len() {
        upto = (upto + piece).min(data.len());
        let (some, _, e) = frames(upto);
        assert_eq!(some[..], whole[..some.len()]);
        if e.is_some() {
            assert_eq!(e, err);
            assert_eq!(some.len(), whole.len());
        }
    }
    // Each frame written back decodes to the same frame (padding and priority aside).
    let mut at = 0;
    while at < used {
        let Ok(Some((f, n))) = frame::decode(&data[at..used], max) else {
            panic!("decoded once already");
        };
        at += n;
        let mut out = Vec::new();
        match f {
            Frame::Data {
                stream,
                data,
                end_stream,
                ..
            } => {
                frame::write_data_head(&mut out, stream, data.len(), end_stream);
                out.extend_from_slice(data);
            }
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers: true,
                ..
            } => frame::write_headers(&mut out, stream, block, end_stream, max),
            Frame::Settings(SettingsFrame::Ack) => frame::write_settings_ack(&mut out),
            Frame::Settings(s) => frame::write_settings(&mut out, &s.params().collect::<Vec<_>>()),
            Frame::Ping { ack, data } => frame::write_ping(&mut out, ack, data),
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => frame::write_goaway(&mut out, last_stream, code, debug),
            Frame::RstStream { stream, code } => frame::write_rst_stream(&mut out, stream, code),
            Frame::WindowUpdate { stream, increment } => {
                frame::write_window_update(&mut out, stream, increment)
            }
            _ => continue,
        }
        let Ok(Some((again, m))) = frame::decode(&out, max) else {
            panic!("{f:?} written back does not decode");
        };
        assert_eq!(m, out.len());
        let normal = |f: Frame| match f {
            Frame::Data {
                stream,
                data,
                end_stream,
                ..
            } => format!("data {stream} {data:?} {end_stream}"),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
                ..
            } => format!("headers {stream} {block:?} {end_stream} {end_headers}"),
            other => format!("{other:?}"),
        };
        assert_eq!(normal(again), normal(f));
    }
}

/// HPACK: blocks of arbitrary bytes through one decoder (its table carries over, as on a
/// connection); whatever decodes, encoded again and decoded by a second pair, comes back
/// the same; the decoded list never passes its limit; one taken as a request is written
/// as exactly one HTTP/1.1 head.
pub fn hpack(data: &[u8]) {
    use crate::http::h2::hpack::{field_cost, Decoder, Encoder, Fits};
    use crate::http::h2::message::Kind;
    let (cfg, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    let max_list = 64 << (cfg & 15);
    let block_len = usize::from(cfg >> 4) * 8 + 1;
    let mut d = Decoder::default();
    let (mut e2, mut d2) = (Encoder::default(), Decoder::default());
    for block in data.chunks(block_len) {
        let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut cost = 0;
        let r = d.decode(block, max_list, |n, v| {
            cost += field_cost(n, v);
            got.push((n.to_vec(), v.to_vec()));
        });
        assert!(cost <= max_list);
        assert!(d.table_size() <= crate::http::h2::hpack::DEFAULT_TABLE_SIZE);
        match r {
            Ok(Fits::Whole) => {}
            Ok(Fits::TooLarge) => continue,
            // The connection ends with COMPRESSION_ERROR: nothing after is decoded.
            Err(_) => return,
        }
        // A list that passes as a request becomes exactly one HTTP/1.1 head: the strict
        // parser finds it whole and ending where it ends (nothing smuggled after it).
        let mut list = crate::http::h2::message::HeaderList::default();
        for (n, v) in &got {
            list.push(n, v);
        }
        let mut head = Vec::new();
        if let Ok(Kind::Normal | Kind::ExtendedConnect) =
            crate::http::h2::message::request_head(&list, cfg & 1 == 1, &mut head)
        {
            match request::parse(&head, &Limits::default()) {
                Ok(Some(h)) => assert_eq!(h.head_len, head.len()),
                Ok(None) => panic!("a written head is incomplete: {head:?}"),
                Err(_) => {}
            }
        }
        let mut out = Vec::new();
        e2.encode(got.iter().map(|(n, v)| (&n[..], &v[..])), &mut out);
        let mut again = Vec::new();
        let r2 = d2.decode(&out, usize::MAX, |n, v| {
            again.push((n.to_vec(), v.to_vec()))
        });
        assert_eq!(r2, Ok(Fits::Whole));
        assert_eq!(again, got);
    }
}

/// An HTTP/2 server connection fed arbitrary frames after a valid preface, in pieces,
/// answering every request it passes up and using every body octet: it never panics,
/// never takes more than it was given, ends every connection error with GOAWAY, and
/// sends at most a few octets for each one received.
pub fn h2_conn(data: &[u8]) {
    use crate::http::h2::conn::{Conn, Handler, Limits};
    use crate::http::h2::message::{HeaderList, Kind};
    use crate::http::h2::{frame, ErrorCode, PREFACE};
    #[derive(Default)]
    struct Up {
        requests: Vec<u32>,
        used: Vec<(u32, usize)>,
    }
    impl Handler for Up {
        fn request(&mut self, stream: u32, head: &[u8], _: Kind, _: bool) {
            assert!(head.ends_with(b"\r\n\r\n"));
            self.requests.push(stream);
        }
        fn data(&mut self, stream: u32, data: &[u8], _: bool) {
            self.used.push((stream, data.len()));
        }
        fn trailers(&mut self, _: u32, _: &HeaderList) {}
        fn reset(&mut self, _: u32, _: ErrorCode) {}
        fn writable(&mut self, _: u32) {}
    }
    let (cfg, data) = data.split_first().map_or((0, data), |(c, d)| (*c, d));
    let limits = Limits {
        max_concurrent_streams: u32::from(cfg & 7) + 1,
        max_header_list_size: 256 << (cfg >> 6),
        initial_window: 1000,
    };
    let piece = usize::from((cfg >> 3) & 7) * 7 + 1;
    let mut c = Conn::new(limits);
    let mut input = PREFACE.to_vec();
    frame::write_settings(&mut input, &[]);
    input.extend_from_slice(data);
    let mut up = Up::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut sent = c.out.len();
    c.out.clear();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        match c.receive(&buf, 1_000, &mut up) {
            Ok(n) => {
                assert!(n <= buf.len());
                buf.drain(..n);
            }
            Err(e) => {
                let mut at = 0;
                let mut last = None;
                while let Ok(Some((f, n))) = frame::decode(&c.out[at..], 1 << 24) {
                    at += n;
                    last = Some(format!("{f:?}"));
                }
                assert!(
                    last.as_deref().is_some_and(|l| l.starts_with("GoAway")),
                    "{e:?} ended without GOAWAY: {last:?}"
                );
                return;
            }
        }
        for (stream, n) in up.used.drain(..) {
            c.consumed(stream, n);
        }
        for stream in up.requests.drain(..) {
            c.send_head(stream, [(&b":status"[..], &b"200"[..])], false);
            c.send_data(stream, b"ok", true);
        }
        sent += c.out.len();
        c.out.clear();
        assert!(
            sent <= 4 * input.len() + 4096,
            "{sent} octets sent for {}",
            input.len()
        );
    }
}
