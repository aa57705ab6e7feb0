//! Recycled per-request memory. An exchange (its parsed head, the head written upstream,
//! the peers tried) and a session's output buffer go back here when the request ends and
//! are refilled by the next one, so steady keep-alive traffic allocates nothing per request
//! (`bench/allocs.sh` counts it). Idle connections still hold none of it: it belongs to the
//! worker, bounded in count and in the size of what it keeps.

use super::Exchange;
use std::time::Instant;

/// Objects kept of each kind: more than this many requests finishing at once is a burst
/// whose memory should go back to the allocator.
const KEEP: usize = 128;
/// Larger buffers (a head near the limits) are dropped rather than kept.
const MAX_KEPT: usize = 8 * 1024;

#[derive(Default)]
pub struct Spare {
    // The boxes themselves are what is recycled: a session holds its exchange boxed.
    #[allow(clippy::vec_box)]
    exchanges: Vec<Box<Exchange>>,
    vecs: Vec<Vec<u8>>,
}

impl Spare {
    /// An exchange to parse the next request into.
    pub fn exchange(&mut self, now: Instant) -> Box<Exchange> {
        self.exchanges
            .pop()
            .unwrap_or_else(|| Box::new(Exchange::blank(now)))
    }

    /// Keeps an exchange whose upstream driver was closed (`Ctx::retire`).
    pub fn put_exchange(&mut self, x: Box<Exchange>) {
        if self.exchanges.len() < KEEP && x.kept_bytes() <= MAX_KEPT {
            self.exchanges.push(x);
        }
    }

    /// An empty buffer (with capacity when one was kept).
    pub fn vec(&mut self) -> Vec<u8> {
        self.vecs.pop().unwrap_or_default()
    }

    pub fn put_vec(&mut self, mut v: Vec<u8>) {
        if self.vecs.len() < KEEP && v.capacity() > 0 && v.capacity() <= MAX_KEPT {
            v.clear();
            self.vecs.push(v);
        }
    }
}
