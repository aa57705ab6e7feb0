//! The worker's gauges in shared memory, counted afresh about once a second (when the clock
//! ticks) rather than kept up to date at every phase change: client connections by state,
//! as nginx's stub_status shows them, and idle pooled connections per peer.

use super::Worker;
use std::sync::atomic::Ordering::Relaxed;

/// What a client connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Reading a request head (or a TLS handshake).
    Reading,
    /// Working on a request: proxying, answering, closing, or tunnelling.
    Writing,
    /// Idle between requests.
    Waiting,
}

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
        let b = self.ctx.shared;
        let st = b.stats();
        st.active.store(self.sessions.len() as u64, Relaxed);
        st.reading.store(reading, Relaxed);
        st.writing.store(writing, Relaxed);
        st.waiting.store(waiting, Relaxed);
        st.pid.store(std::process::id() as u64, Relaxed);
        let cfg = &self.ctx.cfg;
        let mut idle = vec![
            0i64;
            cfg.upstream
                .iter()
                .map(|u| u.peers.len())
                .max()
                .unwrap_or(0)
        ];
        for (ui, u) in cfg.upstream.iter().enumerate() {
            idle.iter_mut().for_each(|n| *n = 0);
            for (_, c) in self.ctx.pool.conns.iter().filter(|(_, c)| c.upstream == ui) {
                if let Some(n) = idle.get_mut(c.peer) {
                    *n += 1;
                }
            }
            for (p, n) in u.peers.iter().zip(&idle) {
                b.set_idle(p.slot, *n as u64);
            }
        }
    }
}
