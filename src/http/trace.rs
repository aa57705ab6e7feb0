//! W3C Trace Context (`traceparent`, version 00): parsed from a request, or made here when a
//! server starts traces, so that the access log (`$trace_id`, `$span_id`) and the upstream see
//! one trace. proxyd exports no spans yet, so it is not a hop of its own: a valid incoming
//! `traceparent` goes upstream unchanged, and an invalid one is dropped with its `tracestate`
//! (the spec forbids reading a `tracestate` whose `traceparent` did not parse).

use super::write_hex;

/// `traceparent`'s length in version 00: "00-" 32 hex "-" 16 hex "-" 2 hex.
pub const LEN: usize = 55;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// What a server does with trace context (`traceparent = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Headers pass untouched and unread.
    Off,
    /// A valid one is logged and passed on; an invalid one is dropped.
    Continue,
    /// As `Continue`, and a request without a valid one gets a new trace.
    Start,
}

/// This request's trace, and what goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trace {
    /// Not read (`Off`), or none and none started.
    #[default]
    None,
    /// The request carried a valid one: passed on as it was.
    Continued(TraceParent),
    /// Made here; replaces whatever the request carried.
    Started(TraceParent),
    /// The request's was invalid (or there were several): dropped, with its tracestate.
    Dropped,
}

fn hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        // Lower case only, as the spec requires.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(())
}

impl TraceParent {
    /// Parses a `traceparent` value. Version 00 must be exactly its length; a later version
    /// may append fields after a `-` (read as 00, as the spec asks); version ff, zero ids and
    /// upper-case hex are invalid.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        let v = v.trim_ascii();
        if v.len() < LEN {
            return None;
        }
        let mut version = [0u8; 1];
        hex(&v[..2], &mut version)?;
        match version[0] {
            0xff => return None,
            0 if v.len() != LEN => return None,
            0 => {}
            _ if v.len() > LEN && v[LEN] != b'-' => return None,
            _ => {}
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut t = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        hex(&v[3..35], &mut t.trace_id)?;
        hex(&v[36..52], &mut t.span_id)?;
        let mut flags = [0u8; 1];
        hex(&v[53..55], &mut flags)?;
        t.flags = flags[0];
        if t.trace_id == [0; 16] || t.span_id == [0; 8] {
            return None;
        }
        Some(t)
    }

    /// A new trace from 192 random bits (ids of all zeros are invalid, so never made).
    pub fn start(r: [u64; 3]) -> TraceParent {
        let mut t = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            // Sampled: upstreams that follow their parent's decision record the trace.
            flags: 1,
        };
        t.trace_id[..8].copy_from_slice(&(r[0] | 1).to_be_bytes());
        t.trace_id[8..].copy_from_slice(&r[1].to_be_bytes());
        t.span_id.copy_from_slice(&(r[2] | 1).to_be_bytes());
        t
    }

    /// The header value, in version 00.
    pub fn header(&self) -> [u8; LEN] {
        let mut out = [b'-'; LEN];
        out[..2].copy_from_slice(b"00");
        write_hex(&mut out[3..35], &self.trace_id);
        write_hex(&mut out[36..52], &self.span_id);
        write_hex(&mut out[53..55], &[self.flags]);
        out
    }
}

impl Trace {
    /// What `mode` makes of a request's `traceparent` values; `random` is asked for only
    /// when a trace is started.
    pub fn decide<'a>(
        mode: Mode,
        mut values: impl Iterator<Item = &'a [u8]>,
        random: impl FnOnce() -> [u64; 3],
    ) -> Trace {
        if mode == Mode::Off {
            return Trace::None;
        }
        let first = values.next();
        let parsed = match (first, values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(TraceParent::parse(v)),
            // Two are ambiguous: neither is believed.
            (Some(_), Some(_)) => Some(None),
        };
        match (parsed, mode) {
            (Some(Some(t)), _) => Trace::Continued(t),
            (_, Mode::Start) => Trace::Started(TraceParent::start(random())),
            (Some(None), _) => Trace::Dropped,
            (None, _) => Trace::None,
        }
    }

    pub fn parent(&self) -> Option<&TraceParent> {
        match self {
            Trace::Continued(t) | Trace::Started(t) => Some(t),
            Trace::None | Trace::Dropped => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_writes_back() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.flags, 1);
        assert_eq!(&t.header()[..], GOOD);
        // A later version may carry more after a dash.
        let mut later = b"cc".to_vec();
        later.extend_from_slice(&GOOD[2..]);
        later.extend_from_slice(b"-what-the-future-holds");
        assert_eq!(TraceParent::parse(&later).unwrap().trace_id, t.trace_id);
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        for bad in [
            &b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                TraceParent::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn modes() {
        let r = || [0, 0, 0];
        let one = || [GOOD].into_iter();
        assert!(matches!(
            Trace::decide(Mode::Continue, one(), r),
            Trace::Continued(_)
        ));
        assert_eq!(
            Trace::decide(Mode::Continue, [].into_iter(), r),
            Trace::None
        );
        assert_eq!(
            Trace::decide(Mode::Continue, [&b"junk"[..]].into_iter(), r),
            Trace::Dropped
        );
        assert_eq!(
            Trace::decide(Mode::Continue, [GOOD, GOOD].into_iter(), r),
            Trace::Dropped
        );
        assert_eq!(Trace::decide(Mode::Off, one(), r), Trace::None);
        let Trace::Started(t) = Trace::decide(Mode::Start, [&b"junk"[..]].into_iter(), r) else {
            panic!()
        };
        // Even from zero random bits, the ids are valid.
        assert!(TraceParent::parse(&t.header()).is_some());
    }
}
