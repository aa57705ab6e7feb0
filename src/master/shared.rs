//! The master's side of the shared memory region (`shm`): made once at start, before any
//! worker; slots for every upstream and peer of each generation's config; one counter block
//! per live worker, folded into the retired totals when the worker is reaped.

use super::Master;
use crate::config::Config;
use crate::shm::{self, Directory, Region};
use std::collections::{HashMap, HashSet};

pub(crate) struct Shared {
    pub(super) region: Region,
    free_blocks: Vec<u32>,
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
    pub(super) fn create(cfg: &mut Config) -> Result<Shared, String> {
        let blocks = blocks_for(cfg);
        let region = Region::create(cfg.shared_memory.slots, blocks)
            .map_err(|e| format!("cannot create the shared memory region: {e}"))?;
        let mut s = Shared {
            region,
            // Popped from the end: block 0 first.
            free_blocks: (0..blocks).rev().collect(),
            gen_slots: HashMap::new(),
        };
        s.assign(cfg, 1, &[])?;
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
        let in_use: HashSet<u32> = self.gen_slots.values().flatten().copied().collect();
        let view = self.region.view();
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

    /// The blocks workers hold now.
    pub(super) fn live_blocks(&self) -> Vec<u32> {
        let view = self.region.view();
        (0..view.blocks())
            .filter(|b| !self.free_blocks.contains(b))
            .collect()
    }

    pub(super) fn take_block(&mut self) -> Option<u32> {
        self.free_blocks.pop()
    }

    /// A worker is gone (reaped, or never started): its counters join the retired totals.
    pub(super) fn retire_block(&mut self, block: u32) {
        self.region.view().retire(block);
        self.region.view().retire_worker(block);
        self.free_blocks.push(block);
    }
}

impl Master {
    /// Generations that still have a worker, plus the serving one.
    pub(super) fn live_generations(&self) -> Vec<u64> {
        let mut g: Vec<u64> = self.workers.iter().map(|(_, w)| w.generation).collect();
        g.push(self.generation);
        g.sort_unstable();
        g.dedup();
        g
    }

    /// `proxyctl status` lines for every peer: health and counters over all workers.
    pub(super) fn peer_status(&self) -> String {
        let view = self.shared.region.view();
        let now = shm::now_ms();
        let mut s = String::new();
        for u in &self.cfg.upstream {
            for p in &u.peers {
                let addr = match p.addr {
                    crate::config::PeerAddr::Fixed(_) => String::new(),
                    crate::config::PeerAddr::Named { .. } => match view.address(p.slot) {
                        Some(a) => format!(" {a}"),
                        // A host name's spare entry.
                        None => continue,
                    },
                };
                let t = view.totals(p.slot, now);
                let state = if p.down {
                    "down (config)".to_string()
                } else if t.checked == shm::Checked::Down {
                    "down (health check)".to_string()
                } else if t.down_for_ms > 0 {
                    format!("down ({} ms left)", t.down_for_ms)
                } else {
                    "up".to_string()
                };
                s.push_str(&format!(
                    "peer {}/{}{addr}: {state}, requests {}, failures {}, active {}, ejections {}, consecutive failures {}, probes {}\n",
                    u.name, p.key(), t.requests, t.failures, t.active, t.ejections, t.fails, t.probes
                ));
            }
        }
        s
    }
}
