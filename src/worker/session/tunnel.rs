//! A byte tunnel between a client and an upstream after `101 Switching Protocols`
//! (WebSocket and other upgrades); later also CONNECT and L4 TCP. Each direction is a pump
//! with backpressure (read only while its buffer has room, so a slow reader stops the
//! writer) and its own half-close: the first EOF from one side becomes a FIN to the other
//! once what was read is delivered; the tunnel ends when both directions have ended or it
//! stays idle for `tunnel_timeout`.

use super::Drive;
use crate::worker::buffer::{Buf, BUF_SIZE};
use crate::worker::events::{Conn, Done, Event};
use crate::worker::exchange::Ctx;
use crate::worker::exchange::Exchange;
use crate::worker::timer::Deadline;
use crate::worker::token::Kind;
use crate::worker::transport::PeerIp;
use crate::worker::transport::{would_block, Transport};
use crate::worker::upstream::UpConn;
use std::time::Duration;

/// Rounds of pumping per wakeup before yielding to other connections.
const ROUNDS: usize = 16;

/// One direction of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    /// The source sent EOF: deliver what is buffered, then shut the sink's write side.
    Draining,
    /// FIN passed on (or the sink is gone): nothing more flows this way.
    Ended,
}

/// What moving bytes one way came to.
enum Pump {
    Moved,
    Idle,
    Failed,
}

pub struct Tunnel {
    pub id: u64,
    slot: usize,
    pub client: Transport,
    pub upstream: UpConn,
    pub deadline: Deadline,
    /// Client to upstream, and upstream to client; taken from the pool only while they
    /// hold bytes, so an idle tunnel holds no buffer.
    to_up: Option<Buf>,
    to_client: Option<Buf>,
    c2u: Flow,
    u2c: Flow,
    idle_timeout: Duration,
    peer_ip: PeerIp,
    /// Requests the connection carried, the upgrade included.
    served: u64,
    /// The upgrade request, for the access log line written when the tunnel ends.
    x: Box<Exchange>,
}

impl Tunnel {
    /// Takes over both connections and whatever bytes already arrived past the 101 (from the
    /// upstream) or past the request head (from the client).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        slot: usize,
        client: Transport,
        upstream: UpConn,
        deadline: Deadline,
        to_up: Option<Buf>,
        to_client: Option<Buf>,
        peer_ip: PeerIp,
        served: u64,
        x: Box<Exchange>,
        w: &mut Ctx,
    ) -> Tunnel {
        let mut t = Tunnel {
            id,
            slot,
            client,
            upstream,
            deadline,
            to_up: to_up.map(forward_all),
            to_client: to_client.map(forward_all),
            c2u: Flow::Open,
            u2c: Flow::Open,
            idle_timeout: w.env.cfg.server[x.server].tunnel_timeout,
            peer_ip,
            served,
            x,
        };
        t.touch(w);
        log::debug!("client {}: tunnel open", t.peer_ip);
        t
    }

    fn touch(&mut self, w: &mut Ctx) {
        let key = crate::worker::token::key(self.slot, Kind::Client);
        self.deadline.set(
            w.env.now + self.idle_timeout,
            &mut w.env.timers,
            key,
            self.id,
        );
    }

    pub fn drive(&mut self, w: &mut Ctx) -> Drive {
        let mut moved = false;
        for _ in 0..ROUNDS {
            let (mut ignored, mut sent) = (0, 0);
            let a = pump(
                &mut self.client,
                &mut self.upstream.stream,
                &mut self.to_up,
                &mut self.c2u,
                &mut ignored,
                w,
            );
            let b = pump(
                &mut self.upstream.stream,
                &mut self.client,
                &mut self.to_client,
                &mut self.u2c,
                &mut sent,
                w,
            );
            self.x.bytes_sent += sent;
            self.x.record.wire += sent;
            if let Some(a) = self.x.record.attempts.last_mut() {
                a.received += sent;
            }
            match (a, b) {
                (Pump::Failed, _) | (_, Pump::Failed) => return self.end(w),
                (Pump::Idle, Pump::Idle) => break,
                _ => moved = true,
            }
        }
        if self.c2u == Flow::Ended && self.u2c == Flow::Ended {
            return self.end(w);
        }
        if moved {
            self.touch(w);
        }
        if self.client.ready.r && self.upstream.stream.ready.r {
            // Budget spent with both sides still readable: come back soon.
            w.env.again.push((self.slot, self.id));
        }
        Drive::Keep
    }

    fn end(&mut self, w: &mut Ctx) -> Drive {
        log::debug!("client {}: tunnel closed", self.peer_ip);
        self.release_all(w);
        Drive::Close
    }

    pub fn on_timeout(&mut self, w: &mut Ctx) {
        log::info!(
            "client {}: tunnel idle for {:?}, closing",
            self.peer_ip,
            self.idle_timeout
        );
        self.release_all(w);
    }

    /// Writes the access-log line (status 101, bytes sent to the client in all) and gives
    /// back buffers and the upstream connection. Safe to call twice.
    pub fn release_all(&mut self, w: &mut Ctx) {
        if self.x.status != 0 {
            let conn = Conn {
                id: self.id,
                requests: self.served,
                client: &self.peer_ip,
                transport: &self.client,
            };
            w.emit(Event::Done(Done::of(self.x.facts(), conn, 101)));
            self.x.status = 0;
        }
        for b in [self.to_up.take(), self.to_client.take()]
            .into_iter()
            .flatten()
        {
            w.env.bufs.put(b);
        }
        w.ups.upconns.try_remove(self.upstream.conn);
    }
}

/// Marks every byte a buffer holds as ready to send (tunnel bytes carry no framing).
fn forward_all(mut b: Buf) -> Buf {
    let n = b.unparsed().len();
    b.pass(n);
    b
}

/// Moves bytes from `src` to `dst` through `slot`'s buffer, as far as both allow, adding
/// what it wrote to `written`.
fn pump(
    src: &mut Transport,
    dst: &mut Transport,
    slot: &mut Option<Buf>,
    flow: &mut Flow,
    written: &mut u64,
    w: &mut Ctx,
) -> Pump {
    let mut moved = false;
    if *flow == Flow::Open && src.ready.r {
        let buf = slot.get_or_insert_with(|| w.env.bufs.get(BUF_SIZE));
        if buf.has_room() {
            match src.read_into(buf) {
                Ok(0) => *flow = Flow::Draining,
                Ok(n) => {
                    buf.pass(n);
                    moved = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => return Pump::Failed,
            }
        }
    }
    if let Some(buf) = slot {
        while !buf.pending().is_empty() && dst.ready.w {
            match dst.write_pair(buf.pending(), &[], false) {
                Ok(n) => {
                    buf.consume(n);
                    *written += n as u64;
                    moved = true;
                }
                Err(e) if would_block(&e) => break,
                Err(_) => return Pump::Failed,
            }
        }
        if buf.is_empty() {
            w.env.bufs.put(slot.take().expect("buffer present"));
        }
    }
    // TLS records the last writes left waiting for the socket.
    if dst.pending() && dst.ready.w {
        match dst.flush() {
            Ok(()) => moved = true,
            Err(e) if would_block(&e) => {}
            Err(_) => return Pump::Failed,
        }
    }
    if *flow == Flow::Draining && slot.is_none() && !dst.pending() {
        // Everything read is delivered: pass the half-close on.
        let _ = dst.shutdown_write();
        *flow = Flow::Ended;
        moved = true;
    }
    if moved {
        Pump::Moved
    } else {
        Pump::Idle
    }
}
