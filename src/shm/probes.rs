//! What the health check last found of a peer, for `/metrics` and the admin API: the
//! helper writes each probe's result, its duration and when it ended; workers never read it
//! (they follow the verdict, `Health::checked`). Three words written one after another:
//! a reader may see one probe's time beside the next one's result, never a torn word.

use super::Health;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The last probe of a peer, as stored.
#[repr(C)]
pub(super) struct Last {
    /// `ProbeOutcome` packed (`pack`); 0: no probe has finished.
    outcome: AtomicU32,
    /// When it ended, in milliseconds since the Unix epoch (a wall clock: it is shown).
    at_ms: AtomicU64,
    duration_us: AtomicU64,
}

/// How a probe ended: the reason of a failure is a kind (and a status), not text, so it fits
/// in shared memory; the helper's log has the full message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Ok,
    /// Connecting failed (refused, unreachable).
    Connect,
    Timeout,
    /// Sending or reading failed after the connection was made (reset, TLS error).
    Io,
    /// The answer was not an HTTP response.
    NotHttp,
    /// A status outside the expected range.
    Status(u16),
    /// The body did not match.
    Body,
}

impl ProbeOutcome {
    fn pack(self) -> u32 {
        match self {
            ProbeOutcome::Ok => 1,
            ProbeOutcome::Connect => 2,
            ProbeOutcome::Timeout => 3,
            ProbeOutcome::Io => 4,
            ProbeOutcome::NotHttp => 5,
            ProbeOutcome::Status(s) => 6 | (u32::from(s) << 8),
            ProbeOutcome::Body => 7,
        }
    }

    fn unpack(v: u32) -> Option<ProbeOutcome> {
        Some(match v & 0xff {
            1 => ProbeOutcome::Ok,
            2 => ProbeOutcome::Connect,
            3 => ProbeOutcome::Timeout,
            4 => ProbeOutcome::Io,
            5 => ProbeOutcome::NotHttp,
            6 => ProbeOutcome::Status((v >> 8) as u16),
            7 => ProbeOutcome::Body,
            _ => return None,
        })
    }

    /// "ok", or the failure's reason in a few words.
    pub fn reason(self) -> String {
        match self {
            ProbeOutcome::Ok => "ok".into(),
            ProbeOutcome::Connect => "connect failed".into(),
            ProbeOutcome::Timeout => "timed out".into(),
            ProbeOutcome::Io => "connection failed".into(),
            ProbeOutcome::NotHttp => "no valid HTTP response".into(),
            ProbeOutcome::Status(s) => format!("status {s}"),
            ProbeOutcome::Body => "body does not match".into(),
        }
    }
}

/// A peer's last finished probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRecord {
    pub outcome: ProbeOutcome,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub duration: Duration,
}

impl Last {
    /// The same as `other` (a region copied into a larger one).
    pub(super) fn copy_from(&self, other: &Last) {
        self.at_ms.store(other.at_ms.load(Relaxed), Relaxed);
        self.duration_us
            .store(other.duration_us.load(Relaxed), Relaxed);
        self.outcome.store(other.outcome.load(Relaxed), Relaxed);
    }

    pub(super) fn clear(&self) {
        self.outcome.store(0, Relaxed);
        self.at_ms.store(0, Relaxed);
        self.duration_us.store(0, Relaxed);
    }
}

impl Health {
    /// A probe ended (helper only).
    pub fn probe_done(&self, outcome: ProbeOutcome, took: Duration) {
        let n = match outcome {
            ProbeOutcome::Ok => &self.probes_ok,
            _ => &self.probes_failed,
        };
        n.fetch_add(1, Relaxed);
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let l = &self.last_probe;
        l.duration_us
            .store(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        l.at_ms.store(at_ms, Relaxed);
        l.outcome.store(outcome.pack(), Relaxed);
    }

    /// Probes finished: (succeeded, failed).
    pub fn probe_counts(&self) -> (u64, u64) {
        (
            self.probes_ok.load(Relaxed),
            self.probes_failed.load(Relaxed),
        )
    }

    /// The last finished probe, if any.
    pub fn last_probe(&self) -> Option<ProbeRecord> {
        let l = &self.last_probe;
        Some(ProbeRecord {
            outcome: ProbeOutcome::unpack(l.outcome.load(Relaxed))?,
            at_ms: l.at_ms.load(Relaxed),
            duration: Duration::from_micros(l.duration_us.load(Relaxed)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_survive_packing() {
        for o in [
            ProbeOutcome::Ok,
            ProbeOutcome::Connect,
            ProbeOutcome::Timeout,
            ProbeOutcome::Io,
            ProbeOutcome::NotHttp,
            ProbeOutcome::Status(503),
            ProbeOutcome::Body,
        ] {
            assert_eq!(ProbeOutcome::unpack(o.pack()), Some(o));
        }
        assert_eq!(ProbeOutcome::unpack(0), None);
    }
}
