//! The node's shared memory: one region the master makes before forking any worker (a memfd
//! mapped `MAP_SHARED`, so every process sees the same pages), holding atomics only, laid out
//! by offsets (no pointers) behind a versioned header:
//!
//! ```text
//! header | directory: slots x Entry | health: slots x Health
//!        | counter blocks: (blocks + 1) x slots x Counters   (the last block: retired totals)
//! ```
//!
//! A slot is one named thing (an upstream, a peer); the directory (`directory.rs`, written by
//! the master only) keeps each name's slot across reloads, so health and counters survive a
//! reload, and they live outside every worker, so they survive a worker's crash. Counters are
//! per worker block, one writer each (no locked instructions on the request path); the
//! master folds a dead worker's block into the retired totals so that a sum never goes
//! backwards. Health is written by any worker (and later by the health-check helper) with
//! atomic operations. Pages are only backed when touched, so a large capacity costs address
//! space, not memory.

mod address;
mod directory;

use memmap2::MmapMut;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

pub use address::Placed;
pub use directory::{Directory, SlotError};

const MAGIC: [u8; 8] = *b"PROXYDSH";
/// Bumped whenever the layout changes: a region of another layout is never read.
const VERSION: u32 = 3;
/// Bytes of a name kept in its entry (longer names are told apart by their hash too).
const NAME_BYTES: usize = 104;

#[repr(C, align(64))]
struct Header {
    magic: [u8; 8],
    version: u32,
    slots: u32,
    blocks: u32,
}

/// One directory entry: a name and whether the slot is taken.
#[repr(C, align(64))]
pub(crate) struct Entry {
    used: AtomicU32,
    len: AtomicU32,
    hash: AtomicU64,
    name: [AtomicU64; NAME_BYTES / 8],
}

/// A peer's health, shared by every worker.
#[repr(C, align(64))]
pub struct Health {
    /// Milliseconds on the monotonic clock (`now_ms`) until which the peer is skipped.
    down_until: AtomicU64,
    /// Failures since the last success.
    fails: AtomicU32,
    /// Times it was marked down.
    ejections: AtomicU64,
    /// Upstream connections carrying an exchange, over every live worker (the sum of the
    /// workers' gauges, kept here too so that `least_conn` reads one number).
    active: AtomicU64,
    /// The active health check's verdict (`Checked`), written by the helper process.
    checked: AtomicU32,
    /// Health-check probes sent.
    probes: AtomicU64,
    /// Ejections in a row without a success between them (each one lasts longer).
    streak: AtomicU32,
    /// Retry budget of an upstream: when the current window began (ms), the upstream's
    /// request count then, and the retries spent in it.
    window_start: AtomicU64,
    window_base: AtomicU64,
    window_retries: AtomicU32,
    /// A peer given by host name: its current address (see `address.rs`).
    address: address::Cell,
}

/// Length of a retry-budget window.
const BUDGET_WINDOW_MS: u64 = 10_000;
/// Retries always allowed per window, however few the requests (a quiet upstream can
/// still retry).
const BUDGET_MIN_RETRIES: u64 = 10;

/// What the active health check says of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Not checked (no health check, or none finished yet): up.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

/// Per-worker counters of one slot.
#[repr(C)]
#[derive(Default)]
pub struct Counters {
    /// Requests sent (attempts, a retry counts again).
    requests: AtomicU64,
    /// Connect failures, timeouts and broken responses.
    failures: AtomicU64,
    /// Upstream connections carrying an exchange now (a gauge).
    active: AtomicU64,
    /// Retries (of an upstream: requests sent again after a failure).
    retries: AtomicU64,
}

/// Totals of a slot over every worker (live and retired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub failures: u64,
    pub active: u64,
    pub retries: u64,
    pub ejections: u64,
    pub fails: u32,
    pub checked: Checked,
    pub probes: u64,
    /// Still marked down, for this many milliseconds.
    pub down_for_ms: u64,
}

/// The region as the master owns it.
pub struct Region {
    _map: MmapMut,
    view: View,
}

/// The region as every process reads and writes it: a copyable handle onto the mapping.
/// The mapping is never unmapped while a process runs (the master keeps `Region`; a worker
/// is a fork that never drops it), which is what makes `View` sound to copy and share.
#[derive(Clone, Copy)]
pub struct View {
    base: *mut u8,
    slots: u32,
    blocks: u32,
}

// SAFETY: everything reached through a View is an atomic in a mapping that outlives it.
unsafe impl Send for View {}
unsafe impl Sync for View {}

fn offsets(slots: u32, blocks: u32) -> (usize, usize, usize, usize) {
    let dir = std::mem::size_of::<Header>();
    let health = dir + slots as usize * std::mem::size_of::<Entry>();
    let counters = health + slots as usize * std::mem::size_of::<Health>();
    let end = counters + (blocks as usize + 1) * slots as usize * std::mem::size_of::<Counters>();
    (dir, health, counters, end)
}

