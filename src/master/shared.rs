//! The master's side of the shared memory region (`shm`): made once at start, before any
//! worker; slots for every upstream and peer of each generation's config; one counter block
//! per live worker, folded into the retired totals when the worker is reaped.

use super::{upgrade, Master};
use crate::config::Config;
use crate::shm::{Directory, Region};
use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub(crate) struct Shared {
    pub(super) region: Region,
    /// The blocks this master's workers hold. During a binary upgrade the other master's
    /// workers hold blocks of the same region (claimed in the region itself).
    mine: HashSet<u32>,
    /// The slots each generation's config uses (the current one, pending and draining).
    gen_slots: HashMap<u64, HashSet<u32>>,
}

/// Worker blocks for a config: every worker of the serving generation, of a starting one and
/// of every draining generation allowed, with room to spare; fixed at start.
fn blocks_for(cfg: &Config) -> u32 {
    let n = cfg.worker_processes * (cfg.max_draining_generations + 2);
    n.clamp(64, 65536) as u32
}

impl Shared {
    /// The region for a master starting: the one `handed` over by the master this one
    /// upgrades (counters and histograms go on from where they are), else a new one.
    pub(super) fn create(
        cfg: &mut Config,
        handed: Option<OwnedFd>,
        generation: u64,
    ) -> Result<Shared, String> {
        let blocks = blocks_for(cfg);
        let adopted = handed.and_then(|fd| match Region::adopt(fd) {
            Ok(r) => Some(r),
            Err(e) => {
                log::warn!(
                    "upgrade: the old master's shared memory is not adopted ({e}): counters, \
                     histograms and peer health start from zero"
                );
                None
            }
        });
        let fresh = || {
            Region::create(cfg.shared_memory.slots, blocks)
                .map_err(|e| format!("cannot create the shared memory region: {e}"))
        };
        let region = match adopted {
            Some(old)
                if old.view().slots() == cfg.shared_memory.slots
                    && old.view().blocks() >= blocks =>
            {
                let v = old.view();
                crate::notice!(
                    "upgrade: adopted the old master's shared memory ({} slots, {} worker \
                     blocks): counters go on",
                    v.slots(),
                    v.blocks()
                );
                old
            }
            // Resized: what it holds is copied over; the old workers' counts from here on
            // stay in the old region.
            Some(old) => {
                let new = fresh()?;
                let n = new.view().absorb(&old.view());
                log::warn!(
                    "upgrade: the shared memory is resized ({} to {} slots, {} to {} worker \
                     blocks): the totals of {n} names are copied over, and what the old \
                     workers count while they drain is not",
                    old.view().slots(),
                    cfg.shared_memory.slots,
                    old.view().blocks(),
                    blocks
                );
                new
            }
            None => fresh()?,
        };
        let mut s = Shared {
            region,
            mine: HashSet::new(),
            gen_slots: HashMap::new(),
        };
        s.assign(cfg, generation, &[])?;
        Ok(s)
    }

    /// Gives `cfg`'s upstreams and peers their slots for `generation`; `live` are the
    /// generations that still have workers (their slots are not recycled).
    pub(super) fn assign(
        &mut self,
        cfg: &mut Config,
        generation: u64,
        live: &[u64],
    ) -> Result<(), String> {
        self.gen_slots.retain(|g, _| live.contains(g));
        let view = self.region.view();
        // While another master's workers run, the slots of its configs are not known here:
        // no named slot is recycled.
        let in_use: HashSet<u32> = if self.foreign_blocks().is_empty() {
            self.gen_slots.values().flatten().copied().collect()
        } else {
            (0..view.slots())
                .filter(|&s| Directory(&view).taken(s))
                .collect()
        };
        let slots = Directory(&view)
            .assign(&cfg.slot_names(), &in_use)
            .map_err(|e| e.to_string())?;
        cfg.set_slots(&slots);
        self.gen_slots
            .insert(generation, slots.into_iter().collect());
        // What the config's host names resolved to when it was loaded is the node's truth
        // from now on (until the helper resolves them again).
        for u in &cfg.upstream {
            for n in &u.names {
                let slots: Vec<u32> = u.peers[n.peers.clone()].iter().map(|p| p.slot).collect();
                crate::dns::log_placed(&u.name, &n.name, &view.place(&slots, &n.resolved));
            }
        }
        Ok(())
    }

    /// The blocks workers hold now, this master's and (during an upgrade) the other's: the
    /// sums cover both, so a counter never goes back while old workers drain.
    pub(super) fn live_blocks(&self) -> Vec<u32> {
        let view = self.region.view();
        (0..view.blocks())
            .filter(|&b| view.holder(b) != 0)
            .collect()
    }

    /// Blocks held by processes that are not this master's workers.
    fn foreign_blocks(&self) -> Vec<u32> {
        let mut v = self.live_blocks();
        v.retain(|b| !self.mine.contains(b));
        v
    }

