//! Where a peer given by host name is now. A name's addresses each take a slot of their own
//! (health and counters per address, as for any peer); the address itself lives in that
//! slot, written by whoever resolved the name (the master when it loads a config, the helper
//! process on every re-resolution) and read by every worker before it connects.
//!
//! An address is three words behind a sequence lock: a writer makes the sequence odd while it
//! writes, a reader retries when the sequence was odd or moved under it. Writers are rare and
//! serialize on a compare-and-swap of the sequence. A writer killed mid-write would leave the
//! sequence odd for good, so neither side waits without bound: a reader gives up (the peer
//! has no address for that pick) and the next writer takes over.

use super::View;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};

#[repr(C)]
#[derive(Default)]
pub(crate) struct Cell {
    seq: AtomicU32,
    /// IPv6 address bytes 0..8 and 8..16 (an IPv4 address in the low word), then the port
    /// (bits 0..16) and the family (bits 16..24: 0 none, 4, 6).
    words: [AtomicU64; 3],
}

/// Reads a reader retries before it gives up on a cell a dead writer left odd.
const READ_TRIES: u32 = 64;
/// Spins a writer waits for another writer before it assumes that one died mid-write.
const WRITE_SPINS: u32 = 1 << 20;

fn encode(a: Option<SocketAddr>) -> [u64; 3] {
    match a {
        None => [0; 3],
        Some(SocketAddr::V4(a)) => [0, u32::from(*a.ip()) as u64, a.port() as u64 | 4 << 16],
        Some(SocketAddr::V6(a)) => {
            let ip = u128::from(*a.ip());
            [(ip >> 64) as u64, ip as u64, a.port() as u64 | 6 << 16]
        }
    }
}

