//! Body framing for HTTP/1.x messages (RFC 9112 section 6 and 7.1), sans I/O.
//!
//! A `Framer` is fed raw bytes as they arrive and says which of them belong to the body and
//! where the message ends, and where each run of payload data lies. A length-delimited body
//! is forwarded as it is; a chunked one has its framing rewritten (`reframe`) or decoded.

use super::strict::is_tchar;
use std::ops::Range;

/// Longest chunk-size line (with extensions) and trailer section we accept.
const MAX_CHUNK_LINE: u32 = 4096;
/// The trailer section is rewritten whole (`reframe`), so it must fit a worker buffer with
/// room to spare: 8 KiB of a 16 KiB buffer.
const MAX_TRAILERS: u32 = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    BadChunkSize,
    BadChunkDelimiter,
    ChunkLineTooLong,
    TrailersTooLarge,
    BadTrailer,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Framer {
    /// Exactly this many more bytes.
    Length(u64),
    Chunked(Chunked),
    /// Everything until the peer closes (responses only).
    UntilClose,
    /// The message is complete.
    #[default]
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size {
        value: u64,
        digits: u8,
        line: u32,
    },
    /// Whitespace after the size (BWS): only more of it, `;` or CR may follow.
    SizeWs {
        value: u64,
        line: u32,
    },
    /// After the first `;`: extension names, values and quoted strings, no controls.
    Ext {
        value: u64,
        line: u32,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// The trailer section, line by line: a field name, then its value, each line ending in
    /// CRLF; an empty line ends the message. `total` bounds its size.
    TrailerStart {
        total: u32,
    },
    TrailerName {
        total: u32,
    },
    TrailerValue {
        total: u32,
    },
    /// Expecting the LF of a CRLF; `last` when the line was empty (end of message).
    TrailerLf {
        last: bool,
        total: u32,
    },
}

/// Result of one `Framer::step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input that belong to this message (framing and data).
    pub consumed: usize,
    /// The payload bytes among them (a sub-range of `0..consumed`), possibly empty.
    pub data: Range<usize>,
    pub done: bool,
}

impl Framer {
    pub fn chunked() -> Framer {
        Framer::Chunked(Chunked::Size {
            value: 0,
            digits: 0,
            line: 0,
        })
    }

    pub fn is_chunked(&self) -> bool {
        matches!(self, Framer::Chunked(_))
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Framer::Done)
    }

    /// Advances over `input`, stopping after at most one run of payload data, so a decoder
    /// can copy that run out. Call again with the rest of the input to continue.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FrameError> {
        match self {
            Framer::Done => Ok(Step {
                consumed: 0,
                data: 0..0,
                done: true,
            }),
            Framer::UntilClose => Ok(Step {
                consumed: input.len(),
                data: 0..input.len(),
                done: false,
            }),
            Framer::Length(rem) => {
                let n = (*rem).min(input.len() as u64) as usize;
                *rem -= n as u64;
                let done = *rem == 0;
                if done {
                    *self = Framer::Done;
                }
                Ok(Step {
                    consumed: n,
                    data: 0..n,
                    done,
                })
            }
            Framer::Chunked(state) => {
                let (consumed, data, done) = chunked_step(state, input)?;
                if done {
                    *self = Framer::Done;
                }
                Ok(Step {
                    consumed,
                    data,
                    done,
                })
            }
        }
    }

    /// How many leading bytes of `input` belong to this message, for raw forwarding.
    pub fn advance_raw(&mut self, input: &[u8]) -> Result<(usize, bool), FrameError> {
        let a = self.advance(input);
        a.result.map(|done| (a.consumed, done))
    }

    /// Walks as far into `input` as this message goes. On an error, `consumed` still says
    /// how many bytes before it were valid, so what arrived intact can be passed on before
    /// the connection is cut; `payload` counts the body bytes among them.
    pub fn advance(&mut self, input: &[u8]) -> Advance {
        let (mut pos, mut payload) = (0, 0u64);
        loop {
            let s = match self.step(&input[pos..]) {
                Ok(s) => s,
                Err(e) => {
                    return Advance {
                        consumed: pos,
                        payload,
                        result: Err(e),
                    }
                }
            };
            pos += s.consumed;
            payload += s.data.len() as u64;
            if s.done || s.consumed == 0 || pos == input.len() {
                return Advance {
                    consumed: pos,
                    payload,
                    result: Ok(s.done),
                };
            }
        }
    }
}

