//! The name -> slot directory (master only). A name keeps its slot for as long as the
//! region lives, so a reload finds the health and counters its peers had; a slot is given to
//! a new name only when nothing is free and no live generation uses the old one, and is
//! cleared first.

use super::{Entry, View, NAME_BYTES};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::hash::stable as hash;

/// A configuration needs more slots than the region has.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotError {
    pub needed: usize,
    pub free: usize,
    pub slots: u32,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared memory is full: this configuration needs {} new slots for servers, routes, \
             upstreams and peers but only {} of {} can be given (shared_memory.slots); raise \
             shared_memory.slots and restart proxyd",
            self.needed, self.free, self.slots
        )
    }
}

impl Entry {
    fn name_bytes(&self) -> ([u8; NAME_BYTES], usize) {
        let mut out = [0u8; NAME_BYTES];
        for (i, w) in self.name.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
        }
        (out, self.len.load(Relaxed) as usize)
    }

    fn holds(&self, name: &[u8], h: u64) -> bool {
        if self.used.load(Acquire) == 0 || self.hash.load(Relaxed) != h {
            return false;
        }
        let (bytes, len) = self.name_bytes();
        len == name.len() && bytes[..len.min(NAME_BYTES)] == name[..name.len().min(NAME_BYTES)]
    }

    fn set(&self, name: &[u8], h: u64) {
        let mut buf = [0u8; NAME_BYTES];
        let n = name.len().min(NAME_BYTES);
        buf[..n].copy_from_slice(&name[..n]);
        for (i, w) in self.name.iter().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            w.store(u64::from_le_bytes(b), Relaxed);
        }
        self.len.store(name.len() as u32, Relaxed);
        self.hash.store(h, Relaxed);
        self.used.store(1, Release);
    }
}

/// The directory operations, on the master's view of the region.
pub struct Directory<'a>(pub &'a View);