fn decode(w: [u64; 3]) -> Option<SocketAddr> {
    let port = w[2] as u16;
    let ip = match (w[2] >> 16) & 0xff {
        4 => IpAddr::V4(Ipv4Addr::from(w[1] as u32)),
        6 => IpAddr::V6(Ipv6Addr::from((w[0] as u128) << 64 | w[1] as u128)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl Cell {
    /// The address, and the version it has (changed by every write).
    pub(crate) fn get(&self) -> (Option<SocketAddr>, u32) {
        for _ in 0..READ_TRIES {
            let s = self.seq.load(Acquire);
            if s & 1 == 0 {
                let w = [
                    self.words[0].load(Relaxed),
                    self.words[1].load(Relaxed),
                    self.words[2].load(Relaxed),
                ];
                fence(Acquire);
                if self.seq.load(Relaxed) == s {
                    return (decode(w), s);
                }
            }
            std::hint::spin_loop();
        }
        (None, u32::MAX)
    }

    pub(crate) fn set(&self, a: Option<SocketAddr>) {
        let mut s = self.seq.load(Relaxed);
        let mut spins = 0;
        loop {
            if s & 1 == 1 {
                spins += 1;
                if spins >= WRITE_SPINS {
                    // The writer that made it odd is gone: finish in its place.
                    s = s.wrapping_sub(1);
                    break;
                }
                std::hint::spin_loop();
                s = self.seq.load(Relaxed);
                continue;
            }
            match self
                .seq
                .compare_exchange_weak(s, s.wrapping_add(1), Acquire, Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        fence(Release);
        for (cell, w) in self.words.iter().zip(encode(a)) {
            cell.store(w, Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Release);
    }
}

/// What `place` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
    /// Addresses left out for want of slots (`max_addresses`).
    pub left_out: Vec<SocketAddr>,
}

impl Placed {
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

impl View {
    /// The address now in `slot` (None: no address, so the peer is not used).
    pub fn address(&self, slot: u32) -> Option<SocketAddr> {
        self.health(slot).address.get().0
    }

    /// The address in `slot` and its version: a connection made to it is still to the
    /// slot's address as long as the version has not moved (one load to check, where
    /// keeping the address itself would cost every session 32 bytes).
    pub fn address_versioned(&self, slot: u32) -> (Option<SocketAddr>, u32) {
        self.health(slot).address.get()
    }

    pub fn address_version(&self, slot: u32) -> u32 {
        self.health(slot).address.seq.load(Acquire)
    }

    /// Puts a name's addresses `addrs` into its slots `slots`: an address already in a slot
    /// stays there (its health, its counters and its keys on the hash ring stay with it),
    /// slots whose address went away are emptied, new addresses take empty slots with their
    /// health starting over.
    pub fn place(&self, slots: &[u32], addrs: &[SocketAddr]) -> Placed {
        let mut placed = Placed::default();
        let now: Vec<Option<SocketAddr>> = slots.iter().map(|&s| self.address(s)).collect();
        let mut free = Vec::new();
        for (i, (&slot, was)) in slots.iter().zip(&now).enumerate() {
            match was {
                // Kept, once: two writers placing at once (the master loading a config while
                // the helper re-resolves) could leave an address in two slots.
                Some(a) if addrs.contains(a) && !now[..i].contains(was) => {}
                Some(a) => {
                    placed.removed.push(*a);
                    self.health(slot).address.set(None);
                    self.health(slot).restart();
                    free.push(slot);
                }
                None => free.push(slot),
            }
        }
        let mut free = free.into_iter();
        for (i, a) in addrs.iter().enumerate() {
            if now.contains(&Some(*a)) || addrs[..i].contains(a) {
                continue;
            }
            match free.next() {
                Some(slot) => {
                    self.health(slot).restart();
                    self.health(slot).address.set(Some(*a));
                    placed.added.push(*a);
                }
                None => placed.left_out.push(*a),
            }
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Region;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn encodes_both_families_and_none() {
        for x in [None, Some(a("10.1.2.3:80")), Some(a("[2001:db8::7]:65535"))] {
            assert_eq!(decode(encode(x)), x);
        }
        let c = Cell::default();
        assert_eq!(c.get(), (None, 0));
        c.set(Some(a("127.0.0.2:8080")));
        assert_eq!(c.get(), (Some(a("127.0.0.2:8080")), 2));
    }

    #[test]
    fn a_writer_that_died_mid_write_blocks_nobody() {
        let c = Cell::default();
        c.set(Some(a("10.0.0.1:80")));
        c.seq.fetch_add(1, Relaxed); // odd, as if its writer was killed
        assert_eq!(c.get().0, None, "a reader gives up");
        c.set(Some(a("10.0.0.2:80")));
        assert_eq!(
            c.get().0,
            Some(a("10.0.0.2:80")),
            "the next writer takes over"
        );
    }

    #[test]
    fn kept_addresses_keep_their_slots() {
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        let slots = [3, 4, 5];
        let p = v.place(&slots, &[a("10.0.0.1:80"), a("10.0.0.2:80")]);
        assert_eq!(p.added.len(), 2);
        assert_eq!(v.address(3), Some(a("10.0.0.1:80")));
        assert_eq!(v.address(5), None);
        v.health(4).set_checked(crate::shm::Checked::Down);
        v.health(3).set_checked(crate::shm::Checked::Down);
        // 10.0.0.1 goes, 10.0.0.3 comes: 10.0.0.2 stays in slot 4 with its health.
        let p = v.place(&slots, &[a("10.0.0.2:80"), a("10.0.0.3:80")]);
        assert_eq!(p.removed, vec![a("10.0.0.1:80")]);
        assert_eq!(p.added, vec![a("10.0.0.3:80")]);
        assert_eq!(v.address(4), Some(a("10.0.0.2:80")));
        assert_eq!(v.health(4).checked(), crate::shm::Checked::Down);
        assert_eq!(v.address(3), Some(a("10.0.0.3:80")));
        assert_eq!(v.health(3).checked(), crate::shm::Checked::Unknown);
        // An address in two slots keeps one of them.
        v.health(5).address.set(Some(a("10.0.0.2:80")));
        let p = v.place(&slots, &[a("10.0.0.2:80"), a("10.0.0.3:80")]);
        assert_eq!(p.removed, vec![a("10.0.0.2:80")]);
        assert_eq!(v.address(5), None);
        assert_eq!(v.address(4), Some(a("10.0.0.2:80")));
        // Nothing new: nothing changes; too many: the rest is left out.
        assert!(!v
            .place(&slots, &[a("10.0.0.3:80"), a("10.0.0.2:80")])
            .changed());
        let four = ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"].map(a);
        let p = v.place(&slots, &four);
        assert_eq!(p.added, vec![a("10.0.0.4:80")]);
        assert_eq!(p.left_out, vec![a("10.0.0.5:80")]);
    }
}