impl Region {
    /// A new, zeroed region for `slots` names and `blocks` live workers.
    pub fn create(slots: u32, blocks: u32) -> io::Result<Region> {
        let (_, _, _, len) = offsets(slots, blocks);
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
        Ok(Region { _map: map, view })
    }

    pub fn view(&self) -> View {
        self.view
    }
}

impl View {
    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Whether the header is ours (magic and layout version).
    pub fn valid(&self) -> bool {
        // SAFETY: see `Region::create`.
        let h = unsafe { &*(self.base as *const Header) };
        h.magic == MAGIC && h.version == VERSION && h.slots == self.slots
    }

    fn at<T>(&self, offset: usize, index: usize, count: usize) -> &T {
        assert!(index < count, "shared memory index {index} out of {count}");
        // SAFETY: in bounds (checked above, and the region was sized by `offsets`), aligned
        // (every part starts at a multiple of 64 and the types are 32 or 64 bytes), and every
        // field is an atomic or written before the fork only.
        unsafe { &*(self.base.add(offset + index * std::mem::size_of::<T>()) as *const T) }
    }

    pub(crate) fn entry(&self, slot: u32) -> &Entry {
        let (dir, _, _, _) = offsets(self.slots, self.blocks);
        self.at(dir, slot as usize, self.slots as usize)
    }

    pub fn health(&self, slot: u32) -> &Health {
        let (_, health, _, _) = offsets(self.slots, self.blocks);
        self.at(health, slot as usize, self.slots as usize)
    }

    /// Counters of `slot` in `block` (`blocks()` is the retired totals).
    fn counters(&self, block: u32, slot: u32) -> &Counters {
        let (_, _, counters, _) = offsets(self.slots, self.blocks);
        let i = block as usize * self.slots as usize + slot as usize;
        assert!(slot < self.slots);
        self.at(
            counters,
            i,
            (self.blocks as usize + 1) * self.slots as usize,
        )
    }

    /// A worker's handle on its own block.
    pub fn block(&self, block: u32) -> Block {
        assert!(
            block < self.blocks,
            "worker block {block} of {}",
            self.blocks
        );
        Block { view: *self, block }
    }

    /// Sums `slot` over every block and the retired totals.
    pub fn totals(&self, slot: u32, now_ms: u64) -> Totals {
        let mut t = Totals {
            requests: 0,
            failures: 0,
            active: 0,
            retries: 0,
            ejections: 0,
            fails: 0,
            checked: Checked::Unknown,
            probes: 0,
            down_for_ms: 0,
        };
        for b in 0..=self.blocks {
            let c = self.counters(b, slot);
            t.requests += c.requests.load(Relaxed);
            t.failures += c.failures.load(Relaxed);
            t.active += c.active.load(Relaxed);
            t.retries += c.retries.load(Relaxed);
        }
        let h = self.health(slot);
        t.ejections = h.ejections.load(Relaxed);
        t.checked = h.checked();
        t.probes = h.probes.load(Relaxed);
        t.fails = h.fails.load(Relaxed);
        t.down_for_ms = h.down_until.load(Relaxed).saturating_sub(now_ms);
        t
    }

    /// Folds a dead worker's block into the retired totals and clears it for the next
    /// worker. Master only, after the worker was reaped (so nobody writes the block).
    pub fn retire(&self, block: u32) {
        for s in 0..self.slots {
            let c = self.counters(block, s);
            let r = self.counters(self.blocks, s);
            let (req, fail) = (c.requests.swap(0, Relaxed), c.failures.swap(0, Relaxed));
            let retries = c.retries.swap(0, Relaxed);
            if req | fail | retries != 0 {
                r.requests.fetch_add(req, Relaxed);
                r.failures.fetch_add(fail, Relaxed);
                r.retries.fetch_add(retries, Relaxed);
            }
            // Connections of a dead process are gone: the gauge is not carried over, and
            // they leave the node's count.
            let gone = c.active.swap(0, Relaxed);
            if gone != 0 {
                let node = &self.health(s).active;
                let _ = node.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(gone)));
            }
        }
    }

    /// Takes one retry from upstream `slot`'s budget: retries may be `percent` of its
    /// requests in the current window (at least `BUDGET_MIN_RETRIES`), counted over the
    /// node. Returns false when the budget is spent, so retries cannot multiply an outage.
    pub fn take_retry(&self, slot: u32, percent: u32, now_ms: u64) -> bool {
        let h = self.health(slot);
        let requests = || {
            (0..=self.blocks)
                .map(|b| self.counters(b, slot).requests.load(Relaxed))
                .sum::<u64>()
        };
        let start = h.window_start.load(Relaxed);
        if now_ms.saturating_sub(start) >= BUDGET_WINDOW_MS
            && h.window_start
                .compare_exchange(start, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            h.window_base.store(requests(), Relaxed);
            h.window_retries.store(0, Relaxed);
        }
        let in_window = requests().saturating_sub(h.window_base.load(Relaxed));
        let allowed = (in_window * percent as u64 / 100).max(BUDGET_MIN_RETRIES);
        h.window_retries
            .fetch_update(Relaxed, Relaxed, |r| {
                ((r as u64) < allowed).then_some(r + 1)
            })
            .is_ok()
    }

    /// Forgets everything about `slot` (master only, when the directory gives it to a new
    /// name no live generation knows).
    pub(crate) fn clear(&self, slot: u32) {
        for b in 0..=self.blocks {
            let c = self.counters(b, slot);
            c.requests.store(0, Relaxed);
            c.failures.store(0, Relaxed);
            c.active.store(0, Relaxed);
            c.retries.store(0, Relaxed);
        }
        let h = self.health(slot);
        h.down_until.store(0, Relaxed);
        h.fails.store(0, Relaxed);
        h.ejections.store(0, Relaxed);
        h.active.store(0, Relaxed);
        h.checked.store(Checked::Unknown as u32, Relaxed);
        h.probes.store(0, Relaxed);
        h.streak.store(0, Relaxed);
        h.window_start.store(0, Relaxed);
        h.window_base.store(0, Relaxed);
        h.window_retries.store(0, Relaxed);
        h.address.set(None);
    }
}

