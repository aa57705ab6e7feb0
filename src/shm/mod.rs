//! The node's shared memory: one region the master makes before forking any worker (a memfd
//! mapped `MAP_SHARED`, so every process sees the same pages), holding atomics only, laid out
//! by offsets (no pointers) behind a versioned header:
//!
//! ```text
//! header | directory: slots x Entry | health: slots x Health
//!        | counter blocks: (blocks + 1) x slots x Counters   (the last block: retired totals)
//!        | worker stats: (blocks + 1) x WorkerStats
//!        | written: (blocks + 1) x slots bits   (which slots' counters a block ever wrote)
//! ```
//!
//! A slot is one named thing (an upstream, a peer); the directory (`directory.rs`, written by
//! the master only) keeps each name's slot across reloads, so health and counters survive a
//! reload, and they live outside every worker, so they survive a worker's crash. Counters are
//! per worker block, one writer each (no locked instructions on the request path); the
//! master folds a dead worker's block into the retired totals so that a sum never goes
//! backwards. Health is written by any worker (and later by the health-check helper) with
//! atomic operations. Pages are only backed when touched, so a large capacity costs address
//! space, not memory; and since reading a page of a memfd backs it as writing does, nobody
//! reads the counters of a slot whose `written` bit is clear in that block: a node of 5,000
//! sites holds counter pages only for what carried traffic, in the blocks of workers that
//! ran.

mod address;
pub mod codes;
mod directory;
mod probes;
mod region;

use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

pub use address::Placed;

pub use directory::{Directory, SlotError};
pub use probes::{ProbeOutcome, ProbeRecord};
pub use region::{Refused, Region};

const MAGIC: [u8; 8] = *b"PROXYDSH";
/// Bumped whenever the layout changes: a region of another layout is never read.
const VERSION: u32 = 6;
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
    /// What an operator said at run time (`PeerAdmin`), and a weight replacing the config's
    /// (0: the config's); both cleared by a reload.
    admin: AtomicU32,
    weight: AtomicU32,
    /// Health-check probes finished, by result, and the last one (see `probes.rs`).
    probes_ok: AtomicU64,
    probes_failed: AtomicU64,
    last_probe: probes::Last,
}

/// A peer's state as the admin API set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAdmin {
    /// As the config and health say.
    Normal = 0,
    /// No new requests; what it carries finishes.
    Drain = 1,
    /// No requests at all, whatever its health.
    Down = 2,
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
    /// Responses by status class, 1xx to 5xx (of a server or route: sent to clients; of an
    /// upstream or peer: received from it).
    classes: [AtomicU64; 5],
    /// Responses by exact status, for the codes of `codes::CODES` (within its class).
    codes: [AtomicU64; codes::CODES.len()],
    /// Bytes received from clients and sent to them.
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Idle pooled connections to a peer (a gauge).
    idle: AtomicU64,
    /// Latency histograms (see `Hist`).
    hist: [Histogram; HISTS],
}

impl Counters {
    /// Every cumulative counter of the slot (not the gauges `active` and `idle`), in one
    /// fixed order: folding, copying and clearing walk this, so none can miss a field.
    fn cumulative(&self) -> impl Iterator<Item = &AtomicU64> {
        [
            &self.requests,
            &self.failures,
            &self.retries,
            &self.bytes_in,
            &self.bytes_out,
        ]
        .into_iter()
        .chain(&self.classes)
        .chain(&self.codes)
        .chain(
            self.hist
                .iter()
                .flat_map(|h| h.buckets.iter().chain([&h.count, &h.sum_us])),
        )
    }
}

/// What a slot's histograms measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hist {
    /// A request, from its head to its last byte (servers, routes).
    Request = 0,
    /// Connecting to a peer (upstreams, peers).
    Connect = 1,
    /// From a try's start to the response head.
    Header = 2,
    /// From a try's start to the response's last byte.
    Response = 3,
}

const HISTS: usize = 4;

// Every part of the region starts at a multiple of 64 (see `View::at`).
const _: () = assert!(std::mem::size_of::<Counters>().is_multiple_of(64));

/// Upper bounds of the histogram buckets, in microseconds (Prometheus `le`, seconds:
/// 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10; +Inf is the count).
pub const BUCKETS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// A latency histogram, non-cumulative per bucket (summed into `le` form when exported).
#[repr(C)]
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram summed over workers: cumulative bucket counts, as Prometheus wants them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistTotals {
    pub le: [u64; 11],
    pub count: u64,
    pub sum_us: u64,
}

