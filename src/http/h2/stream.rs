//! A stream's life (RFC 9113 5.1) as this side sees it, and which frames each state may
//! receive. Push is never used (this side announces ENABLE_PUSH 0 to upstreams and never
//! pushes to clients), so the reserved states do not exist here. A stream the connection
//! no longer keeps is `Closed`; one it never saw is `Idle`; the connection tells them
//! apart by its highest stream id.

use super::{ErrorCode, H2Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    Open,
    /// This side sent END_STREAM; the peer may still send.
    HalfClosedLocal,
    /// The peer sent END_STREAM; this side may still send.
    HalfClosedRemote,
    Closed(Closed),
}

/// How a stream closed, which decides how a late frame on it is answered (5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Both ends sent END_STREAM.
    Ended,
    /// This side sent RST_STREAM: frames already in flight may still arrive, and are
    /// dropped (their flow-control octets still count).
    ResetLocal,
    /// The peer sent RST_STREAM.
    ResetRemote,
}

/// A frame arriving on a stream, as far as its state cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// HEADERS (a head or trailers), with END_STREAM or not.
    Headers {
        end_stream: bool,
    },
    Data {
        end_stream: bool,
    },
    Reset,
    WindowUpdate,
    Priority,
}

/// What to do with a frame that its stream's state allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Process it; the stream is now in `State`.
    Accept(State),
    /// Drop it silently (a frame in flight when this side reset the stream).
    Ignore,
}

impl State {
    /// The state after receiving `f`, or the error RFC 9113 5.1 names for it.
    pub fn receive(self, stream: u32, f: Incoming) -> Result<Verdict, H2Error> {
        use Incoming::*;
        let closed = |code, why| Err(H2Error::stream(stream, code, why));
        Ok(Verdict::Accept(match (self, f) {
            (_, Priority) => self,
            (State::Idle, Headers { end_stream }) => {
                if end_stream {
                    State::HalfClosedRemote
                } else {
                    State::Open
                }
            }
            (State::Idle, _) => {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "frame other than HEADERS or PRIORITY on an idle stream",
                ))
            }
            (State::Open, Headers { end_stream } | Data { end_stream }) => {
                if end_stream {
                    State::HalfClosedRemote
                } else {
                    State::Open
                }
            }
            (State::HalfClosedLocal, Headers { end_stream } | Data { end_stream }) => {
                if end_stream {
                    State::Closed(Closed::Ended)
                } else {
                    State::HalfClosedLocal
                }
            }
            (State::Open | State::HalfClosedLocal | State::HalfClosedRemote, Reset) => {
                State::Closed(Closed::ResetRemote)
            }
            (State::Open | State::HalfClosedLocal | State::HalfClosedRemote, WindowUpdate) => self,
            (State::HalfClosedRemote, Headers { .. } | Data { .. }) => {
                return closed(ErrorCode::StreamClosed, "frame after the peer's END_STREAM")
            }
            (State::Closed(Closed::ResetLocal), _) => return Ok(Verdict::Ignore),
            // WINDOW_UPDATE and RST_STREAM may cross this side's END_STREAM (5.1).
            (State::Closed(Closed::Ended), WindowUpdate | Reset) => return Ok(Verdict::Ignore),
            (State::Closed(Closed::Ended), _) => {
                return Err(H2Error::conn(
                    ErrorCode::StreamClosed,
                    "frame on a stream both ends closed",
                ))
            }
            (State::Closed(Closed::ResetRemote), _) => {
                return closed(ErrorCode::StreamClosed, "frame after the peer's RST_STREAM")
            }
        }))
    }

    /// The state after this side sends END_STREAM.
    pub fn end_local(self) -> State {
        match self {
            State::Open => State::HalfClosedLocal,
            State::HalfClosedRemote => State::Closed(Closed::Ended),
            other => other,
        }
    }

    /// Whether the stream counts against SETTINGS_MAX_CONCURRENT_STREAMS (5.1.2).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Open | State::HalfClosedLocal | State::HalfClosedRemote
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Incoming::*;
    use super::*;

    fn code(r: Result<Verdict, H2Error>) -> (bool, ErrorCode) {
        match r {
            Err(H2Error::Connection { code, .. }) => (true, code),
            Err(H2Error::Stream { code, .. }) => (false, code),
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    #[test]
    fn a_request_stream_opens_half_closes_and_closes() {
        let s = State::Idle;
        let s = match s.receive(1, Headers { end_stream: false }) {
            Ok(Verdict::Accept(s)) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(s, State::Open);
        assert!(s.is_active());
        let Ok(Verdict::Accept(s)) = s.receive(1, Data { end_stream: true }) else {
            panic!()
        };
        assert_eq!(s, State::HalfClosedRemote);
        let s = s.end_local();
        assert_eq!(s, State::Closed(Closed::Ended));
        assert!(!s.is_active());
    }

    #[test]
    fn late_frames_get_the_errors_rfc_9113_5_1_names() {
        // Idle: only HEADERS and PRIORITY.
        assert_eq!(
            code(State::Idle.receive(1, Data { end_stream: false })),
            (true, ErrorCode::Protocol)
        );
        assert_eq!(
            code(State::Idle.receive(1, Reset)),
            (true, ErrorCode::Protocol)
        );
        assert_eq!(
            code(State::Idle.receive(1, WindowUpdate)),
            (true, ErrorCode::Protocol)
        );
        assert!(State::Idle.receive(1, Priority).is_ok());
        // After the peer's END_STREAM: STREAM_CLOSED on the stream.
        assert_eq!(
            code(State::HalfClosedRemote.receive(1, Data { end_stream: false })),
            (false, ErrorCode::StreamClosed)
        );
        assert_eq!(
            State::HalfClosedRemote.receive(1, WindowUpdate),
            Ok(Verdict::Accept(State::HalfClosedRemote))
        );
        // After the peer's reset: STREAM_CLOSED; after both ended: on the connection.
        assert_eq!(
            code(State::Closed(Closed::ResetRemote).receive(1, Data { end_stream: false })),
            (false, ErrorCode::StreamClosed)
        );
        assert_eq!(
            code(State::Closed(Closed::Ended).receive(1, Headers { end_stream: true })),
            (true, ErrorCode::StreamClosed)
        );
        // After this side's reset, frames in flight are dropped.
        assert_eq!(
            State::Closed(Closed::ResetLocal).receive(1, Data { end_stream: true }),
            Ok(Verdict::Ignore)
        );
        assert_eq!(
            State::Closed(Closed::Ended).receive(1, WindowUpdate),
            Ok(Verdict::Ignore)
        );
    }
}
