//! HTTP/2 frames (RFC 9113 4 and 6): `decode` takes the bytes received so far and returns
//! the first frame, typed and borrowing its payload, once all of it is there; the `write_*`
//! functions append one frame to an output buffer. Every rule that one frame can break on
//! its own (sizes, stream id zero or not, padding, a zero window increment) is checked
//! here; rules that need the connection's state (stream states, header block order, flow
//! control) are the connection's.

use super::settings::MAX_FRAME_SIZE_LIMIT;
use super::{ErrorCode, H2Error};

/// Frame header: 24-bit length, type, flags, 31-bit stream id.
pub const HEADER_LEN: usize = 9;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

const STREAM_MASK: u32 = (1 << 31) - 1;

/// The nine bytes before every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (RFC 9113 4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & STREAM_MASK,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A deprecated priority signal (RFC 9113 5.3.2): parsed so its bytes are accounted for
/// and a stream depending on itself is caught; otherwise unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub dependency: u32,
    pub exclusive: bool,
    pub weight: u8,
}

impl Priority {
    fn parse(b: &[u8]) -> Priority {
        let d = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Priority {
            dependency: d & STREAM_MASK,
            exclusive: d & !STREAM_MASK != 0,
            weight: b[4],
        }
    }
}

/// One received frame, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
        /// The whole payload's length, padding included: what flow control counts.
        flow_len: u32,
    },
    Headers {
        stream: u32,
        block: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        /// Checked by the connection (a stream depending on itself is a stream error,
        /// after its block went through the decoder, whose state must stay in step).
        priority: Option<Priority>,
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    Settings(SettingsFrame<'a>),
    PushPromise {
        stream: u32,
        promised: u32,
        block: &'a [u8],
        end_headers: bool,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        block: &'a [u8],
        end_headers: bool,
    },
    /// A type this side does not know: ignored (RFC 9113 5.5), unless it interrupts a
    /// header block, which the connection checks.
    Unknown {
        kind: u8,
        stream: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingsFrame<'a> {
    Ack,
    /// Six bytes per parameter, a whole number of them.
    Params(&'a [u8]),
}

impl<'a> SettingsFrame<'a> {
    /// The (identifier, value) pairs, in the order sent.
    pub fn params(&self) -> impl Iterator<Item = (u16, u32)> + 'a {
        let raw: &'a [u8] = match self {
            SettingsFrame::Ack => &[],
            SettingsFrame::Params(p) => p,
        };
        raw.chunks_exact(6).map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
    }
}

impl Frame<'_> {
    /// The stream a frame is on (0: the connection).
    pub fn stream(&self) -> u32 {
        match *self {
            Frame::Data { stream, .. }
            | Frame::Headers { stream, .. }
            | Frame::Priority { stream, .. }
            | Frame::RstStream { stream, .. }
            | Frame::PushPromise { stream, .. }
            | Frame::WindowUpdate { stream, .. }
            | Frame::Continuation { stream, .. }
            | Frame::Unknown { stream, .. } => stream,
            Frame::Settings(_) | Frame::Ping { .. } | Frame::GoAway { .. } => 0,
        }
    }
}

fn conn(code: ErrorCode, why: &'static str) -> H2Error {
    H2Error::conn(code, why)
}