/// The request-level totals of a slot over every live worker and the retired ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub classes: [u64; 5],
    /// By `codes::CODES`.
    pub codes: [u64; codes::CODES.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub idle: u64,
    pub hist: [HistTotals; HISTS],
}

/// `WorkerStats` summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    pub accepted: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// One worker's client connections, written by it about once a second (gauges) and as
/// they happen (counters).
#[repr(C, align(64))]
#[derive(Default)]
pub struct WorkerStats {
    pub accepted: AtomicU64,
    /// Requests answered (every access log line).
    pub requests: AtomicU64,
    /// Open client connections, and of them: reading a request head, working on a request
    /// (proxying, answering, tunnelling), idle between requests.
    pub active: AtomicU64,
    pub reading: AtomicU64,
    pub writing: AtomicU64,
    pub waiting: AtomicU64,
    /// The process holding the block: the master that claimed it until its worker runs,
    /// then the worker (0: the block is free). Claimed here, not in a master's memory,
    /// because two masters share the region during a binary upgrade.
    pub pid: AtomicU64,
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

/// Where each part of the region starts (bytes from the base).
struct Layout {
    dir: usize,
    health: usize,
    counters: usize,
    workers: usize,
    written: usize,
    end: usize,
}

/// 64-bit words of one block's `written` bits.
fn words(slots: u32) -> usize {
    (slots as usize).div_ceil(64)
}

fn layout(slots: u32, blocks: u32) -> Layout {
    let (slots_n, blocks_n) = (slots as usize, blocks as usize + 1);
    let dir = std::mem::size_of::<Header>();
    let health = dir + slots_n * std::mem::size_of::<Entry>();
    let counters = health + slots_n * std::mem::size_of::<Health>();
    let workers = counters + blocks_n * slots_n * std::mem::size_of::<Counters>();
    let written = workers + blocks_n * std::mem::size_of::<WorkerStats>();
    let end = written + blocks_n * words(slots) * 8;
    Layout {
        dir,
        health,
        counters,
        workers,
        written,
        end,
    }
}

/// Where the region ends.
fn region_len(slots: u32, blocks: u32) -> usize {
    layout(slots, blocks).end
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
        self.at(
            layout(self.slots, self.blocks).dir,
            slot as usize,
            self.slots as usize,
        )
    }

    pub fn health(&self, slot: u32) -> &Health {
        self.at(
            layout(self.slots, self.blocks).health,
            slot as usize,
            self.slots as usize,
        )
    }

    /// Counters of `slot` in `block` (`blocks()` is the retired totals).
    /// Reading them backs their pages: readers ask `written` first.
    fn counters(&self, block: u32, slot: u32) -> &Counters {
        let i = block as usize * self.slots as usize + slot as usize;
        assert!(slot < self.slots);
        self.at(
            layout(self.slots, self.blocks).counters,
            i,
            (self.blocks as usize + 1) * self.slots as usize,
        )
    }

    /// The word of `block`'s `written` bits holding `slot`'s, and the bit.
    fn written_word(&self, block: u32, slot: u32) -> (&AtomicU64, u64) {
        assert!(slot < self.slots);
        let per = words(self.slots);
        let i = block as usize * per + slot as usize / 64;
        let word = self.at(
            layout(self.slots, self.blocks).written,
            i,
            (self.blocks as usize + 1) * per,
        );
        (word, 1 << (slot % 64))
    }

    /// Whether `block` ever wrote `slot`'s counters since they were last folded or cleared
    /// (when not, they are all zero and their page may not even be backed).
    fn written(&self, block: u32, slot: u32) -> bool {
        let (w, bit) = self.written_word(block, slot);
        w.load(Acquire) & bit != 0
    }

    fn mark_written(&self, block: u32, slot: u32) {
        let (w, bit) = self.written_word(block, slot);
        if w.load(Relaxed) & bit == 0 {
            w.fetch_or(bit, Release);
        }
    }

    fn unmark_written(&self, block: u32, slot: u32) {
        let (w, bit) = self.written_word(block, slot);
        w.fetch_and(!bit, Release);
    }

