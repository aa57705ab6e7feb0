//! Layer 3: one client connection, whatever protocol it speaks now. The protocol is an enum
//! upgraded by ownership (Sozu style): an `Http1` session whose upstream answered 101 is
//! taken out whole and turned into a `Tunnel`, so no half-moved state can exist. The event
//! loop sees only `Session`.

pub mod http1;
pub mod tunnel;

use super::exchange::Ctx;
use super::timer::Deadline;
use super::transport::Transport;
use http1::Http1;
use std::net::SocketAddr;
use std::time::Instant;
use tunnel::Tunnel;

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

/// What a round of driving a protocol decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Keep the connection; wait for events.
    Keep,
    /// Close it now.
    Close,
    /// HTTP/1 switched protocols: become a tunnel.
    Upgrade,
}

enum Proto {
    Http1(Box<Http1>),
    Tunnel(Box<Tunnel>),
    /// Only while `upgrade` moves the connection from one protocol to the next (not to be
    /// taken for HTTP/1's `Phase::Switching`, which writes the 101).
    Replacing,
}

pub struct Session {
    pub id: u64,
    proto: Proto,
}

impl Session {
    pub fn new(
        id: u64,
        slot: usize,
        client: Transport,
        addr: SocketAddr,
        listener: usize,
    ) -> Session {
        Session {
            id,
            proto: Proto::Http1(Box::new(Http1::new(id, slot, client, addr, listener))),
        }
    }

    pub fn deadline(&mut self) -> &mut Deadline {
        match &mut self.proto {
            Proto::Http1(h) => &mut h.deadline,
            Proto::Tunnel(t) => &mut t.deadline,
            Proto::Replacing => unreachable!("no session is left switching"),
        }
    }

    pub fn deadline_armed_at(&self, at: Instant) -> bool {
        match &self.proto {
            Proto::Http1(h) => h.deadline.is_armed_at(at),
            Proto::Tunnel(t) => t.deadline.is_armed_at(at),
            Proto::Replacing => false,
        }
    }

    /// An idle keep-alive connection (closed first when connections run short), with the
    /// number of requests it has served (tells one idle spell from the next).
    pub fn idle_since(&self) -> Option<u64> {
        match &self.proto {
            Proto::Http1(h) if h.is_idle() => Some(h.served),
            _ => None,
        }
    }

    /// What it is doing, for the worker's gauges.
    pub fn state(&self) -> ConnState {
        match &self.proto {
            Proto::Http1(h) if h.is_idle() => ConnState::Waiting,
            Proto::Http1(h) if h.phase == http1::Phase::Head => ConnState::Reading,
            _ => ConnState::Writing,
        }
    }

    pub fn served(&self) -> u64 {
        match &self.proto {
            Proto::Http1(h) => h.served,
            _ => 0,
        }
    }

    /// The deadline for the first request head of a new connection.
    pub fn start(&mut self, head_by: Instant, w: &mut Ctx) {
        if let Proto::Http1(h) = &mut self.proto {
            h.start(head_by, w);
        }
    }

    pub fn client_event(&mut self, readable: bool, writable: bool, hup: bool) {
        match &mut self.proto {
            Proto::Http1(h) => h.client.ready.on_event(readable, writable, hup),
            Proto::Tunnel(t) => t.client.ready.on_event(readable, writable, hup),
            Proto::Replacing => {}
        }
    }

    /// An event for the upstream connection of the session's exchange `stream`.
    pub fn upstream_event(&mut self, stream: u32, readable: bool, writable: bool, hup: bool) {
        match &mut self.proto {
            Proto::Http1(h) => h.upstream_event(stream, readable, writable, hup),
            Proto::Tunnel(t) => t.upstream.stream.ready.on_event(readable, writable, hup),
            Proto::Replacing => {}
        }
    }

    /// Makes all the progress possible now. Returns false when the session must be closed.
    pub fn drive(&mut self, w: &mut Ctx) -> bool {
        loop {
            let d = match &mut self.proto {
                Proto::Http1(h) => h.drive(w),
                Proto::Tunnel(t) => t.drive(w),
                Proto::Replacing => Drive::Close,
            };
            match d {
                Drive::Keep => return true,
                Drive::Close => return false,
                Drive::Upgrade => self.upgrade(w),
            }
        }
    }

    /// The one place a protocol changes: take the HTTP/1 session out, build the tunnel.
    fn upgrade(&mut self, w: &mut Ctx) {
        self.proto = match std::mem::replace(&mut self.proto, Proto::Replacing) {
            Proto::Http1(h) => match h.into_tunnel(w) {
                Some(t) => Proto::Tunnel(Box::new(t)),
                None => Proto::Replacing,
            },
            other => other,
        };
    }

    /// The session's deadline passed. Returns false when it must be closed.
    pub fn on_timeout(&mut self, w: &mut Ctx) -> bool {
        match &mut self.proto {
            Proto::Http1(h) => h.on_timeout(w) && self.drive(w),
            Proto::Tunnel(t) => {
                t.on_timeout(w);
                false
            }
            Proto::Replacing => false,
        }
    }

    /// Returns buffers and upstream connections before the session is dropped.
    pub fn release_all(&mut self, w: &mut Ctx) {
        match &mut self.proto {
            Proto::Http1(h) => h.abort(w),
            Proto::Tunnel(t) => t.release_all(w),
            Proto::Replacing => {}
        }
    }

    /// Draining: HTTP/1 answers what is in flight with `Connection: close`; a tunnel stays
    /// until it ends or the shutdown timeout.
    pub fn start_drain(&mut self, w: &mut Ctx) {
        if let Proto::Http1(h) = &mut self.proto {
            h.start_drain(w);
        }
    }
}
