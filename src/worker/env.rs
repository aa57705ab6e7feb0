//! The worker's environment: what every layer may read or post to. The event loop owns it
//! and keeps `now` current; sessions, exchanges and upstream drivers borrow it (with the
//! parts of their own layer: `upstream::Upstreams`, `sinks::Sinks`, `exchange::Spare`,
//! which `exchange::Ctx` puts together).

use super::buffer::BufPool;
use super::clock::Clock;
use super::timer::Timers;
use crate::config::Config;
use crate::http::headers::Headers;
use crate::http::request_id::IdGen;
use crate::http::HeaderSpans;
use mio::Registry;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// Where the worker is in its life. Only forward: serving, then draining (a reload or a
/// shutdown), possibly hurried (too many generations draining) or orphaned (the master
/// died); each draining state has the deadline at which what is left is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Serving,
    Draining {
        by: Instant,
    },
    /// Idle connections were closed; what is in flight has until `by` (HURRY_GRACE).
    Hurried {
        by: Instant,
    },
    /// The master is gone: nobody will say more; finish and exit.
    Orphaned {
        by: Instant,
    },
}

impl Life {
    /// When what is left is cut; None while serving.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Life::Serving => None,
            Life::Draining { by } | Life::Hurried { by } | Life::Orphaned { by } => Some(by),
        }
    }
}

/// Memory the codecs fill and hand back on every request, kept so that a keep-alive request
/// allocates nothing.
#[derive(Default)]
pub struct Scratch {
    /// The header list codecs edit.
    pub headers: Headers,
    /// The span list response heads are parsed into.
    pub resp_spans: HeaderSpans,
}

pub struct Env {
    pub cfg: Rc<Config>,
    pub registry: Registry,
    pub timers: Timers,
    pub bufs: BufPool,
    /// The worker's lifecycle (`draining()` is what the layers ask).
    pub life: Life,
    pub now: Instant,
    /// `now` on the system-wide monotonic clock in ms, as shared memory stores times.
    pub now_ms: u64,
    pub clock: Clock,
    /// This worker's counter block in the node's shared memory (and through it, peer
    /// health).
    pub shared: crate::shm::Block,
    /// Makes `$request_id`s.
    pub ids: IdGen,
    /// The server a request on listener i belongs to before its Host is known (computed
    /// once here, not per event).
    pub default_server: Vec<usize>,
    /// Sessions that ran out of budget in `drive` and must run again soon.
    pub again: Vec<(usize, u64)>,
    /// Sessions as they went idle (slot, id, requests served then), oldest first. An entry
    /// is stale unless the session still has that id and count and is idle.
    pub idle: VecDeque<(usize, u64, u64)>,
    next_id: u64,
    pub scratch: Scratch,
}

impl Env {
    pub fn new(cfg: Rc<Config>, registry: Registry, shared: crate::shm::Block) -> Env {
        Env {
            default_server: cfg
                .listeners
                .iter()
                .map(|a| cfg.hosts.lookup(*a, None))
                .collect(),
            cfg,
            registry,
            timers: Timers::default(),
            bufs: BufPool::default(),
            life: Life::Serving,
            now: Instant::now(),
            now_ms: crate::shm::now_ms(),
            clock: Clock::default(),
            shared,
            ids: Default::default(),
            again: Vec::new(),
            idle: VecDeque::new(),
            next_id: 0,
            scratch: Scratch::default(),
        }
    }

    /// No longer serving: keep-alive ends, nothing goes back to the pool.
    pub fn draining(&self) -> bool {
        self.life != Life::Serving
    }

    /// A number no session or idle connection of this worker had before (what timers and
    /// queues match stale entries by).
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn listener_server(&self, listener: usize) -> &crate::config::Server {
        &self.cfg.server[self.default_server[listener]]
    }
}
