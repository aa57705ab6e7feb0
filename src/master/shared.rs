//! The master's side of the shared memory region (`shm`): made once at start, before any
//! worker; slots for every upstream and peer of each generation's config; one counter block
//! per live worker, folded into the retired totals when the worker is reaped.

use super::Master;
use crate::config::Config;
use crate::shm::{Directory, Region};
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
