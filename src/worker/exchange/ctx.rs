//! The worker's context as sessions and exchanges see it: the environment every layer
//! shares (`Env`), the upstreams the drivers share, the sinks events go to, and the spare
//! memory requests are recycled through. Each layer below takes only its part: a driver
//! gets `upstream::Cx` (environment and upstreams), the sinks get the environment.

use super::{Exchange, Spare};
use crate::config::Config;
use crate::worker::env::Env;
use crate::worker::events::Event;
use crate::worker::sinks::Sinks;
use crate::worker::upstream::{self, Upstreams};
use mio::Registry;
use std::fs::File;
use std::rc::Rc;

pub struct Ctx {
    pub env: Env,
    pub ups: Upstreams,
    pub sinks: Sinks,
    /// Recycled exchanges and output buffers.
    pub spare: Spare,
}

impl Ctx {
    /// A worker's context for `cfg`: its shared memory block, its access-log files (as the
    /// master opened them), and the registry its connections join.
    pub fn new(
        cfg: Rc<Config>,
        registry: Registry,
        shared: crate::shm::Block,
        access_logs: Vec<Option<File>>,
    ) -> Ctx {
        Ctx {
            ups: Upstreams::new(&cfg.upstream),
            sinks: Sinks::new(&cfg, access_logs),
            env: Env::new(cfg, registry, shared),
            spare: Spare::default(),
        }
    }

    /// What an upstream driver is given.
    pub fn up(&mut self) -> upstream::Cx<'_> {
        upstream::Cx {
            env: &mut self.env,
            ups: &mut self.ups,
        }
    }

    /// Hands an event to every sink.
    pub fn emit(&mut self, ev: Event) {
        self.sinks.emit(&self.env, ev);
    }

    /// An exchange that ended: its upstream driver gives back connection, buffer and
    /// pipe, then its memory is kept for the next request.
    pub fn retire(&mut self, mut x: Box<Exchange>) {
        x.release(self);
        self.spare.put_exchange(x);
    }
}
