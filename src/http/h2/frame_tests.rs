use super::*;
use crate::http::h2::settings::MIN_FRAME_SIZE;

const MAX: u32 = MIN_FRAME_SIZE;

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_head(&mut v, payload.len(), kind, flags, stream);
    v.extend_from_slice(payload);
    v
}

fn one(bytes: &[u8]) -> Result<Frame<'_>, H2Error> {
    let (f, n) = decode(bytes, MAX)?.expect("a whole frame");
    assert_eq!(n, bytes.len());
    Ok(f)
}

fn conn_code(bytes: &[u8]) -> ErrorCode {
    match one(bytes) {
        Err(H2Error::Connection { code, .. }) => code,
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn a_frame_is_returned_only_when_whole() {
    let f = raw(DATA, END_STREAM, 1, b"hello");
    for cut in 0..f.len() {
        assert_eq!(decode(&f[..cut], MAX), Ok(None), "cut at {cut}");
    }
    let mut two = f.clone();
    two.extend_from_slice(&raw(PING, 0, 0, &[7; 8]));
    let (first, n) = decode(&two, MAX).unwrap().unwrap();
    assert_eq!(n, f.len());
    assert_eq!(
        first,
        Frame::Data {
            stream: 1,
            data: b"hello",
            end_stream: true,
            flow_len: 5
        }
    );
    let (second, _) = decode(&two[n..], MAX).unwrap().unwrap();
    assert_eq!(
        second,
        Frame::Ping {
            ack: false,
            data: [7; 8]
        }
    );
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_alone() {
    let mut h = Vec::new();
    write_head(&mut h, MAX as usize + 1, DATA, 0, 1);
    assert!(matches!(
        decode(&h, MAX),
        Err(H2Error::Connection {
            code: ErrorCode::FrameSize,
            ..
        })
    ));
    // At the announced maximum it is waited for.
    let mut h = Vec::new();
    write_head(&mut h, MAX as usize, DATA, 0, 1);
    assert_eq!(decode(&h, MAX), Ok(None));
}

#[test]
fn the_reserved_bit_of_a_stream_id_is_ignored() {
    let mut f = raw(DATA, 0, 3, b"x");
    f[5] |= 0x80;
    assert_eq!(one(&f).unwrap().stream(), 3);
}

#[test]
fn padding_is_removed_and_counted_for_flow_control() {
    let mut p = vec![3u8];
    p.extend_from_slice(b"abc");
    p.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        one(&raw(DATA, PADDED, 1, &p)).unwrap(),
        Frame::Data {
            stream: 1,
            data: b"abc",
            end_stream: false,
            flow_len: 7
        }
    );
    // Padding as long as the rest of the payload leaves nothing: allowed.
    assert!(one(&raw(DATA, PADDED, 1, &[2, 0, 0])).is_ok());
    // Longer: a connection PROTOCOL_ERROR; so is a padded frame without a pad length.
    assert_eq!(
        conn_code(&raw(DATA, PADDED, 1, &[3, 0, 0])),
        ErrorCode::Protocol
    );
    assert_eq!(conn_code(&raw(DATA, PADDED, 1, &[])), ErrorCode::Protocol);
    assert_eq!(
        conn_code(&raw(HEADERS, PADDED, 1, &[9, 1])),
        ErrorCode::Protocol
    );
}

#[test]
fn headers_carry_their_flags_block_and_priority() {
    let mut p = vec![2u8];
    p.extend_from_slice(&[0x80, 0, 0, 5, 15]);
    p.extend_from_slice(b"blk");
    p.extend_from_slice(&[0, 0]);
    assert_eq!(
        one(&raw(HEADERS, PADDED | PRIORITY_FLAG | END_STREAM, 7, &p)).unwrap(),
        Frame::Headers {
            stream: 7,
            block: b"blk",
            end_stream: true,
            end_headers: false,
            priority: Some(Priority {
                dependency: 5,
                exclusive: true,
                weight: 15
            })
        }
    );
    // The padding may not eat into the priority fields.
    let mut p = vec![4u8];
    p.extend_from_slice(&[0, 0, 0, 5, 15]);
    p.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        conn_code(&raw(HEADERS, PADDED | PRIORITY_FLAG, 7, &p)),
        ErrorCode::Protocol
    );
    assert_eq!(
        conn_code(&raw(HEADERS, PRIORITY_FLAG, 7, &[0, 0, 0])),
        ErrorCode::FrameSize
    );
}

#[test]
fn per_frame_rules_are_connection_or_stream_errors_as_rfc_9113_says() {
    use ErrorCode::*;
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (raw(DATA, 0, 0, b"x"), Protocol),
        (raw(HEADERS, END_HEADERS, 0, b""), Protocol),
        (raw(PRIORITY, 0, 0, &[0; 5]), Protocol),
        (raw(RST_STREAM, 0, 0, &[0; 4]), Protocol),
        (raw(RST_STREAM, 0, 1, &[0; 3]), FrameSize),
        (raw(SETTINGS, 0, 1, &[]), Protocol),
        (raw(SETTINGS, ACK, 0, &[0; 6]), FrameSize),
        (raw(SETTINGS, 0, 0, &[0; 5]), FrameSize),
        (raw(PUSH_PROMISE, END_HEADERS, 0, &[0; 4]), Protocol),
        (raw(PUSH_PROMISE, END_HEADERS, 1, &[0; 3]), FrameSize),
        (raw(PING, 0, 1, &[0; 8]), Protocol),
        (raw(PING, 0, 0, &[0; 7]), FrameSize),
        (raw(PING, 0, 0, &[0; 9]), FrameSize),
        (raw(GOAWAY, 0, 1, &[0; 8]), Protocol),
        (raw(GOAWAY, 0, 0, &[0; 7]), FrameSize),
        (raw(WINDOW_UPDATE, 0, 0, &[0; 3]), FrameSize),
        (raw(WINDOW_UPDATE, 0, 0, &[0; 4]), Protocol),
        (raw(CONTINUATION, 0, 0, b"x"), Protocol),
    ];
    for (bytes, code) in cases {
        assert_eq!(conn_code(&bytes), code, "{bytes:?}");
    }
    // One stream's mistakes cost only that stream.
    for (bytes, code) in [
        (raw(PRIORITY, 0, 1, &[0; 4]), FrameSize),
        (raw(PRIORITY, 0, 1, &[0, 0, 0, 1, 0]), Protocol),
        (raw(WINDOW_UPDATE, 0, 1, &[0x80, 0, 0, 0]), Protocol),
    ] {
        assert!(
            matches!(one(&bytes), Err(H2Error::Stream { stream: 1, code: c, .. }) if c == code),
            "{bytes:?}"
        );
    }
}

