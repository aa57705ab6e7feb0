//! Chunked framing written by proxyd, not copied: a chunked body is re-emitted in place with
//! canonical chunk sizes (lowercase hex, no leading zeros, no whitespace), chunk extensions
//! dropped, and the trailer section dropped (RFC 9112 7.1.2 lets a recipient discard it; a
//! recipient that merges trailers into the head would take fields no filter saw). A peer
//! then never sees framing bytes another parser could read differently (`5 `, `0005;x`, a
//! trailer `Content-Length`).
//!
//! It works in place in one buffer: `buf[out..inp]` is free (already forwarded or framing
//! squeezed out), `buf[inp..]` is unread input. A size line, with the CRLF that ended the
//! previous chunk, is rewritten only once it is whole in the buffer, and the last chunk only
//! with its whole trailer section; the canonical form is never longer than what it replaces,
//! so output never overtakes input.

use super::body::{chunked_step, Chunked, FrameError, Framer};

/// What one `reframe` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reframed {
    /// New `out` and `inp` positions.
    pub out: usize,
    pub inp: usize,
    /// Payload bytes among the input consumed.
    pub payload: u64,
    /// Whether the message ended, or the framing error that stopped it. What was rewritten
    /// before an error still counts (`out`, `inp`): it can go out before the cut.
    pub result: Result<bool, FrameError>,
}

/// Writes `bytes` at `*w`.
fn put(buf: &mut [u8], w: &mut usize, bytes: &[u8]) {
    buf[*w..*w + bytes.len()].copy_from_slice(bytes);
    *w += bytes.len();
}

/// `v` in lowercase hex without leading zeros, into `out`; the digits' length.
fn hex(mut v: u64, out: &mut [u8; 16]) -> usize {
    let mut n = 0;
    loop {
        out[15 - n] = b"0123456789abcdef"[(v & 15) as usize];
        n += 1;
        v >>= 4;
        if v == 0 {
            return n;
        }
    }
}

impl Framer {
    /// Rewrites a chunked body's framing from `buf[inp..]` to `buf[out..]` (`out <= inp`) as
    /// far as whole units allow; any other framing passes its bytes through unchanged.
    pub fn reframe(&mut self, buf: &mut [u8], mut out: usize, mut inp: usize) -> Reframed {
        debug_assert!(out <= inp && inp <= buf.len());
        let mut payload = 0u64;
        loop {
            let st = match self {
                Framer::Chunked(st) => *st,
                Framer::Done => break,
                other => {
                    let a = other.advance(&buf[inp..]);
                    buf.copy_within(inp..inp + a.consumed, out);
                    return Reframed {
                        out: out + a.consumed,
                        inp: inp + a.consumed,
                        payload: a.payload,
                        result: a.result,
                    };
                }
            };
            if inp == buf.len() {
                break;
            }
            let mut probe = st;
            let (consumed, data, done) = match chunked_step(&mut probe, &buf[inp..]) {
                Ok(s) => s,
                Err(e) => {
                    return Reframed {
                        out,
                        inp,
                        payload,
                        result: Err(e),
                    }
                }
            };
            let mut w = out;
            let after_data = match st {
                // Inside a chunk's data: bytes as they are.
                Chunked::Data(_) => {
                    buf.copy_within(inp..inp + consumed, out);
                    out += consumed;
                    inp += consumed;
                    payload += consumed as u64;
                    *self = Framer::Chunked(probe);
                    continue;
                }
                Chunked::DataCr => true,
                // Only whole units are ever taken, so a unit starts at a size line.
                _ => false,
            };
            if done {
                // The last chunk and its trailer section, whole: the trailers are dropped,
                // as nginx drops them. A backend that folds trailers into the head would
                // otherwise take fields no filter saw (an identity, a header a route's
                // `request_headers` removed).
                let end = inp + consumed;
                if after_data {
                    put(buf, &mut w, b"\r\n");
                }
                put(buf, &mut w, b"0\r\n\r\n");
                *self = Framer::Done;
                return Reframed {
                    out: w,
                    inp: end,
                    payload,
                    result: Ok(true),
                };
            }
            let rest = match probe {
                Chunked::Data(rem) => rem,
                Chunked::DataCr => 0,
                // A unit not whole yet: wait for more (the framer bounds how long it gets).
                _ => break,
            };
            if after_data {
                put(buf, &mut w, b"\r\n");
            }
            let mut digits = [0u8; 16];
            let n = hex(data.len() as u64 + rest, &mut digits);
            put(buf, &mut w, &digits[16 - n..]);
            put(buf, &mut w, b"\r\n");
            buf.copy_within(inp + data.start..inp + data.end, w);
            out = w + data.len();
            inp += consumed;
            payload += data.len() as u64;
            *self = Framer::Chunked(probe);
        }
        Reframed {
            out,
            inp,
            payload,
            result: Ok(self.is_done()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at `split` (as two reads into one buffer) and returns the output.
    fn run(input: &[u8], split: usize) -> Result<Vec<u8>, FrameError> {
        let mut f = Framer::chunked();
        let mut buf = vec![0u8; input.len()];
        let mut emitted = Vec::new();
        let (mut out, mut inp, mut end) = (0, 0, 0);
        for upto in [split, input.len()] {
            buf[end..upto].copy_from_slice(&input[end..upto]);
            end = upto;
            let r = f.reframe(&mut buf[..end], out, inp);
            r.result?;
            emitted.extend_from_slice(&buf[out..r.out]);
            // What was emitted has been sent: the next output may start anywhere up to inp.
            out = r.inp;
            inp = r.inp;
        }
        assert!(f.is_done(), "{:?}", String::from_utf8_lossy(input));
        Ok(emitted)
    }

    #[test]
    fn canonical_at_any_split() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            (b"5 \r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            (b"0005;a=b;c\r\nhello\r\nA\r\n0123456789\r\n00;x\r\n\r\n", b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"),
            (
                b"3\r\nabc\r\n0\r\nContent-Length: 9\r\nX-Sum: 1\r\ntransfer-encoding: chunked\r\nX_Client_Verify: SUCCESS\r\nServer-Timing: a\r\n\r\n",
                b"3\r\nabc\r\n0\r\n\r\n",
            ),
            (b"00000000000000000005\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ];
        for (input, want) in cases {
            for split in 0..=input.len() {
                assert_eq!(
                    run(input, split).as_deref(),
                    Ok(*want),
                    "{:?} split at {split}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn errors_still_errors() {
        assert!(run(b"5\r\nhelloX0\r\n\r\n", 3).is_err());
        assert!(run(b"g\r\n", 1).is_err());
    }

    #[test]
    fn length_framing_passes_through() {
        let mut f = Framer::Length(3);
        let mut buf = *b"..abcdef";
        let r = f.reframe(&mut buf, 0, 2);
        assert_eq!((r.out, r.inp, r.payload, r.result), (3, 5, 3, Ok(true)));
        assert_eq!(&buf[..3], b"abc");
    }
}