/// One worker's counter block: it is the only writer, so updates are plain loads and stores
/// (no locked instruction on the request path).
#[derive(Clone, Copy)]
pub struct Block {
    view: View,
    block: u32,
}

fn bump(a: &AtomicU64, by: i64) {
    a.store(a.load(Relaxed).wrapping_add(by as u64), Relaxed);
}

impl Block {
    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn request(&self, slot: u32) {
        bump(&self.view.counters(self.block, slot).requests, 1);
    }

    pub fn failure(&self, slot: u32) {
        bump(&self.view.counters(self.block, slot).failures, 1);
    }

    pub fn retry(&self, slot: u32) {
        bump(&self.view.counters(self.block, slot).retries, 1);
    }

    pub fn active(&self, slot: u32, by: i64) {
        let node = &self.view.health(slot).active;
        if by >= 0 {
            node.fetch_add(by as u64, Relaxed);
        } else {
            node.fetch_sub(by.unsigned_abs(), Relaxed);
        }
        bump(&self.view.counters(self.block, slot).active, by);
    }
}

impl Health {
    /// Upstream connections carrying an exchange now, over every worker.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    pub fn checked(&self) -> Checked {
        match self.checked.load(Relaxed) {
            1 => Checked::Up,
            2 => Checked::Down,
            _ => Checked::Unknown,
        }
    }

    /// The health check's verdict (helper only); going down counts as an ejection.
    pub fn set_checked(&self, c: Checked) {
        if self.checked.swap(c as u32, Relaxed) != Checked::Down as u32 && c == Checked::Down {
            self.ejections.fetch_add(1, Relaxed);
        }
    }

    pub fn probed(&self) {
        self.probes.fetch_add(1, Relaxed);
    }

    /// One more failure in a row; returns how many now.
    pub fn failed(&self) -> u32 {
        self.fails.fetch_add(1, Relaxed) + 1
    }

    /// Consecutive ejections so far (nonzero: the peer is on trial after its last one).
    pub fn streak(&self) -> u32 {
        self.streak.load(Relaxed)
    }

    /// Whether a worker ejected it and the time is not up (health checks aside).
    pub fn ejected(&self, now_ms: u64) -> bool {
        self.down_until.load(Relaxed) > now_ms
    }

    /// Ejects the peer for `ms(streak)` milliseconds, `streak` counting this ejection; once
    /// for the node even when several workers see the failures at once. Returns the
    /// ejection's length, or None when another worker ejected it first.
    pub fn eject(&self, now_ms: u64, ms: impl Fn(u32) -> u64) -> Option<u64> {
        let was = self.down_until.load(Relaxed);
        if was > now_ms {
            return None;
        }
        let streak = self.streak.load(Relaxed) + 1;
        let len = ms(streak);
        self.down_until
            .compare_exchange(was, now_ms + len, Relaxed, Relaxed)
            .ok()?;
        self.streak.store(streak, Relaxed);
        self.fails.store(0, Relaxed);
        self.ejections.fetch_add(1, Relaxed);
        Some(len)
    }

    /// A new address in this slot: what was known of the old one (ejection, failures, the
    /// health check's verdict) does not apply to it.
    pub fn restart(&self) {
        self.down_until.store(0, Relaxed);
        self.fails.store(0, Relaxed);
        self.streak.store(0, Relaxed);
        self.checked.store(Checked::Unknown as u32, Relaxed);
    }

    /// A success: the failure count and the ejection streak start over.
    pub fn succeeded(&self) {
        if self.fails.load(Relaxed) != 0 {
            self.fails.store(0, Relaxed);
        }
        if self.streak.load(Relaxed) != 0 {
            self.streak.store(0, Relaxed);
        }
    }
}

/// Milliseconds on the system-wide monotonic clock: the same in every process, unlike an
/// `Instant`'s origin.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