#[test]
fn unknown_types_are_returned_to_be_ignored() {
    assert_eq!(
        one(&raw(0xfa, 0xff, 9, b"anything")).unwrap(),
        Frame::Unknown {
            kind: 0xfa,
            stream: 9
        }
    );
}

#[test]
fn written_frames_decode_to_what_was_written() {
    let mut out = Vec::new();
    write_settings(&mut out, &[(3, 128), (4, 1 << 16)]);
    write_settings_ack(&mut out);
    write_ping(&mut out, true, *b"12345678");
    write_goaway(&mut out, 41, ErrorCode::EnhanceYourCalm, b"calm");
    write_rst_stream(&mut out, 5, ErrorCode::Cancel);
    write_window_update(&mut out, 0, 1000);
    write_data_head(&mut out, 3, 2, true);
    out.extend_from_slice(b"hi");
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((f, n)) = decode(&out[at..], MAX).unwrap() {
        frames.push(format!("{f:?}"));
        if let Frame::Settings(s) = f {
            frames.push(format!("{:?}", s.params().collect::<Vec<_>>()));
        }
        at += n;
    }
    assert_eq!(at, out.len());
    assert_eq!(
        frames,
        [
            format!("{:?}", Frame::Settings(SettingsFrame::Params(&out[9..21]))),
            "[(3, 128), (4, 65536)]".to_string(),
            format!("{:?}", Frame::Settings(SettingsFrame::Ack)),
            "[]".to_string(),
            format!(
                "{:?}",
                Frame::Ping {
                    ack: true,
                    data: *b"12345678"
                }
            ),
            format!(
                "{:?}",
                Frame::GoAway {
                    last_stream: 41,
                    code: ErrorCode::EnhanceYourCalm,
                    debug: b"calm"
                }
            ),
            format!(
                "{:?}",
                Frame::RstStream {
                    stream: 5,
                    code: ErrorCode::Cancel
                }
            ),
            format!(
                "{:?}",
                Frame::WindowUpdate {
                    stream: 0,
                    increment: 1000
                }
            ),
            format!(
                "{:?}",
                Frame::Data {
                    stream: 3,
                    data: b"hi",
                    end_stream: true,
                    flow_len: 2
                }
            ),
        ]
    );
}

#[test]
fn a_long_header_block_is_split_into_continuations() {
    let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let mut out = Vec::new();
    write_headers(&mut out, 1, &block, true, MAX);
    let mut at = 0;
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    while let Some((f, n)) = decode(&out[at..], MAX).unwrap() {
        match f {
            Frame::Headers {
                block,
                end_stream,
                end_headers,
                ..
            } => {
                assert!(end_stream);
                kinds.push(("HEADERS", end_headers));
                got.extend_from_slice(block);
            }
            Frame::Continuation {
                block, end_headers, ..
            } => {
                kinds.push(("CONTINUATION", end_headers));
                got.extend_from_slice(block);
            }
            other => panic!("{other:?}"),
        }
        at += n;
    }
    assert_eq!(got, block);
    assert_eq!(
        kinds,
        [
            ("HEADERS", false),
            ("CONTINUATION", false),
            ("CONTINUATION", true)
        ]
    );
    // A short one is one frame; an empty one too.
    let mut out = Vec::new();
    write_headers(&mut out, 1, b"", false, MAX);
    assert_eq!(
        one(&out).unwrap(),
        Frame::Headers {
            stream: 1,
            block: b"",
            end_stream: false,
            end_headers: true,
            priority: None
        }
    );
}
