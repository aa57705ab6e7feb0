//! The node's last 15 minutes, for `GET /api/history`: the master samples the totals the
//! dashboard's charts need every 5 s into a ring of fixed size, so a page opened now draws
//! full charts at once. Samples are cumulative totals, as `/api/traffic` gives them, and
//! the page differences two of them as it differences two polls. The ring lives in the
//! master, which outlives reloads, and reads shared memory, whose counters a reload never
//! resets: history runs on across reloads.

use super::Master;
use crate::shm;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a sample is taken, and how many are kept (15 minutes).
pub(super) const EVERY: Duration = Duration::from_secs(5);
pub(super) const SAMPLES: usize = 180;

/// The node's totals at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Milliseconds since the Unix epoch.
    at_ms: u64,
    requests: u64,
    /// Responses by status class (1xx to 5xx), over every server.
    classes: [u64; 5],
    /// Request durations over every server: cumulative buckets (`shm::BUCKETS_US`).
    le: [u64; shm::BUCKETS_US.len()],
    count: u64,
    sum_us: u64,
    /// Client connections now: active, reading, writing, waiting.
    connections: [u64; 4],
}

/// The ring: allocated once, full size, at the master's start.
pub(super) struct History {
    samples: VecDeque<Sample>,
    next_at: Instant,
}

impl Default for History {
    fn default() -> History {
        History {
            samples: VecDeque::with_capacity(SAMPLES),
            // The first sample at once: a page opened soon after the start has a baseline.
            next_at: Instant::now(),
        }
    }
}

impl History {
    /// When the next sample is due (a master loop deadline).
    pub(super) fn next_at(&self) -> Instant {
        self.next_at
    }

    fn push(&mut self, s: Sample) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
}

impl Master {
    /// Takes a sample when one is due (only with an admin listener: nothing else reads it).
    pub(super) fn history_timer(&mut self, now: Instant) {
        if self.history.next_at > now {
            return;
        }
        // On the 5 s grid, however late the loop woke: samples stay evenly spaced.
        while self.history.next_at <= now {
            self.history.next_at += EVERY;
        }
        if self.cfg.admin.is_some() {
            let s = self.sample();
            self.history.push(s);
        }
    }

    fn sample(&self) -> Sample {
        let view = self.shared.region.view();
        let live = self.shared.live_blocks();
        let c = view.connections(&live);
        let mut s = Sample {
            at_ms: super::api::epoch_ms(),
            requests: c.requests,
            connections: [c.active, c.reading, c.writing, c.waiting],
            ..Sample::default()
        };
        let servers = &self.cfg.server;
        for (i, srv) in servers.iter().enumerate() {
            // Servers sharing a slot (one name on several listeners) are counted once.
            if servers[..i].iter().any(|x| x.slot == srv.slot) {
                continue;
            }
            let t = view.traffic(srv.slot, &live);
            for (a, b) in s.classes.iter_mut().zip(t.classes) {
                *a += b;
            }
            let h = &t.hist[shm::Hist::Request as usize];
            for (a, b) in s.le.iter_mut().zip(h.le) {
                *a += b;
            }
            s.count += h.count;
            s.sum_us += h.sum_us;
        }
        s
    }

    /// `GET /api/history`: the samples, oldest first, in `/api/traffic`'s shapes.
    pub(super) fn api_history(&self) -> Value {
        let samples: Vec<Value> = self
            .history
            .samples
            .iter()
            .map(|s| {
                json!({
                    "at_ms": s.at_ms,
                    "requests": s.requests,
                    "classes": s.classes,
                    "duration": { "le": s.le, "count": s.count, "sum_seconds": s.sum_us as f64 / 1e6 },
                    "connections": {
                        "active": s.connections[0], "reading": s.connections[1],
                        "writing": s.connections[2], "waiting": s.connections[3],
                    },
                })
            })
            .collect();
        let le: Vec<f64> = shm::BUCKETS_US.iter().map(|b| *b as f64 / 1e6).collect();
        json!({
            "interval_seconds": EVERY.as_secs(),
            "capacity": SAMPLES,
            "le": le,
            "samples": samples,
        })
    }
}
