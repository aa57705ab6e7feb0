//! Per-worker upstream state: the smooth weighted round-robin balancer with passive failure
//! marking, and the pool of idle keep-alive connections to peers.

use super::transport::Transport;
use crate::config::Upstream;
use slab::Slab;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A peer that failed is skipped for this long (nginx `fail_timeout` default).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct PeerState {
    current: i64,
    down_until: Option<Instant>,
}

pub struct Balancer {
    peers: Vec<Vec<PeerState>>,
}

impl Balancer {
    pub fn new(upstreams: &[Upstream]) -> Balancer {
        Balancer {
            peers: upstreams
                .iter()
                .map(|u| vec![PeerState::default(); u.peers.len()])
                .collect(),
        }
    }

    /// Picks a peer of upstream `u` not in `tried`; peers marked down are used only when
    /// every untried peer is down.
    pub fn pick(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        now: Instant,
    ) -> Option<usize> {
        self.pick_inner(ups, u, tried, now, true)
            .or_else(|| self.pick_inner(ups, u, tried, now, false))
    }

    fn pick_inner(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        now: Instant,
        skip_down: bool,
    ) -> Option<usize> {
        let states = &mut self.peers[u];
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, p) in ups[u].peers.iter().enumerate() {
            if tried.contains(&i) || (skip_down && states[i].down_until.is_some_and(|t| t > now)) {
                continue;
            }
            states[i].current += p.weight as i64;
            total += p.weight as i64;
            if best.is_none_or(|b| states[i].current > states[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        states[b].current -= total;
        Some(b)
    }

    pub fn failed(&mut self, u: usize, peer: usize, now: Instant) {
        self.peers[u][peer].down_until = Some(now + FAIL_TIMEOUT);
    }

    pub fn succeeded(&mut self, u: usize, peer: usize) {
        self.peers[u][peer].down_until = None;
    }
}

/// Who holds an upstream connection now. Upstream sockets are registered once with a
/// token naming their slot in this table, so moving a connection between a session and the
/// pool is a table update, not an `epoll_ctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Session(usize),
    Idle(usize),
}

/// An idle upstream connection waiting in the pool.
pub struct IdleConn {
    pub stream: Transport,
    /// Its slot in the owner table (and its token).
    pub conn: usize,
    pub upstream: usize,
    pub peer: usize,
    pub requests: u64,
    pub id: u64,
    pub expires: Instant,
}

/// Idle connections per upstream, oldest first; the slab key is their token slot.
#[derive(Default)]
pub struct Pool {
    pub conns: Slab<IdleConn>,
    lru: Vec<VecDeque<usize>>,
}

impl Pool {
    pub fn new(n_upstreams: usize) -> Pool {
        Pool {
            conns: Slab::new(),
            lru: vec![VecDeque::new(); n_upstreams],
        }
    }

    /// The most recently used idle connection to this peer.
    pub fn take(&mut self, upstream: usize, peer: usize) -> Option<IdleConn> {
        let q = &mut self.lru[upstream];
        let pos = q.iter().rposition(|&k| self.conns[k].peer == peer)?;
        let key = q.remove(pos)?;
        Some(self.conns.remove(key))
    }

    /// Adds a connection; returns its key and the connection evicted to make room, if any.
    pub fn put(&mut self, conn: IdleConn, max: usize) -> (usize, Option<IdleConn>) {
        let u = conn.upstream;
        let evicted = if self.lru[u].len() >= max {
            self.lru[u].pop_front().map(|k| self.conns.remove(k))
        } else {
            None
        };
        let key = self.conns.insert(conn);
        self.lru[u].push_back(key);
        (key, evicted)
    }

    /// Removes a connection that closed or expired while idle.
    pub fn remove(&mut self, key: usize) -> Option<IdleConn> {
        let c = self.conns.try_remove(key)?;
        self.lru[c.upstream].retain(|&k| k != key);
        Some(c)
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn drain_all(&mut self) -> Vec<IdleConn> {
        for q in &mut self.lru {
            q.clear();
        }
        self.conns.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;

    fn ups(weights: &[u32]) -> Vec<Upstream> {
        vec![Upstream {
            name: "u".into(),
            peers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Peer {
                    name: format!("p{i}"),
                    addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    weight: w,
                })
                .collect(),
            keepalive: 1,
            keepalive_timeout: Duration::from_secs(1),
            keepalive_requests: 1,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        }]
    }

    #[test]
    fn smooth_weighted_round_robin() {
        let u = ups(&[5, 1, 1]);
        let mut b = Balancer::new(&u);
        let now = Instant::now();
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&u, 0, &[], now).unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        b.failed(0, 0, now);
        assert_ne!(b.pick(&u, 0, &[], now), Some(0));
        assert_eq!(
            b.pick(&u, 0, &[1, 2], now),
            Some(0),
            "a down peer is used as last resort"
        );
        assert_eq!(b.pick(&u, 0, &[0, 1, 2], now), None);
    }
}
