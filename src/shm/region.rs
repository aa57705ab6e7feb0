//! The region's memory: a memfd mapped `MAP_SHARED`, made by the first master and handed
//! to each master after it across binary upgrades (`adopt`), which checks that its header
//! is of this binary's layout before reading anything else.

use super::{region_len, Header, View, MAGIC, VERSION};
use memmap2::MmapMut;
use std::io;
use std::sync::atomic::Ordering::{Relaxed, Release};

/// The region as the master owns it. The memfd stays open so that a binary upgrade can hand
/// the same pages to the new master (`adopt`).
pub struct Region {
    _map: MmapMut,
    file: std::fs::File,
    view: View,
}

impl Region {
    /// A new, zeroed region for `slots` names and `blocks` live workers.
    pub fn create(slots: u32, blocks: u32) -> io::Result<Region> {
        let len = region_len(slots, blocks);
        let fd = nix::sys::memfd::memfd_create(
            c"proxyd-shared",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let file = std::fs::File::from(fd);
        file.set_len(len as u64)?;
        // SAFETY: a fresh memfd nobody else has; its size is fixed from here on.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        let view = View {
            base: map.as_mut_ptr(),
            slots,
            blocks,
        };
        // SAFETY: the header is at offset 0 of a mapping at least its size, page-aligned.
        let h = unsafe { &mut *(view.base as *mut Header) };
        h.magic = MAGIC;
        h.version = VERSION;
        h.slots = slots;
        h.blocks = blocks;
        Ok(Region {
            _map: map,
            file,
            view,
        })
    }

    /// Maps the region a master handed over across a binary upgrade, if its header says it
    /// is of this binary's layout and its size matches; the capacities are the region's.
    /// Its workers keep writing their blocks while they drain: the same pages, so nothing
    /// they count is lost.
    pub fn adopt(fd: std::os::fd::OwnedFd) -> Result<Region, Refused> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(fd);
        // Read through the descriptor first: nothing is mapped before the header is known.
        let mut raw = [0u8; 20];
        file.read_exact_at(&mut raw, 0)
            .map_err(|e| Refused::Unreadable(e.to_string()))?;
        let word = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        if raw[..8] != MAGIC {
            return Err(Refused::Unreadable("no proxyd header".into()));
        }
        let (version, slots, blocks) = (word(8), word(12), word(16));
        if version != VERSION {
            return Err(Refused::Version(version));
        }
        let len = file
            .metadata()
            .map_err(|e| Refused::Unreadable(e.to_string()))?
            .len();
        if len != region_len(slots, blocks) as u64 {
            return Err(Refused::Unreadable(format!(
                "{len} bytes where {slots} slots and {blocks} blocks take {}",
                region_len(slots, blocks)
            )));
        }
        // SAFETY: the size was checked against the layout the header names; the old
        // master never resizes it.
        let mut map =
            unsafe { MmapMut::map_mut(&file) }.map_err(|e| Refused::Unreadable(e.to_string()))?;
        let view = View {
            base: map.as_mut_ptr(),
            slots,
            blocks,
        };
        Ok(Region {
            _map: map,
            file,
            view,
        })
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// Bytes of the region backed by memory (the memfd's allocated blocks).
    #[cfg(test)]
    pub fn backed_bytes(&self) -> u64 {
        std::os::unix::fs::MetadataExt::blocks(&self.file.metadata().expect("memfd")) * 512
    }

    /// The memfd, for handing the region to a new master.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.file)
    }
}

