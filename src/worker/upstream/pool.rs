//! Idle keep-alive connections to peers, per upstream, oldest first. Connections enter only
//! through `release` (upstream/mod.rs) and leave when taken, closed by the peer, expired, or
//! evicted to make room.

use crate::worker::transport::Transport;
use slab::Slab;
use std::collections::VecDeque;
use std::time::Instant;

/// Who holds an upstream connection now. Upstream sockets are registered once with a
/// token naming their slot in this table, so moving a connection between an exchange and
/// the pool is a table update, not an `epoll_ctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An exchange in flight: stream `stream` of the session in slot `session` (HTTP/1
    /// has one exchange at a time: stream 0; HTTP/2 streams each own their attempt).
    Exchange { session: usize, stream: u32 },
    /// The idle pool, slot `0`.
    Idle(usize),
}

/// An idle upstream connection waiting in the pool.
pub struct IdleConn {
    pub stream: Transport,
    /// Its slot in the owner table (and its token).
    pub conn: usize,
    pub upstream: usize,
    pub peer: usize,
    /// The version of the peer's address it was connected to: a peer given by host name
    /// may have another address by now.
    pub version: u32,
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

    /// The most recently used idle connection to this peer at its address of version
    /// `version` (connections to an address the peer no longer has are left to expire, or
    /// to be evicted first).
    pub fn take(&mut self, upstream: usize, peer: usize, version: u32) -> Option<IdleConn> {
        let q = &mut self.lru[upstream];
        let pos = q.iter().rposition(|&k| {
            let c = &self.conns[k];
            c.peer == peer && c.version == version
        })?;
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

    pub fn drain_all(&mut self) -> Vec<IdleConn> {
        for q in &mut self.lru {
            q.clear();
        }
        self.conns.drain().collect()
    }
}
