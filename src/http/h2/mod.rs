//! HTTP/2 (RFC 9113), sans I/O, in the pieces a connection is built from:
//! - `frame`: one frame in, one typed frame out, every per-frame rule of section 6;
//! - `block`: header blocks arriving in pieces, capped before decoding;
//! - `hpack`: header compression (RFC 7541);
//! - `settings`: what each end announced;
//! - `flow`: flow-control windows;
//! - `stream`: the life of one stream;
//! - `message`: what a request's header list means, as the HTTP/1.1 head the proxy parses;
//! - `flood`: the per-connection abuse budgets;
//! - `conn`: the server side of a connection, built from all of the above.
//!
//! Nothing here reads a socket or knows a route: the session above feeds bytes in and
//! writes the bytes these functions produce.

pub mod block;
pub mod conn;
pub mod flood;
pub mod flow;
pub mod frame;
pub mod hpack;
pub mod message;
pub mod settings;
pub mod stream;

/// What a client sends first on every HTTP/2 connection (RFC 9113 3.4), before its
/// SETTINGS. On a plain listener its first bytes tell h2c with prior knowledge from
/// HTTP/1.1: no HTTP/1 method is `PRI`.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest stream id and window (2^31 - 1).
pub const MAX_ID: u32 = (1 << 31) - 1;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Error codes of RFC 9113 section 7, sent in RST_STREAM and GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NoError,
    Protocol,
    Internal,
    FlowControl,
    SettingsTimeout,
    StreamClosed,
    FrameSize,
    RefusedStream,
    Cancel,
    Compression,
    Connect,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    /// A code this side does not know; treated as INTERNAL_ERROR (RFC 9113 7) but kept for
    /// the log.
    Other(u32),
}

impl ErrorCode {
    pub fn from_u32(v: u32) -> ErrorCode {
        match v {
            0x0 => ErrorCode::NoError,
            0x1 => ErrorCode::Protocol,
            0x2 => ErrorCode::Internal,
            0x3 => ErrorCode::FlowControl,
            0x4 => ErrorCode::SettingsTimeout,
            0x5 => ErrorCode::StreamClosed,
            0x6 => ErrorCode::FrameSize,
            0x7 => ErrorCode::RefusedStream,
            0x8 => ErrorCode::Cancel,
            0x9 => ErrorCode::Compression,
            0xa => ErrorCode::Connect,
            0xb => ErrorCode::EnhanceYourCalm,
            0xc => ErrorCode::InadequateSecurity,
            0xd => ErrorCode::Http11Required,
            v => ErrorCode::Other(v),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::NoError => 0x0,
            ErrorCode::Protocol => 0x1,
            ErrorCode::Internal => 0x2,
            ErrorCode::FlowControl => 0x3,
            ErrorCode::SettingsTimeout => 0x4,
            ErrorCode::StreamClosed => 0x5,
            ErrorCode::FrameSize => 0x6,
            ErrorCode::RefusedStream => 0x7,
            ErrorCode::Cancel => 0x8,
            ErrorCode::Compression => 0x9,
            ErrorCode::Connect => 0xa,
            ErrorCode::EnhanceYourCalm => 0xb,
            ErrorCode::InadequateSecurity => 0xc,
            ErrorCode::Http11Required => 0xd,
            ErrorCode::Other(v) => v,
        }
    }

    /// The name RFC 9113 gives it, for logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NoError => "NO_ERROR",
            ErrorCode::Protocol => "PROTOCOL_ERROR",
            ErrorCode::Internal => "INTERNAL_ERROR",
            ErrorCode::FlowControl => "FLOW_CONTROL_ERROR",
            ErrorCode::SettingsTimeout => "SETTINGS_TIMEOUT",
            ErrorCode::StreamClosed => "STREAM_CLOSED",
            ErrorCode::FrameSize => "FRAME_SIZE_ERROR",
            ErrorCode::RefusedStream => "REFUSED_STREAM",
            ErrorCode::Cancel => "CANCEL",
            ErrorCode::Compression => "COMPRESSION_ERROR",
            ErrorCode::Connect => "CONNECT_ERROR",
            ErrorCode::EnhanceYourCalm => "ENHANCE_YOUR_CALM",
            ErrorCode::InadequateSecurity => "INADEQUATE_SECURITY",
            ErrorCode::Http11Required => "HTTP_1_1_REQUIRED",
            ErrorCode::Other(_) => "UNKNOWN",
        }
    }
}

/// A broken rule, and how much it breaks (RFC 9113 5.4): the whole connection (answered
/// with GOAWAY, then close) or one stream (answered with RST_STREAM; the connection
/// lives on). `why` is for the log, never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Error {
    Connection {
        code: ErrorCode,
        why: &'static str,
    },
    Stream {
        stream: u32,
        code: ErrorCode,
        why: &'static str,
    },
}

impl H2Error {
    pub fn conn(code: ErrorCode, why: &'static str) -> H2Error {
        H2Error::Connection { code, why }
    }

    pub fn stream(stream: u32, code: ErrorCode, why: &'static str) -> H2Error {
        H2Error::Stream { stream, code, why }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            H2Error::Connection { code, .. } | H2Error::Stream { code, .. } => *code,
        }
    }
}
