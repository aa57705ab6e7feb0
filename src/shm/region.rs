//! The region's memory: a memfd mapped `MAP_SHARED`, made by the first master and handed
//! to each master after it across binary upgrades (`adopt`), which checks that its header
//! is of this binary's layout before reading anything else.

use super::{region_len, Header, View, MAGIC, VERSION};
use memmap2::MmapMut;
use std::io;

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

    /// The memfd, for handing the region to a new master.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.file)
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