    /// Claims a free block for a worker about to be forked (held by this master's pid
    /// until `held_by` names the worker).
    pub(super) fn take_block(&mut self) -> Option<u32> {
        let view = self.region.view();
        let me = std::process::id() as u64;
        let b = (0..view.blocks()).find(|&b| view.claim(b, me))?;
        self.mine.insert(b);
        Some(b)
    }

    /// The worker forked for `block` is `pid`.
    pub(super) fn held_by(&self, block: u32, pid: nix::unistd::Pid) {
        self.region
            .view()
            .worker_stats(block)
            .pid
            .store(pid.as_raw() as u64, std::sync::atomic::Ordering::Release);
    }

    /// A worker is gone (reaped, or never started): its counters join the retired totals.
    pub(super) fn retire_block(&mut self, block: u32) {
        self.region.view().retire(block);
        self.region.view().retire_worker(block);
        self.mine.remove(&block);
    }

    /// Retires the blocks of workers whose master died without retiring them (a new
    /// master killed by a failed upgrade, an old master killed while draining). Only when
    /// no other master is alive, so no block is retired by two masters at once.
    /// Returns whether other processes' blocks remain (to look again later).
    pub(super) fn sweep_orphans(&mut self) -> bool {
        let mut remain = false;
        for b in self.foreign_blocks() {
            let pid = self.region.view().holder(b);
            if exited(pid) {
                log::info!("shared memory: worker block {b} of exited process {pid} retired");
                self.region.view().retire(b);
                self.region.view().retire_worker(b);
            } else {
                remain = true;
            }
        }
        remain
    }
}

impl Master {
    /// After an upgrade (adopted region) or a failed one, once a second until no other
    /// process holds a block, and only while no other master shares the region: retires
    /// the blocks of workers whose master died before it could.
    pub(super) fn sweep_orphans(&mut self) {
        let now = Instant::now();
        if self.sweep_at.is_none_or(|t| t > now) {
            return;
        }
        self.sweep_at = Some(now + Duration::from_secs(1));
        if !matches!(self.upgrade, upgrade::Upgrade::Idle) {
            return;
        }
        if let Some(old) = self.old_master {
            if !exited(old.as_raw() as u64) {
                return;
            }
            self.old_master = None;
        }
        if !self.shared.sweep_orphans() {
            self.sweep_at = None;
        }
    }

    /// Generations that still have a worker, plus the serving one.
    pub(super) fn live_generations(&self) -> Vec<u64> {
        let mut g: Vec<u64> = self.workers.iter().map(|(_, w)| w.generation).collect();
        g.push(self.generation);
        g.sort_unstable();
        g.dedup();
        g
    }

    /// `proxyctl status`'s peer table: health and counters over all workers, from what
    /// the admin API's upstreams say.
    pub(super) fn peer_status(&self) -> String {
        let mut t = crate::text_table::Table::new(&[
            "UPSTREAM",
            "PEER",
            "ADDRESS",
            "STATE",
            ">WEIGHT",
            ">REQUESTS",
            ">FAILURES",
            ">5XX",
            ">ACTIVE",
            ">IDLE",
            ">EJECTIONS",
            ">FAILS",
            ">PROBES",
        ]);
        let mut run_time_weight = false;
        let ups = self.api_upstreams();
        for u in ups["upstreams"].as_array().into_iter().flatten() {
            for p in u["peers"].as_array().into_iter().flatten() {
                let n = |k: &str| p[k].as_u64().unwrap_or(0).to_string();
                let text = |k: &str| p[k].as_str().unwrap_or("?").to_string();
                let state = match p["state"].as_str() {
                    Some("ejected") => format!("ejected ({} ms left)", n("ejected_for_ms")),
                    _ => text("state"),
                };
                let mut weight = n("weight");
                if p["weight_set_at_run_time"] == true {
                    weight.push('*');
                    run_time_weight = true;
                }
                t.row(vec![
                    u["name"].as_str().unwrap_or("?").to_string(),
                    text("peer"),
                    text("address"),
                    state,
                    weight,
                    n("requests"),
                    n("failures"),
                    p["responses"]["5xx"].as_u64().unwrap_or(0).to_string(),
                    n("active"),
                    n("idle"),
                    n("ejections"),
                    n("consecutive_failures"),
                    n("probes"),
                ]);
            }
        }
        if t.is_empty() {
            return String::new();
        }
        let mut s = format!("\n{}", t.render());
        if run_time_weight {
            s.push_str("* weight set through the admin API; the next reload resets it\n");
        }
        s
    }
}

/// Whether process `pid` has exited (a zombie has: nobody reaped it yet, but it runs no
/// more). A pid taken again by another process since is not noticed: its block stays held,
/// and summed, which loses nothing.
fn exited(pid: u64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..))
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => true,
    }
}