/// The first frame of `buf`, and how many bytes it took; `None` while it is incomplete.
/// A frame longer than `max_frame_size` (what this side announced) is refused as soon as
/// its header is in, so its payload is never buffered.
pub fn decode(buf: &[u8], max_frame_size: u32) -> Result<Option<(Frame<'_>, usize)>, H2Error> {
    let Some(hb) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let h = Head::parse(hb);
    if h.len > max_frame_size.min(MAX_FRAME_SIZE_LIMIT) {
        return Err(conn(
            ErrorCode::FrameSize,
            "frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let total = HEADER_LEN + h.len as usize;
    let Some(p) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    let frame = match h.kind {
        DATA => {
            on_stream(&h, "DATA on stream 0")?;
            Frame::Data {
                stream: h.stream,
                data: unpad(&h, p, 0)?.1,
                end_stream: h.has(END_STREAM),
                flow_len: h.len,
            }
        }
        HEADERS => {
            on_stream(&h, "HEADERS on stream 0")?;
            let with_priority = h.has(PRIORITY_FLAG);
            let (fields, block) = unpad(&h, p, if with_priority { 5 } else { 0 })?;
            Frame::Headers {
                stream: h.stream,
                block,
                end_stream: h.has(END_STREAM),
                end_headers: h.has(END_HEADERS),
                priority: with_priority.then(|| Priority::parse(fields)),
            }
        }
        PRIORITY => {
            on_stream(&h, "PRIORITY on stream 0")?;
            if p.len() != 5 {
                return Err(H2Error::stream(
                    h.stream,
                    ErrorCode::FrameSize,
                    "PRIORITY not 5 bytes",
                ));
            }
            let priority = Priority::parse(p);
            if priority.dependency == h.stream {
                return Err(H2Error::stream(
                    h.stream,
                    ErrorCode::Protocol,
                    "stream depends on itself",
                ));
            }
            Frame::Priority {
                stream: h.stream,
                priority,
            }
        }
        RST_STREAM => {
            on_stream(&h, "RST_STREAM on stream 0")?;
            Frame::RstStream {
                stream: h.stream,
                code: ErrorCode::from_u32(u32_of(p, "RST_STREAM not 4 bytes")?),
            }
        }
        SETTINGS => {
            on_connection(&h, "SETTINGS on a stream")?;
            if h.has(ACK) {
                if h.len != 0 {
                    return Err(conn(ErrorCode::FrameSize, "SETTINGS ack with a payload"));
                }
                Frame::Settings(SettingsFrame::Ack)
            } else if !h.len.is_multiple_of(6) {
                return Err(conn(
                    ErrorCode::FrameSize,
                    "SETTINGS not a multiple of 6 bytes",
                ));
            } else {
                Frame::Settings(SettingsFrame::Params(p))
            }
        }
        PUSH_PROMISE => {
            on_stream(&h, "PUSH_PROMISE on stream 0")?;
            let (id, block) = unpad(&h, p, 4)?;
            Frame::PushPromise {
                stream: h.stream,
                promised: u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & STREAM_MASK,
                block,
                end_headers: h.has(END_HEADERS),
            }
        }
        PING => {
            on_connection(&h, "PING on a stream")?;
            let Ok(data) = <[u8; 8]>::try_from(p) else {
                return Err(conn(ErrorCode::FrameSize, "PING not 8 bytes"));
            };
            Frame::Ping {
                ack: h.has(ACK),
                data,
            }
        }
        GOAWAY => {
            on_connection(&h, "GOAWAY on a stream")?;
            let Some((fixed, debug)) = p.split_first_chunk::<8>() else {
                return Err(conn(ErrorCode::FrameSize, "GOAWAY shorter than 8 bytes"));
            };
            Frame::GoAway {
                last_stream: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]])
                    & STREAM_MASK,
                code: ErrorCode::from_u32(u32::from_be_bytes([
                    fixed[4], fixed[5], fixed[6], fixed[7],
                ])),
                debug,
            }
        }
        WINDOW_UPDATE => {
            let increment = u32_of(p, "WINDOW_UPDATE not 4 bytes")? & STREAM_MASK;
            if increment == 0 {
                return Err(if h.stream == 0 {
                    conn(ErrorCode::Protocol, "WINDOW_UPDATE of 0")
                } else {
                    H2Error::stream(h.stream, ErrorCode::Protocol, "WINDOW_UPDATE of 0")
                });
            }
            Frame::WindowUpdate {
                stream: h.stream,
                increment,
            }
        }
        CONTINUATION => {
            on_stream(&h, "CONTINUATION on stream 0")?;
            Frame::Continuation {
                stream: h.stream,
                block: p,
                end_headers: h.has(END_HEADERS),
            }
        }
        kind => Frame::Unknown {
            kind,
            stream: h.stream,
        },
    };
    Ok(Some((frame, total)))
}

fn on_stream(h: &Head, why: &'static str) -> Result<(), H2Error> {
    if h.stream == 0 {
        return Err(conn(ErrorCode::Protocol, why));
    }
    Ok(())
}

fn on_connection(h: &Head, why: &'static str) -> Result<(), H2Error> {
    if h.stream != 0 {
        return Err(conn(ErrorCode::Protocol, why));
    }
    Ok(())
}

/// A four-byte payload as a number; any other length is a connection FRAME_SIZE_ERROR.
fn u32_of(p: &[u8], why: &'static str) -> Result<u32, H2Error> {
    <[u8; 4]>::try_from(p)
        .map(u32::from_be_bytes)
        .map_err(|_| conn(ErrorCode::FrameSize, why))
}

/// A padded frame's payload split (RFC 9113 6.1, 6.2, 6.6): the pad length byte when
/// PADDED, then `fixed` bytes of fields, then the content, then the padding, which must
/// leave the fixed fields whole.
fn unpad<'a>(h: &Head, p: &'a [u8], fixed: usize) -> Result<(&'a [u8], &'a [u8]), H2Error> {
    let (pad, rest) = if h.has(PADDED) {
        match p.split_first() {
            Some((&pad, rest)) => (usize::from(pad), rest),
            None => {
                return Err(conn(
                    ErrorCode::Protocol,
                    "PADDED frame without a pad length",
                ))
            }
        }
    } else {
        (0, p)
    };
    if rest.len() < fixed {
        return Err(conn(ErrorCode::FrameSize, "frame too short for its fields"));
    }
    let (fields, content) = rest.split_at(fixed);
    match content.len().checked_sub(pad) {
        Some(keep) => Ok((fields, &content[..keep])),
        None => Err(conn(ErrorCode::Protocol, "padding longer than the payload")),
    }
}

/// Appends a frame header.
pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_FRAME_SIZE_LIMIT as usize);
    let l = (len as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&(stream & STREAM_MASK).to_be_bytes());
}

pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    write_head(out, params.len() * 6, SETTINGS, 0, 0);
    for (id, v) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, SETTINGS, ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    write_head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    write_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & STREAM_MASK).to_be_bytes());
    out.extend_from_slice(&code.as_u32().to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    write_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.as_u32().to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!(increment > 0 && increment <= STREAM_MASK);
    write_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & STREAM_MASK).to_be_bytes());
}

/// Appends the header of a DATA frame whose `len` payload bytes the caller sends next
/// (from its own buffer, without a copy into this one).
pub fn write_data_head(out: &mut Vec<u8>, stream: u32, len: usize, end_stream: bool) {
    write_head(
        out,
        len,
        DATA,
        if end_stream { END_STREAM } else { 0 },
        stream,
    );
}

/// Appends an encoded header block as one HEADERS frame and as many CONTINUATION frames
/// as `max_frame_size` (the peer's) requires.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = max_frame_size.clamp(super::settings::MIN_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT) as usize;
    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or(&[]);
    let mut rest = chunks.peekable();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if rest.peek().is_none() {
        flags |= END_HEADERS;
    }
    write_head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(c) = rest.next() {
        let flags = if rest.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_head(out, c.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(c);
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