impl View {
    /// Copies what `old` (a region of other capacities) knows into this new one: each name
    /// with its totals (summed into the retired block) and its peer's health, so counters go
    /// on across an upgrade that resizes the region. Gauges are not copied: they belong to
    /// the old workers. Returns how many names were copied (fewer when this region is
    /// smaller than the old one's names).
    pub fn absorb(&self, old: &View) -> usize {
        let mut copied = 0;
        let mut free = (0..self.slots).filter(|&s| self.entry(s).used.load(Relaxed) == 0);
        for s in (0..old.slots).filter(|&s| old.entry(s).used.load(Relaxed) != 0) {
            // The same slot when there is one (its pages are the old one's too), else the next free.
            let to = if s < self.slots && self.entry(s).used.load(Relaxed) == 0 {
                s
            } else {
                match free.find(|&f| f != s && self.entry(f).used.load(Relaxed) == 0) {
                    Some(f) => f,
                    None => break,
                }
            };
            let (from_e, to_e) = (old.entry(s), self.entry(to));
            for (a, b) in from_e.name.iter().zip(to_e.name.iter()) {
                b.store(a.load(Relaxed), Relaxed);
            }
            to_e.len.store(from_e.len.load(Relaxed), Relaxed);
            to_e.hash.store(from_e.hash.load(Relaxed), Relaxed);
            to_e.used.store(1, Release);
            let r = self.counters(self.blocks, to);
            for c in old.written_in(s, 0..=old.blocks) {
                // Only names that counted something: the others' pages stay unbacked.
                self.mark_written(self.blocks, to);
                for (to, from) in r.cumulative().zip(c.cumulative()) {
                    to.fetch_add(from.load(Relaxed), Relaxed);
                }
            }
            let (h, oh) = (self.health(to), old.health(s));
            h.down_until.store(oh.down_until.load(Relaxed), Relaxed);
            h.fails.store(oh.fails.load(Relaxed), Relaxed);
            h.ejections.store(oh.ejections.load(Relaxed), Relaxed);
            h.checked.store(oh.checked.load(Relaxed), Relaxed);
            h.probes.store(oh.probes.load(Relaxed), Relaxed);
            h.streak.store(oh.streak.load(Relaxed), Relaxed);
            h.admin.store(oh.admin.load(Relaxed), Relaxed);
            h.weight.store(oh.weight.load(Relaxed), Relaxed);
            h.probes_ok.store(oh.probes_ok.load(Relaxed), Relaxed);
            h.probes_failed
                .store(oh.probes_failed.load(Relaxed), Relaxed);
            h.last_probe.copy_from(&oh.last_probe);
            h.address.set(oh.address.get().0);
            copied += 1;
        }
        let r = self.worker_stats(self.blocks);
        for b in 0..=old.blocks {
            let w = old.worker_stats(b);
            r.accepted.fetch_add(w.accepted.load(Relaxed), Relaxed);
            r.requests.fetch_add(w.requests.load(Relaxed), Relaxed);
        }
        copied
    }
}