impl Directory<'_> {
    /// Whether a name has `slot`.
    pub fn taken(&self, slot: u32) -> bool {
        self.0.entry(slot).used.load(Acquire) != 0
    }

    /// The slot holding `name`, if any.
    pub fn find(&self, name: &str) -> Option<u32> {
        let h = hash(name.as_bytes());
        (0..self.0.slots).find(|&s| self.0.entry(s).holds(name.as_bytes(), h))
    }

    /// The taken slots by name hash: one pass over the directory, then a lookup per name
    /// (a config of thousands of peers would otherwise scan it once per name).
    fn index(&self) -> HashMap<u64, Vec<u32>> {
        let mut m: HashMap<u64, Vec<u32>> = HashMap::new();
        for s in 0..self.0.slots {
            let e = self.0.entry(s);
            if e.used.load(Acquire) != 0 {
                m.entry(e.hash.load(Relaxed)).or_default().push(s);
            }
        }
        m
    }

    /// Slots for `names` (in order): each name keeps the slot it has; a new name takes a
    /// free slot, else one whose name no live generation uses (`in_use`), cleared. All or
    /// nothing: on an error nothing changed.
    pub fn assign(&self, names: &[String], in_use: &HashSet<u32>) -> Result<Vec<u32>, SlotError> {
        let index = self.index();
        let lookup = |n: &str| {
            let h = hash(n.as_bytes());
            index.get(&h).and_then(|v| {
                v.iter()
                    .copied()
                    .find(|&s| self.0.entry(s).holds(n.as_bytes(), h))
            })
        };
        let mut out: Vec<Option<u32>> = names.iter().map(|n| lookup(n)).collect();
        let keep: HashSet<u32> = out
            .iter()
            .flatten()
            .copied()
            .chain(in_use.iter().copied())
            .collect();
        let mut new: Vec<usize> = Vec::new();
        let mut seen = HashSet::new();
        for (i, n) in names.iter().enumerate() {
            if out[i].is_none() && seen.insert(n.as_str()) {
                new.push(i);
            }
        }
        // Free slots first, then recycled ones (kept names' history lasts longest that way).
        let free = (0..self.0.slots).filter(|&s| self.0.entry(s).used.load(Acquire) == 0);
        let stale = (0..self.0.slots)
            .filter(|&s| self.0.entry(s).used.load(Acquire) != 0 && !keep.contains(&s));
        let avail: Vec<u32> = free.chain(stale).take(new.len()).collect();
        if avail.len() < new.len() {
            return Err(SlotError {
                needed: new.len(),
                free: avail.len(),
                slots: self.0.slots,
            });
        }
        for (&i, &slot) in new.iter().zip(&avail) {
            // A slot never named holds nothing (and clearing it would back its pages).
            if self.0.entry(slot).used.load(Acquire) != 0 {
                self.0.clear(slot);
            }
            self.0
                .entry(slot)
                .set(names[i].as_bytes(), hash(names[i].as_bytes()));
            out[i] = Some(slot);
        }
        // A name given twice in `names` takes the slot of its first.
        Ok(names
            .iter()
            .zip(out)
            .map(|(n, s)| s.or_else(|| self.find(n)).expect("every name has a slot"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Region;
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_keep_their_slots_and_full_is_refused() {
        let r = Region::create(4, 2).unwrap();
        let v = r.view();
        assert!(v.valid());
        let d = Directory(&v);
        let a = d
            .assign(&names(&["u:a", "p:a/1", "p:a/2"]), &HashSet::new())
            .unwrap();
        assert_eq!(a.len(), 3);
        v.block(0).request(a[1]);
        v.block(1).request(a[1]);
        // Same names, other order, one new: old slots kept, counters intact.
        let b = d
            .assign(&names(&["p:a/2", "u:a", "p:a/1", "p:a/3"]), &HashSet::new())
            .unwrap();
        assert_eq!((b[0], b[1], b[2]), (a[2], a[0], a[1]));
        assert_eq!(v.totals(a[1], 0).requests, 2);
        // Two more new names while all four are in use by a live generation: refused, and
        // nothing changed.
        let live: HashSet<u32> = b.iter().copied().collect();
        let e = d.assign(&names(&["u:b", "p:b/1"]), &live).unwrap_err();
        assert_eq!((e.needed, e.free, e.slots), (2, 0, 4));
        assert_eq!(d.find("p:a/1"), Some(a[1]));
        // Once that generation is gone, stale slots are recycled and cleared.
        let c = d
            .assign(&names(&["u:b", "p:b/1"]), &HashSet::new())
            .unwrap();
        assert!(c.iter().all(|s| v.totals(*s, 0).requests == 0));
        assert_eq!(d.find("u:b"), Some(c[0]));
    }

    #[test]
    fn retired_blocks_keep_the_sum() {
        let r = Region::create(2, 2).unwrap();
        let v = r.view();
        let s = Directory(&v)
            .assign(&names(&["p"]), &HashSet::new())
            .unwrap()[0];
        let b = v.block(1);
        b.request(s);
        b.request(s);
        b.failure(s);
        b.active(s, 1);
        assert_eq!(v.totals(s, 0).active, 1);
        v.retire(1);
        let t = v.totals(s, 0);
        assert_eq!((t.requests, t.failures, t.active), (2, 1, 0));
        v.block(1).request(s);
        assert_eq!(v.totals(s, 0).requests, 3);
    }

    /// A worker that counted only bytes (every status it passed on had no class, a 600 say)
    /// leaves them in the retired totals when it is reaped, not behind in its block, where
    /// they would surface under the slot's next name.
    #[test]
    fn a_retired_block_leaves_nothing_for_the_next_name() {
        let r = Region::create(1, 2).unwrap();
        let v = r.view();
        let d = Directory(&v);
        let s = d.assign(&names(&["a"]), &HashSet::new()).unwrap()[0];
        v.block(0).bytes(s, 100, 200);
        v.block(0).status(s, 600);
        v.retire(0);
        let t = v.traffic(s, &[]);
        assert_eq!(
            (t.bytes_in, t.bytes_out),
            (100, 200),
            "kept in the retired totals"
        );
        // The name goes; its slot is recycled for "b", which starts from zero, also once a
        // worker in the same block counts for it.
        let b = d.assign(&names(&["b"]), &HashSet::new()).unwrap()[0];
        assert_eq!(b, s);
        v.block(0).bytes(b, 1, 2);
        let t = v.traffic(b, &[0]);
        assert_eq!((t.bytes_in, t.bytes_out), (1, 2));
    }

    #[test]
    fn long_names_are_told_apart() {
        let r = Region::create(4, 1).unwrap();
        let v = r.view();
        let d = Directory(&v);
        let long = "x".repeat(200);
        let n = names(&[&format!("{long}1"), &format!("{long}2")]);
        let s = d.assign(&n, &HashSet::new()).unwrap();
        assert_ne!(s[0], s[1]);
        assert_eq!(d.assign(&n, &HashSet::new()).unwrap(), s);
    }

    #[test]
    fn health_is_shared_and_counts_ejections() {
        let r = Region::create(1, 1).unwrap();
        let v = r.view();
        let h = v.health(0);
        assert!(!h.ejected(100));
        assert_eq!(h.failed(), 1);
        assert_eq!(h.eject(100, |streak| 100 * streak as u64), Some(100));
        assert_eq!(h.eject(150, |_| 100), None, "ejected already");
        assert!(h.ejected(199));
        assert!(!h.ejected(200));
        assert_eq!(
            h.eject(200, |streak| 100 * streak as u64),
            Some(200),
            "longer each time"
        );
        assert_eq!(v.totals(0, 100).ejections, 2);
        h.succeeded();
        assert_eq!(h.streak(), 0);
    }
}
