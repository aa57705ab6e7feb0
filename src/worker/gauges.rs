//! The worker's gauges in shared memory, counted afresh about once a second (when the clock
//! ticks) rather than kept up to date at every phase change: client connections by state,
//! as nginx's stub_status shows them, and idle pooled connections per peer.

use super::session::ConnState;
use super::Worker;
use std::sync::atomic::Ordering::Relaxed;

impl Worker {
    pub(super) fn publish_gauges(&mut self) {
        let (mut reading, mut writing, mut waiting) = (0u64, 0u64, 0u64);
        for (_, s) in self.sessions.iter() {
            match s.state() {
                ConnState::Reading => reading += 1,
                ConnState::Writing => writing += 1,
                ConnState::Waiting => waiting += 1,
            }
        }
        let b = self.ctx.env.shared;
        let st = b.stats();
        st.active.store(self.sessions.len() as u64, Relaxed);
        st.reading.store(reading, Relaxed);
        st.writing.store(writing, Relaxed);
        st.waiting.store(waiting, Relaxed);
        st.pid.store(std::process::id() as u64, Relaxed);
        // Idle pooled connections per peer: one pass over the pool, then one store per peer.
        let cfg = &self.ctx.env.cfg;
        let mut idle: Vec<Vec<u64>> = cfg
            .upstream
            .iter()
            .map(|u| vec![0; u.peers.len()])
            .collect();
        for (_, c) in self.ctx.ups.pool.conns.iter() {
            if let Some(n) = idle.get_mut(c.upstream).and_then(|u| u.get_mut(c.peer)) {
                *n += 1;
            }
        }
        for (u, counts) in cfg.upstream.iter().zip(&idle) {
            for (p, n) in u.peers.iter().zip(counts) {
                b.set_idle(p.slot, *n);
            }
        }
    }
}