/// What `Framer::advance` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub consumed: usize,
    pub payload: u64,
    /// Whether the message ended, or the framing error that stopped the walk.
    pub result: Result<bool, FrameError>,
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

/// The byte after a chunk size (or the whitespace after it).
fn after_size(b: u8, value: u64, line: u32) -> Result<Chunked, FrameError> {
    Ok(match b {
        b';' => Chunked::Ext {
            value,
            line: line + 1,
        },
        b' ' | b'\t' => Chunked::SizeWs {
            value,
            line: line + 1,
        },
        b'\r' => Chunked::SizeLf { value },
        _ => return Err(FrameError::BadChunkSize),
    })
}

pub(super) fn chunked_step(
    st: &mut Chunked,
    input: &[u8],
) -> Result<(usize, Range<usize>, bool), FrameError> {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match *st {
            Chunked::Data(rem) => {
                let n = rem.min((input.len() - i) as u64) as usize;
                let left = rem - n as u64;
                *st = if left == 0 {
                    Chunked::DataCr
                } else {
                    Chunked::Data(left)
                };
                return Ok((i + n, i..i + n, false));
            }
            Chunked::Size {
                value,
                digits,
                line,
            } => {
                if line >= MAX_CHUNK_LINE {
                    return Err(FrameError::ChunkLineTooLong);
                }
                if let Some(h) = hex(b) {
                    // Leading zeros are allowed (nginx takes them; the line length bounds
                    // them); only a size past 15 significant digits is refused.
                    if value >= 1 << 56 {
                        return Err(FrameError::BadChunkSize);
                    }
                    *st = Chunked::Size {
                        value: value * 16 + h,
                        digits: digits.saturating_add(1),
                        line: line + 1,
                    };
                } else if digits == 0 {
                    return Err(FrameError::BadChunkSize);
                } else {
                    *st = after_size(b, value, line)?;
                }
            }
            Chunked::SizeWs { value, line } => {
                if line >= MAX_CHUNK_LINE {
                    return Err(FrameError::ChunkLineTooLong);
                }
                *st = after_size(b, value, line)?;
            }
            Chunked::Ext { value, line } => {
                if line >= MAX_CHUNK_LINE {
                    return Err(FrameError::ChunkLineTooLong);
                }
                *st = match b {
                    b'\r' => Chunked::SizeLf { value },
                    b'\t' | b' '..=b'~' => Chunked::Ext {
                        value,
                        line: line + 1,
                    },
                    _ => return Err(FrameError::BadChunkDelimiter),
                };
            }
            Chunked::SizeLf { value } => {
                if b != b'\n' {
                    return Err(FrameError::BadChunkDelimiter);
                }
                *st = if value == 0 {
                    Chunked::TrailerStart { total: 0 }
                } else {
                    Chunked::Data(value)
                };
            }
            Chunked::DataCr => {
                if b != b'\r' {
                    return Err(FrameError::BadChunkDelimiter);
                }
                *st = Chunked::DataLf;
            }
            Chunked::DataLf => {
                if b != b'\n' {
                    return Err(FrameError::BadChunkDelimiter);
                }
                *st = Chunked::Size {
                    value: 0,
                    digits: 0,
                    line: 0,
                };
            }
            Chunked::TrailerStart { total }
            | Chunked::TrailerName { total }
            | Chunked::TrailerValue { total } => {
                if total >= MAX_TRAILERS {
                    return Err(FrameError::TrailersTooLarge);
                }
                let total = total + 1;
                *st = match (*st, b) {
                    (Chunked::TrailerStart { .. }, b'\r') => {
                        Chunked::TrailerLf { last: true, total }
                    }
                    // A field name first (no obs-fold, no empty name), then ':' and a value.
                    (Chunked::TrailerStart { .. } | Chunked::TrailerName { .. }, c)
                        if is_tchar(c) =>
                    {
                        Chunked::TrailerName { total }
                    }
                    (Chunked::TrailerName { .. }, b':') => Chunked::TrailerValue { total },
                    (Chunked::TrailerValue { .. }, b'\r') => {
                        Chunked::TrailerLf { last: false, total }
                    }
                    (Chunked::TrailerValue { .. }, b'\t' | b' '..=b'~' | 0x80..=0xff) => {
                        Chunked::TrailerValue { total }
                    }
                    _ => return Err(FrameError::BadTrailer),
                };
            }
            Chunked::TrailerLf { last, total } => {
                if b != b'\n' {
                    return Err(FrameError::BadChunkDelimiter);
                }
                if last {
                    return Ok((i + 1, i..i, true));
                }
                *st = Chunked::TrailerStart { total };
            }
        }
        i += 1;
    }
    Ok((i, i..i, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every position and collects the decoded payload.
    fn decode_split(input: &[u8], split: usize) -> Result<(Vec<u8>, usize, bool), FrameError> {
        let mut f = Framer::chunked();
        let mut out = Vec::new();
        let mut total = 0;
        for part in [&input[..split], &input[split..]] {
            let mut pos = 0;
            loop {
                let s = f.step(&part[pos..])?;
                out.extend_from_slice(&part[pos..][s.data.clone()]);
                pos += s.consumed;
                total += s.consumed;
                if s.done {
                    return Ok((out, total, true));
                }
                if s.consumed == 0 || pos == part.len() {
                    break;
                }
            }
        }
        Ok((out, total, false))
    }

    #[test]
    fn chunked_any_split() {
        let msg = b"5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..msg.len() {
            let (data, consumed, done) = decode_split(msg, split).unwrap();
            assert!(done, "split {split}");
            assert_eq!(data, b"hello0123456789");
            assert_eq!(consumed, msg.len() - 4, "split {split}");
        }
    }

    #[test]
    fn chunked_errors() {
        assert_eq!(
            Framer::chunked().advance_raw(b"x\r\n"),
            Err(FrameError::BadChunkSize)
        );
        assert_eq!(
            Framer::chunked().advance_raw(b"2\r\nabX"),
            Err(FrameError::BadChunkDelimiter)
        );
        assert_eq!(
            Framer::chunked().advance_raw(b"fffffffffffffffff\r\n"),
            Err(FrameError::BadChunkSize)
        );
        assert_eq!(
            Framer::chunked().advance_raw(b"00000000000000000001000000000000000\r\n"),
            Err(FrameError::BadChunkSize)
        );
        assert_eq!(
            Framer::chunked().advance_raw(b"0000000000000000000fffffffffffffff\r\n"),
            Ok((36, false))
        );
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n X: 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\nX 1\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nX: a\x01\r\n\r\n",
        ] {
            assert!(
                Framer::chunked().advance_raw(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [
            &b"5 ;a=b\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a=\"x y\";c\r\nhello\r\n0\r\nX-T: 1\r\nY:\r\n\r\n",
            b"000005\r\nhello\r\n0\r\n\r\n",
            b"00000000000000000005\r\nhello\r\n0000\r\n\r\n",
        ] {
            assert_eq!(
                Framer::chunked().advance_raw(good).map(|r| r.1),
                Ok(true),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
    }

    #[test]
    fn length_and_raw() {
        let mut f = Framer::Length(5);
        assert_eq!(f.advance_raw(b"abc").unwrap(), (3, false));
        assert_eq!(f.advance_raw(b"defgh").unwrap(), (2, true));
        assert!(f.is_done());
        let mut c = Framer::chunked();
        assert_eq!(
            c.advance_raw(b"3\r\nabc\r\n0\r\n\r\nGET").unwrap(),
            (13, true)
        );
    }
}
