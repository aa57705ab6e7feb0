//! A header block arriving in pieces (RFC 9113 4.3, 6.10): HEADERS without END_HEADERS,
//! then CONTINUATION frames on the same stream and nothing else in between, until one
//! carries END_HEADERS. The encoded block is capped (at `http2_max_header_list_size`)
//! and so is the number of frames it comes in, before any of it is decoded: a flood of
//! CONTINUATION frames (CVE-2024-27316) costs the connection, not the worker's memory.

use super::frame::{Frame, Priority};
use super::{ErrorCode, H2Error};

/// Most frames one block may come in. A block at the 64 KiB default fits in 5 frames of
/// the smallest maximum frame size; 128 leaves room for any real encoder.
pub const MAX_FRAMES: u32 = 128;

/// A whole header block, ready for the HPACK decoder.
#[derive(Debug, PartialEq, Eq)]
pub struct Complete<'a> {
    pub stream: u32,
    pub end_stream: bool,
    pub priority: Option<Priority>,
    pub block: &'a [u8],
}

/// The block being received, if any.
#[derive(Debug, Default)]
pub struct Assembly {
    open: Option<Open>,
    /// The joined fragments; given back (emptied, its memory freed) once the block is
    /// complete, so an idle connection holds no buffer.
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Open {
    stream: u32,
    end_stream: bool,
    priority: Option<Priority>,
    frames: u32,
}

impl Assembly {
    /// Whether a block is open: then only its CONTINUATIONs may arrive.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Checks that `f` may arrive now: while a block is open, anything but a CONTINUATION
    /// on its stream is a connection PROTOCOL_ERROR; a CONTINUATION with no block open is
    /// one too.
    pub fn check(&self, f: &Frame) -> Result<(), H2Error> {
        match (&self.open, f) {
            (Some(o), Frame::Continuation { stream, .. }) if *stream == o.stream => Ok(()),
            (Some(_), _) => Err(H2Error::conn(
                ErrorCode::Protocol,
                "frame inside a header block other than its CONTINUATION",
            )),
            (None, Frame::Continuation { .. }) => Err(H2Error::conn(
                ErrorCode::Protocol,
                "CONTINUATION without a header block",
            )),
            (None, _) => Ok(()),
        }
    }

    /// A HEADERS frame (after `check`). A block in one frame is returned at once without
    /// a copy; otherwise its fragment is kept.
    pub fn headers<'f>(
        &mut self,
        f: &Frame<'f>,
        max: usize,
    ) -> Result<Option<Complete<'f>>, H2Error> {
        let Frame::Headers {
            stream,
            block,
            end_stream,
            end_headers,
            priority,
        } = *f
        else {
            return Ok(None);
        };
        if block.len() > max {
            return Err(too_large());
        }
        if end_headers {
            return Ok(Some(Complete {
                stream,
                end_stream,
                priority,
                block,
            }));
        }
        self.bytes.clear();
        self.bytes.extend_from_slice(block);
        self.open = Some(Open {
            stream,
            end_stream,
            priority,
            frames: 1,
        });
        Ok(None)
    }

    /// A CONTINUATION frame (after `check`).
    pub fn continuation(&mut self, f: &Frame, max: usize) -> Result<Option<Complete<'_>>, H2Error> {
        let (
            Frame::Continuation {
                block, end_headers, ..
            },
            Some(open),
        ) = (*f, self.open.as_mut())
        else {
            return Ok(None);
        };
        open.frames += 1;
        if open.frames > MAX_FRAMES {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                "header block in too many CONTINUATION frames",
            ));
        }
        if self.bytes.len() + block.len() > max {
            return Err(too_large());
        }
        self.bytes.extend_from_slice(block);
        if !end_headers {
            return Ok(None);
        }
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        Ok(Some(Complete {
            stream: open.stream,
            end_stream: open.end_stream,
            priority: open.priority,
            block: &self.bytes,
        }))
    }

    /// Frees the joined block once decoded.
    pub fn release(&mut self) {
        self.bytes = Vec::new();
    }
}

/// A block larger than the header list may be cannot be skipped (the decoder's table
/// would fall out of step with the peer's), so it ends the connection.
fn too_large() -> H2Error {
    H2Error::conn(
        ErrorCode::EnhanceYourCalm,
        "header block larger than http2_max_header_list_size",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(stream: u32, block: &[u8], end_headers: bool) -> Frame<'_> {
        Frame::Headers {
            stream,
            block,
            end_stream: true,
            end_headers,
            priority: None,
        }
    }

    fn cont(stream: u32, block: &[u8], end_headers: bool) -> Frame<'_> {
        Frame::Continuation {
            stream,
            block,
            end_headers,
        }
    }

    #[test]
    fn a_block_in_one_frame_is_passed_through() {
        let mut a = Assembly::default();
        let f = headers(1, b"abc", true);
        a.check(&f).unwrap();
        let c = a.headers(&f, 100).unwrap().unwrap();
        assert_eq!((c.stream, c.block, c.end_stream), (1, &b"abc"[..], true));
        assert!(!a.is_open());
    }

    #[test]
    fn fragments_are_joined_and_nothing_may_come_between_them() {
        let mut a = Assembly::default();
        assert!(a.headers(&headers(3, b"ab", false), 100).unwrap().is_none());
        assert!(a.is_open());
        for f in [
            Frame::Ping {
                ack: false,
                data: [0; 8],
            },
            cont(5, b"x", true),
            headers(3, b"x", true),
            Frame::Data {
                stream: 3,
                data: b"",
                end_stream: false,
                flow_len: 0,
            },
        ] {
            assert_eq!(
                a.check(&f).unwrap_err().code(),
                ErrorCode::Protocol,
                "{f:?}"
            );
        }
        let f = cont(3, b"cd", false);
        a.check(&f).unwrap();
        assert!(a.continuation(&f, 100).unwrap().is_none());
        let f = cont(3, b"ef", true);
        let c = a.continuation(&f, 100).unwrap().unwrap();
        assert_eq!((c.stream, c.block, c.end_stream), (3, &b"abcdef"[..], true));
        assert!(!a.is_open());
        a.release();
        assert_eq!(a.bytes.capacity(), 0);
        // A CONTINUATION with no block open.
        assert_eq!(
            a.check(&cont(3, b"", true)).unwrap_err().code(),
            ErrorCode::Protocol
        );
    }

    #[test]
    fn a_continuation_flood_is_cut_by_size_and_by_frame_count() {
        let mut a = Assembly::default();
        a.headers(&headers(1, &[0; 60], false), 100).unwrap();
        let e = a.continuation(&cont(1, &[0; 41], false), 100).unwrap_err();
        assert_eq!(e.code(), ErrorCode::EnhanceYourCalm);
        assert!(a.headers(&headers(1, &[0; 101], true), 100).is_err());
        // Empty CONTINUATIONs cost nothing in size but are counted.
        let mut a = Assembly::default();
        a.headers(&headers(1, b"", false), 100).unwrap();
        for _ in 1..MAX_FRAMES {
            assert!(a.continuation(&cont(1, b"", false), 100).unwrap().is_none());
        }
        let e = a.continuation(&cont(1, b"", false), 100).unwrap_err();
        assert_eq!(e.code(), ErrorCode::EnhanceYourCalm);
    }
}
