//! Per-connection abuse accounting: frames that cost this side work but give the peer
//! nothing a real client needs at that rate (CVE-2019-9512 to 9518: ping, settings,
//! empty frames, resets; CVE-2023-44487: rapid reset). Each kind has a budget per second;
//! resets also have a share of all the streams a connection opened. Past either, the
//! connection is closed with ENHANCE_YOUR_CALM.

use super::{ErrorCode, H2Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abuse {
    Ping,
    Settings,
    /// DATA without payload or END_STREAM, HEADERS or CONTINUATION fragments without
    /// fields.
    Empty,
    Priority,
    WindowUpdate,
    /// A stream the peer reset before its response was complete.
    Reset,
    /// A stream opened past SETTINGS_MAX_CONCURRENT_STREAMS (refused).
    Refused,
}

impl Abuse {
    const ALL: usize = 7;

    fn index(self) -> usize {
        self as usize
    }

    /// Most of this kind in one second. Generous against real clients (a browser sends a
    /// few PING and SETTINGS frames per connection, and a WINDOW_UPDATE per few DATA
    /// frames it reads), tiny against a flood of millions per second.
    fn per_second(self, max_streams: u32) -> u32 {
        match self {
            Abuse::Ping | Abuse::Settings | Abuse::Empty | Abuse::Priority => 100,
            Abuse::WindowUpdate => 2_000,
            Abuse::Reset | Abuse::Refused => max_streams.max(100),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Abuse::Ping => "PING flood",
            Abuse::Settings => "SETTINGS flood",
            Abuse::Empty => "empty frame flood",
            Abuse::Priority => "PRIORITY flood",
            Abuse::WindowUpdate => "WINDOW_UPDATE flood",
            Abuse::Reset => "rapid reset",
            Abuse::Refused => "streams past the concurrency limit",
        }
    }
}

/// Resets are tolerated while they are at most this share of the streams opened (after
/// the first `RESET_GRACE`): a client that cancels most of what it asks for is resetting
/// for the sake of it.
const RESET_GRACE: u64 = 100;

#[derive(Debug, Default)]
pub struct Flood {
    /// The second the counts are for.
    second: u64,
    counts: [u32; Abuse::ALL],
    streams_total: u64,
    resets_total: u64,
}

impl Flood {
    /// One more stream opened by the peer.
    pub fn opened(&mut self) {
        self.streams_total += 1;
    }

    /// One more frame of `kind` at `now_ms`; an error once the budget is spent.
    pub fn hit(&mut self, kind: Abuse, now_ms: u64, max_streams: u32) -> Result<(), H2Error> {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.counts = [0; Abuse::ALL];
        }
        let c = &mut self.counts[kind.index()];
        *c += 1;
        if *c > kind.per_second(max_streams) {
            return Err(H2Error::conn(ErrorCode::EnhanceYourCalm, kind.name()));
        }
        if kind == Abuse::Reset {
            self.resets_total += 1;
            if self.resets_total > RESET_GRACE && self.resets_total * 2 > self.streams_total {
                return Err(H2Error::conn(ErrorCode::EnhanceYourCalm, kind.name()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_per_second() {
        let mut f = Flood::default();
        for _ in 0..100 {
            f.hit(Abuse::Ping, 5_000, 128).unwrap();
        }
        assert!(f.hit(Abuse::Ping, 5_999, 128).is_err());
        // The next second starts afresh; other kinds have their own budgets.
        f.hit(Abuse::Ping, 6_000, 128).unwrap();
        f.hit(Abuse::Settings, 6_000, 128).unwrap();
    }

    #[test]
    fn resets_are_bounded_by_rate_and_by_share_of_streams() {
        // Rapid reset: open and reset, as fast as possible.
        let mut f = Flood::default();
        let mut cut = None;
        for i in 0..10_000u64 {
            f.opened();
            if f.hit(Abuse::Reset, 1_000 + i / 10, 128).is_err() {
                cut = Some(i);
                break;
            }
        }
        assert!(cut.is_some_and(|i| i <= 128), "{cut:?}");
        // Slow, but resetting nearly everything: cut after the grace.
        let mut f = Flood::default();
        let mut cut = None;
        for i in 0..10_000u64 {
            f.opened();
            if i % 10 != 0 && f.hit(Abuse::Reset, i * 1000, 128).is_err() {
                cut = Some(i);
                break;
            }
        }
        assert!(cut.is_some_and(|i| i < 200), "{cut:?}");
        // A browser cancelling one stream in ten for hours: never cut.
        let mut f = Flood::default();
        for i in 0..100_000u64 {
            f.opened();
            if i % 10 == 0 {
                f.hit(Abuse::Reset, i * 100, 128).unwrap();
            }
        }
    }
}