    /// The counters of `slot` in `block` that hold something: the blocks in `blocks` that
    /// wrote it.
    fn written_in<'a>(
        &'a self,
        slot: u32,
        blocks: impl Iterator<Item = u32> + 'a,
    ) -> impl Iterator<Item = &'a Counters> + 'a {
        blocks
            .filter(move |&b| self.written(b, slot))
            .map(move |b| self.counters(b, slot))
    }

    /// Every block and the retired totals (only their `written` bits are read for slots
    /// they never counted: a few bytes per block, not a page of counters).
    fn counted_blocks(&self) -> impl Iterator<Item = u32> {
        0..=self.blocks
    }

    /// The client-connection stats of worker block `block` (`blocks()`: retired totals).
    pub fn worker_stats(&self, block: u32) -> &WorkerStats {
        self.at(
            layout(self.slots, self.blocks).workers,
            block as usize,
            self.blocks as usize + 1,
        )
    }

    /// Request-level totals of `slot` over the blocks in `live` and the retired totals.
    /// Only the blocks given are read: a free block's pages are never touched.
    pub fn traffic(&self, slot: u32, live: &[u32]) -> Traffic {
        let mut t = Traffic::default();
        let blocks = live.iter().copied().chain(std::iter::once(self.blocks));
        for c in self.written_in(slot, blocks) {
            for (i, v) in c.classes.iter().enumerate() {
                t.classes[i] += v.load(Relaxed);
            }
            for (i, v) in c.codes.iter().enumerate() {
                t.codes[i] += v.load(Relaxed);
            }
            t.bytes_in += c.bytes_in.load(Relaxed);
            t.bytes_out += c.bytes_out.load(Relaxed);
            t.idle += c.idle.load(Relaxed);
            for (h, out) in c.hist.iter().zip(t.hist.iter_mut()) {
                let mut run = 0;
                for (i, n) in h.buckets.iter().enumerate() {
                    run += n.load(Relaxed);
                    out.le[i] += run;
                }
                out.count += h.count.load(Relaxed);
                out.sum_us += h.sum_us.load(Relaxed);
            }
        }
        t
    }

    /// Client connections and requests over the blocks in `live` and the retired totals
    /// (gauges of the retired block are zero).
    pub fn connections(&self, live: &[u32]) -> Connections {
        let mut c = Connections::default();
        for &b in live.iter().chain(std::iter::once(&self.blocks)) {
            let w = self.worker_stats(b);
            c.accepted += w.accepted.load(Relaxed);
            c.requests += w.requests.load(Relaxed);
            c.active += w.active.load(Relaxed);
            c.reading += w.reading.load(Relaxed);
            c.writing += w.writing.load(Relaxed);
            c.waiting += w.waiting.load(Relaxed);
        }
        c
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
        for c in self.written_in(slot, self.counted_blocks()) {
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
        // Only slots this block wrote: touching the others would back their pages.
        for s in (0..self.slots).filter(|&s| self.written(block, s)) {
            let c = self.counters(block, s);
            self.mark_written(self.blocks, s);
            let r = self.counters(self.blocks, s);
            // Every field, whatever else the block counted: its `written` bit is cleared
            // below, and what stayed behind would surface under the slot's next name.
            for (from, to) in c.cumulative().zip(r.cumulative()) {
                let v = from.swap(0, Relaxed);
                if v != 0 {
                    to.fetch_add(v, Relaxed);
                }
            }
            c.idle.store(0, Relaxed);
            // Connections of a dead process are gone: the gauge is not carried over, and
            // they leave the node's count.
            let gone = c.active.swap(0, Relaxed);
            if gone != 0 {
                let node = &self.health(s).active;
                let _ = node.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(gone)));
            }
            self.unmark_written(block, s);
        }
    }

    /// Folds a dead worker's connection counters into the retired ones (its gauges end
    /// with it). Master only, after the reap.
    pub fn retire_worker(&self, block: u32) {
        let (w, r) = (self.worker_stats(block), self.worker_stats(self.blocks));
        r.accepted.fetch_add(w.accepted.swap(0, Relaxed), Relaxed);
        r.requests.fetch_add(w.requests.swap(0, Relaxed), Relaxed);
        for g in [&w.active, &w.reading, &w.writing, &w.waiting] {
            g.store(0, Relaxed);
        }
        // Last: once free, another master may claim it.
        w.pid.store(0, Release);
    }

    /// Claims free worker block `block` for process `holder`; false when some process holds
    /// it (the other master's worker, during a binary upgrade).
    pub fn claim(&self, block: u32, holder: u64) -> bool {
        self.worker_stats(block)
            .pid
            .compare_exchange(0, holder, Acquire, Relaxed)
            .is_ok()
    }

    /// The process holding `block` (0: free).
    pub fn holder(&self, block: u32) -> u64 {
        self.worker_stats(block).pid.load(Acquire)
    }

    /// Takes one retry from upstream `slot`'s budget: retries may be `percent` of its
    /// requests in the current window (at least `BUDGET_MIN_RETRIES`), counted over the
    /// node. Returns false when the budget is spent, so retries cannot multiply an outage.
    pub fn take_retry(&self, slot: u32, percent: u32, now_ms: u64) -> bool {
        let h = self.health(slot);
        let requests = || {
            self.written_in(slot, self.counted_blocks())
                .map(|c| c.requests.load(Relaxed))
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
        let blocks: Vec<u32> = self
            .counted_blocks()
            .filter(|&b| self.written(b, slot))
            .collect();
        for b in blocks {
            self.unmark_written(b, slot);
            let c = self.counters(b, slot);
            for v in c.cumulative().chain([&c.active, &c.idle]) {
                v.store(0, Relaxed);
            }
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
        h.admin.store(0, Relaxed);
        h.weight.store(0, Relaxed);
        h.probes_ok.store(0, Relaxed);
        h.probes_failed.store(0, Relaxed);
        h.last_probe.clear();
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

    /// This block's counters of `slot`, marked written (once) so that readers look at them.
    fn mine(&self, slot: u32) -> &Counters {
        self.view.mark_written(self.block, slot);
        self.view.counters(self.block, slot)
    }

    pub fn request(&self, slot: u32) {
        bump(&self.mine(slot).requests, 1);
    }

    pub fn failure(&self, slot: u32) {
        bump(&self.mine(slot).failures, 1);
    }

    pub fn retry(&self, slot: u32) {
        bump(&self.mine(slot).retries, 1);
    }

    /// A response with `status` (of a server or route: sent; of an upstream or peer: got).
    pub fn status(&self, slot: u32, status: u16) {
        let c = self.mine(slot);
        if let Some(i) = codes::class(status) {
            bump(&c.classes[i], 1);
        }
        if let Some(i) = codes::index(status) {
            bump(&c.codes[i], 1);
        }
    }

    pub fn bytes(&self, slot: u32, received: u64, sent: u64) {
        let c = self.mine(slot);
        bump(&c.bytes_in, received as i64);
        bump(&c.bytes_out, sent as i64);
    }

    /// One observation of `d` in histogram `h` of `slot`.
    pub fn observe(&self, slot: u32, h: Hist, d: std::time::Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let hist = &self.mine(slot).hist[h as usize];
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            bump(&hist.buckets[i], 1);
        }
        bump(&hist.count, 1);
        bump(&hist.sum_us, us as i64);
    }

    /// This worker's idle pooled connections to the peer in `slot`.
    pub fn set_idle(&self, slot: u32, n: u64) {
        if n == 0 && !self.view.written(self.block, slot) {
            return;
        }
        let idle = &self.mine(slot).idle;
        if idle.load(Relaxed) != n {
            idle.store(n, Relaxed);
        }
    }

    /// This worker's connection stats.
    pub fn stats(&self) -> &WorkerStats {
        self.view.worker_stats(self.block)
    }

    pub fn active(&self, slot: u32, by: i64) {
        let node = &self.view.health(slot).active;
        if by >= 0 {
            node.fetch_add(by as u64, Relaxed);
        } else {
            node.fetch_sub(by.unsigned_abs(), Relaxed);
        }
        bump(&self.mine(slot).active, by);
    }
}

impl Health {
    pub fn admin(&self) -> PeerAdmin {
        match self.admin.load(Relaxed) {
            1 => PeerAdmin::Drain,
            2 => PeerAdmin::Down,
            _ => PeerAdmin::Normal,
        }
    }

    pub fn set_admin(&self, a: PeerAdmin) {
        self.admin.store(a as u32, Relaxed);
    }

    /// The weight set at run time, if any.
    pub fn weight(&self) -> Option<u32> {
        Some(self.weight.load(Relaxed)).filter(|w| *w != 0)
    }

    pub fn set_weight(&self, w: Option<u32>) {
        self.weight.store(w.unwrap_or(0), Relaxed);
    }

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
