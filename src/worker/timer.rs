//! One timer structure per worker: a min-heap of (deadline, token, id) with lazy deletion.
//! Owners keep their own current deadline; an entry that no longer matches is skipped, so
//! pushing back a deadline costs nothing until the old entry surfaces.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    pub fn add(&mut self, at: Instant, key: usize, id: u64) {
        self.heap.push(Reverse((at, key, id)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `keep(at, key, id)` approves (rebuilds the heap: O(n)).
    pub fn retain(&mut self, mut keep: impl FnMut(Instant, usize, u64) -> bool) {
        self.heap
            .retain(|Reverse((at, key, id))| keep(*at, *key, *id));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A deadline owned by a connection, registered lazily in `Timers`.
#[derive(Default, Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Option<Instant>,
    /// The earliest entry this owner has in the heap.
    armed: Option<Instant>,
}

impl Deadline {
    pub fn set(&mut self, at: Instant, timers: &mut Timers, key: usize, id: u64) {
        self.at = Some(at);
        if self.armed.is_none_or(|a| at < a) {
            self.armed = Some(at);
            timers.add(at, key, id);
        }
    }

    /// Whether this owner's live heap entry is the one due at `at`.
    pub fn is_armed_at(&self, at: Instant) -> bool {
        self.armed == Some(at)
    }

    /// Called when this owner's heap entry for `entry_at` fires. Returns true when the
    /// deadline really passed; otherwise re-arms for the later deadline.
    pub fn fire(
        &mut self,
        entry_at: Instant,
        now: Instant,
        timers: &mut Timers,
        key: usize,
        id: u64,
    ) -> bool {
        if self.armed != Some(entry_at) {
            return false;
        }
        self.armed = None;
        match self.at {
            Some(at) if at <= now => {
                self.at = None;
                true
            }
            Some(at) => {
                self.armed = Some(at);
                timers.add(at, key, id);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lazy_rearm() {
        let mut t = Timers::default();
        let mut d = Deadline::default();
        let now = Instant::now();
        d.set(now + Duration::from_millis(10), &mut t, 1, 7);
        d.set(now + Duration::from_millis(50), &mut t, 1, 7);
        assert_eq!(t.len(), 1);
        let later = now + Duration::from_millis(20);
        let (at, key, id) = t.pop_due(later).unwrap();
        assert_eq!((key, id), (1, 7));
        assert!(!d.fire(at, later, &mut t, key, id));
        assert_eq!(t.next(), Some(now + Duration::from_millis(50)));
        let end = now + Duration::from_millis(60);
        let (at, key, id) = t.pop_due(end).unwrap();
        assert!(d.fire(at, end, &mut t, key, id));
        assert!(t.is_empty());
    }
}