/// Why a region handed over was not adopted.
#[derive(Debug)]
pub enum Refused {
    /// Another layout version (an older or newer binary).
    Version(u32),
    Unreadable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Version(v) => write!(
                f,
                "its layout version is {v} and this binary's is {VERSION}"
            ),
            Refused::Unreadable(e) => write!(f, "it is not a region this binary can read: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{BorrowedFd, OwnedFd};

    fn handed(r: &Region) -> OwnedFd {
        // SAFETY: the region's memfd is open for as long as `r`.
        let fd = unsafe { BorrowedFd::borrow_raw(r.fd()) };
        fd.try_clone_to_owned().unwrap()
    }

    /// A node of many names backs counter pages only for what counted something: naming,
    /// summing, recycling and retiring read the `written` bits, not the counters.
    #[test]
    fn counters_nobody_wrote_are_never_backed() {
        use crate::shm::Directory;
        use std::collections::HashSet;
        let r = Region::create(100_000, 64).unwrap();
        let v = r.view();
        let names: Vec<String> = (0..50_000).map(|i| format!("n{i}")).collect();
        let slots = Directory(&v).assign(&names, &HashSet::new()).unwrap();
        assert!(v.claim(0, 1));
        v.block(0).request(slots[7]);
        v.block(0).set_idle(slots[8], 0);
        for &s in &slots {
            let _ = v.totals(s, 0);
            let _ = v.traffic(s, &[0]);
        }
        v.retire(0);
        assert_eq!(v.totals(slots[7], 0).requests, 1);
        // Recycling every name: the old ones are cleared (only the one that counted).
        let other: Vec<String> = (0..50_000).map(|i| format!("m{i}")).collect();
        Directory(&v).assign(&other, &HashSet::new()).unwrap();
        let backed = r.backed_bytes();
        // Directory and health of 100,000 slots are 32 MB; one block of counters alone
        // would be 77 MB, all of them 5 GB.
        assert!(backed < 40 << 20, "{backed} bytes backed");
    }

    #[test]
    fn an_adopted_region_is_the_same_memory() {
        let old = Region::create(4, 2).unwrap();
        old.view().block(1).request(3);
        let new = Region::adopt(handed(&old)).unwrap();
        let v = new.view();
        assert_eq!((v.slots(), v.blocks()), (4, 2));
        assert_eq!(v.totals(3, 0).requests, 1);
        // Both see what either writes: the old master's workers go on counting there.
        old.view().block(1).request(3);
        v.block(0).request(3);
        assert_eq!(old.view().totals(3, 0).requests, 3);
        assert_eq!(v.totals(3, 0).requests, 3);
    }

    #[test]
    fn a_resized_region_takes_the_names_totals_and_health() {
        use crate::shm::{Directory, Hist};
        use std::collections::HashSet;
        let old = Region::create(4, 2).unwrap();
        let ov = old.view();
        let names: Vec<String> = ["u:a", "p:a/1", "p:a/2"].map(String::from).to_vec();
        let slots = Directory(&ov).assign(&names, &HashSet::new()).unwrap();
        let p = slots[1];
        ov.block(0).request(p);
        ov.block(1).request(p);
        ov.block(1).status(p, 503);
        ov.block(0)
            .observe(p, Hist::Response, std::time::Duration::from_millis(7));
        ov.retire(1);
        ov.health(p).set_checked(crate::shm::Checked::Down);
        ov.health(p).probe_done(
            crate::shm::ProbeOutcome::Timeout,
            std::time::Duration::from_millis(3),
        );
        ov.block(0).active(p, 1);

        let new = Region::create(8, 3).unwrap();
        let nv = new.view();
        assert_eq!(nv.absorb(&ov), 3);
        let q = Directory(&nv).find("p:a/1").unwrap();
        let t = nv.totals(q, 0);
        assert_eq!((t.requests, t.ejections, t.active), (2, 1, 0));
        assert_eq!(t.checked, crate::shm::Checked::Down);
        // Exact status codes and the probes come along too.
        assert_eq!(nv.traffic(q, &[]), ov.traffic(p, &[0, 1]));
        assert_eq!(nv.health(q).probe_counts(), (0, 1));
        assert_eq!(nv.health(q).last_probe(), ov.health(p).last_probe());
        // The names keep their slots in the new directory: a reload finds them there.
        let again = Directory(&nv).assign(&names, &HashSet::new()).unwrap();
        assert_eq!(again[1], q);
    }

    #[test]
    fn another_layout_is_refused() {
        use std::os::unix::fs::FileExt;
        let r = Region::create(4, 2).unwrap();
        r.file
            .write_all_at(&(VERSION + 1).to_ne_bytes(), 8)
            .unwrap();
        let e = Region::adopt(handed(&r)).err().unwrap();
        assert!(matches!(e, Refused::Version(v) if v == VERSION + 1), "{e}");
        assert!(e
            .to_string()
            .contains(&format!("this binary's is {VERSION}")));

        let r = Region::create(4, 2).unwrap();
        r.file.set_len(4096).unwrap();
        let e = Region::adopt(handed(&r)).err().unwrap();
        assert!(e.to_string().contains("4 slots and 2 blocks"), "{e}");

        let other = std::fs::File::from(handed(&r));
        other.write_all_at(b"NOTOURS!", 0).unwrap();
        let e = Region::adopt(handed(&r)).err().unwrap();
        assert!(e.to_string().contains("no proxyd header"), "{e}");
    }
}
