//! An HTTP/1.x client connection: request heads, one exchange at a time (proxied or
//! answered here), request body framing, writing the response (head, then what the
//! exchange's body offers: bytes or a pipe), keep-alive, lingering close. A proxied
//! exchange takes one `step` per round of `drive`, between reading the client and writing
//! to it. The upstream side
//! is the exchange's (`exchange::proxy`, `upstream::Driver`); a successful upgrade hands
//! the client and the exchange's upstream connection to a `Tunnel`.
//!
//! Readiness is tracked per transport (mio is edge-triggered): a flag is set by an event and
//! cleared when the kernel has no more (see `transport`). `drive` then makes every move the
//! phase and buffers allow until none is left, so interest never has to be toggled by hand.
//! Phases change in few places: `start_request` (to Proxy or Local), `respond_error` (to
//! Local),
//! `end_exchange` (back to Head, or to Linger), and on a 101 `on_next` (to Switching)
//! then `step_switching` (to Upgraded, which `Session` turns into a `Tunnel`).

mod proxy;

use super::tunnel::Tunnel;
use super::Drive;
use crate::config::Config;
use crate::http::{local, request};
use crate::worker::buffer::{Buf, BUF_SIZE};
use crate::worker::events::{Conn, Context, Done, Event};
use crate::worker::exchange::Ctx;
use crate::worker::exchange::{Arrival, Begin, Exchange};
use crate::worker::output::Output;
use crate::worker::timer::Deadline;
use crate::worker::token::Kind;
use crate::worker::transport::PeerIp;
use crate::worker::transport::{would_block, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Rounds of `drive` per wakeup before yielding to other connections.
const MAX_ROUNDS: usize = 64;
/// How long a closing connection keeps reading so unread input does not turn into a reset
/// that destroys the response in flight (nginx `lingering_timeout`).
const LINGER: Duration = Duration::from_secs(2);
/// How long a draining worker keeps an idle keep-alive connection open, so a client that
/// is about to send its next request gets it answered (with `Connection: close`).
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (or reading) a request head; idle keep-alive when nothing is buffered.
    Head,
    /// Talking to an upstream for the current request.
    Proxy,
    /// Writing a response made here (fixed route or error page).
    Local,
    /// Response done, write side shut; reading until the client closes.
    Linger,
    /// The upstream switched protocols: writing the 101 to the client.
    Switching,
    /// The 101 went out: the session becomes a tunnel.
    Upgraded,
}

/// The session must be closed now.
pub struct Close;

/// What a write to the client left of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// Bytes wait for the client's socket.
    Waiting,
    /// All that was offered went; the body has more to come.
    More,
    /// The whole response went.
    Nothing,
}

pub(crate) type Step = Result<bool, Close>;

pub struct Http1 {
    pub id: u64,
    pub(crate) slot: usize,
    pub(crate) client: Transport,
    pub(crate) peer_ip: PeerIp,
    pub(crate) listener: usize,
    pub phase: Phase,
    /// Request bytes: heads, then body bytes framed for the upstream (`pending()`).
    pub(crate) req_buf: Option<Buf>,
    /// Response bytes made here: a head (the body follows from the exchange), or a whole
    /// local response.
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    pub(crate) x: Option<Box<Exchange>>,
    pub(crate) served: u64,
    /// The request head being read must be complete by then: a deadline for the whole head,
    /// not reset by each byte (slowloris).
    pub(crate) head_by: Option<Instant>,
    pub deadline: Deadline,
}

impl Http1 {
    pub fn new(
        id: u64,
        slot: usize,
        client: Transport,
        addr: SocketAddr,
        listener: usize,
    ) -> Http1 {
        Http1 {
            id,
            slot,
            client,
            peer_ip: PeerIp::new(addr.ip(), addr.port()),
            listener,
            phase: Phase::Head,
            req_buf: None,
            out: Vec::new(),
            out_pos: 0,
            x: None,
            served: 0,
            head_by: None,
            deadline: Default::default(),
        }
    }

    /// The connection, as events tell it.
    pub(crate) fn conn(&self) -> Conn<'_> {
        Conn {
            id: self.id,
            requests: self.served,
            client: &self.peer_ip,
            transport: &self.client,
        }
    }

    /// Where an error-log line about the current request ends (see `events::Context`).
    pub(crate) fn context<'a>(&'a self, cfg: &'a Config) -> Context<'a> {
        match self.x.as_deref() {
            Some(x) => Context::of(cfg, &self.peer_ip, x.facts()),
            None => Context {
                cfg,
                client: &self.peer_ip,
                req: None,
                server: 0,
                upstream: None,
                peer: None,
                request_id: "",
            },
        }
    }

    /// Idle keep-alive: between requests with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Head
            && self.served > 0
            && self.req_buf.as_ref().is_none_or(|b| b.is_empty())
    }

    /// An event for the upstream connection of the exchange in flight (HTTP/1 has one at a
    /// time: stream 0).
    pub fn upstream_event(&mut self, _stream: u32, readable: bool, writable: bool, hup: bool) {
        if let Some(x) = &mut self.x {
            x.upstream_event(readable, writable, hup);
        }
    }

    /// A new connection: its first head must be complete by `head_by`.
    pub fn start(&mut self, head_by: Instant, w: &mut Ctx) {
        self.head_by = Some(head_by);
        self.set_deadline(w, head_by);
    }

    /// Makes all the progress possible now.
    pub fn drive(&mut self, w: &mut Ctx) -> Drive {
        let mut moved = false;
        let shaking = self.client.handshaking();
        // TLS records waiting for the socket (a handshake's answer, the tail of a response):
        // out first, whatever the phase.
        if self.client.pending() && self.client.ready.w {
            match self.client.flush() {
                Ok(()) => moved = true,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    self.abort(w);
                    return Drive::Close;
                }
            }
        }
        for _ in 0..MAX_ROUNDS {
            let before = self.phase;
            let step = match self.phase {
                Phase::Head => self.step_head(w),
                Phase::Proxy => self.step_proxy(w),
                Phase::Local => self.step_local(w),
                Phase::Linger => self.step_linger(),
                Phase::Switching => self.step_switching(),
                Phase::Upgraded => return Drive::Upgrade,
            };
            match step {
                Err(Close) => {
                    self.abort(w);
                    return Drive::Close;
                }
                Ok(true) => moved = true,
                Ok(false) => {
                    // The handshake had its own deadline (`handshake_timeout`); the first
                    // head's starts now, the server SNI chose saying how long it is.
                    let shook = shaking && !self.client.handshaking() && self.served == 0;
                    if shook {
                        let srv = self.client.tls_info().map_or(0, |t| t.server);
                        self.head_by =
                            Some(w.env.now + w.env.cfg.server[srv].client_header_timeout);
                    }
                    if moved || shook || before != self.phase {
                        self.arm_timer(w);
                    }
                    return Drive::Keep;
                }
            }
        }
        // Out of budget: come back after other connections had their turn.
        self.arm_timer(w);
        w.env.again.push((self.slot, self.id));
        Drive::Keep
    }

    pub(crate) fn arm_timer(&mut self, w: &mut Ctx) {
        let cfg = w.env.cfg.clone();
        let now = w.env.now;
        let at = match self.phase {
            Phase::Head => {
                let srv = w.env.listener_server(self.listener);
                if !self.is_idle() {
                    *self.head_by.get_or_insert(now + srv.client_header_timeout)
                } else if w.env.draining() {
                    now + DRAIN_IDLE.min(srv.keepalive_timeout)
                } else {
                    now + srv.keepalive_timeout
                }
            }
            Phase::Proxy => match self.proxy_deadline(&cfg, now) {
                Some(at) => at,
                None => return,
            },
            Phase::Local | Phase::Switching => {
                let srv = self.x.as_ref().map(|x| x.server).unwrap_or(0);
                now + cfg.server[srv].send_timeout
            }
            Phase::Linger | Phase::Upgraded => return,
        };
        self.set_deadline(w, at);
    }

    fn set_deadline(&mut self, w: &mut Ctx, at: Instant) {
        let key = crate::worker::token::key(self.slot, Kind::Client);
        self.deadline.set(at, &mut w.env.timers, key, self.id);
    }

    /// The session's deadline passed. Returns whether it lives on (then drive it).
    pub fn on_timeout(&mut self, w: &mut Ctx) -> bool {
        match self.phase {
            Phase::Head if self.client.handshaking() => {
                log::info!("client {} timed out in the TLS handshake", self.peer_ip);
                self.abort(w);
                false
            }
            // Part of a head arrived but not all of it in time: 408 (an idle or silent
            // connection is just closed).
            Phase::Head
                if !self.is_idle() && self.req_buf.as_ref().is_some_and(|b| !b.is_empty()) =>
            {
                log::info!("client {} timed out sending its request head", self.peer_ip);
                let _ = self.reject(w, 408);
                true
            }
            Phase::Head | Phase::Local | Phase::Linger | Phase::Switching | Phase::Upgraded => {
                self.abort(w);
                false
            }
            Phase::Proxy => self.proxy_timeout(w),
        }
    }

    /// Returns the session's buffers, and its exchange's upstream connection, before it
    /// is dropped.
    pub fn release_all(&mut self, w: &mut Ctx) {
        if let Some(b) = self.req_buf.take() {
            w.env.bufs.put(b);
        }
        if let Some(x) = &mut self.x {
            x.release(w);
        }
    }

    // ---- request head -------------------------------------------------------------

    fn step_head(&mut self, w: &mut Ctx) -> Step {
        let srv = w.env.listener_server(self.listener);
        let limit = srv.client_header_buffer_size;
        let limits = srv.limits();
        if let Some(buf) = &self.req_buf {
            if !buf.is_empty() {
                let mut x = w.spare.exchange(w.env.now);
                let parsed = request::parse_into(buf.held(), &limits, &mut x.req);
                let full = buf.held().len() >= limit;
                match parsed {
                    Ok(true) => {
                        self.head_by = None;
                        self.start_request(x, w)?;
                        return Ok(true);
                    }
                    Ok(false) => {
                        w.retire(x);
                        if full {
                            return self.reject(w, 431);
                        }
                    }
                    Err(e) => {
                        w.retire(x);
                        return self.reject(w, e.status());
                    }
                }
            }
        }
        if !self.client.ready.r {
            return Ok(false);
        }
        let buf = match self.req_buf.take() {
            // A head that outgrew its buffer moves to a bigger one, up to the limit.
            Some(b) if !b.has_room() => {
                let bigger = w.env.bufs.get(limit.min(BUF_SIZE.max(b.capacity() * 2)));
                self.req_buf.insert(b.grow(bigger, &mut w.env.bufs))
            }
            Some(b) => self.req_buf.insert(b),
            None => self.req_buf.insert(w.env.bufs.get_small()),
        };
        match self.client.read_into(buf) {
            Ok(0) if !buf.has_room() => Ok(true),
            Ok(0) => Err(Close),
            Ok(_) => Ok(true),
            Err(e) if would_block(&e) => {
                if buf.is_empty() {
                    w.env.bufs.put(self.req_buf.take().expect("buffer present"));
                }
                Ok(false)
            }
            // Only TLS says InvalidData: a failed handshake, plain HTTP on a TLS port, a
            // corrupt record. The client's problem, worth a line at info.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                log::info!("TLS error from client {}: {e}", self.peer_ip);
                Err(Close)
            }
            Err(_) => Err(Close),
        }
    }

    /// A request head that cannot be served: answer with `status` and close.
    fn reject(&mut self, w: &mut Ctx, status: u16) -> Step {
        if let Some(b) = self.req_buf.take() {
            w.env.bufs.put(b);
        }
        if let Some(x) = self.x.take() {
            w.retire(x);
        }
        let page = local::error_page(status);
        let mut fields = std::mem::take(&mut w.env.scratch.headers);
        fields.fill_pairs(&local::error_headers());
        local::own_fields(&mut fields, &w.env.clock.http_date);
        self.out.clear();
        self.out_pos = 0;
        local::write(
            status,
            &fields,
            b"",
            &page,
            false,
            local::Connection::Close,
            &mut self.out,
        );
        w.env.scratch.headers = fields;
        self.phase = Phase::Local;
        w.emit(Event::Done(Done {
            conn: self.conn(),
            x: None,
            server: w.env.default_server[self.listener],
            status,
            bytes: page.len() as u64,
            sent: self.out.len() as u64,
        }));
        Ok(true)
    }

    /// Answers the request in flight with an error page and switches to writing it; its
    /// upstream attempt, if any, is dropped.
    pub(crate) fn respond_error(&mut self, w: &mut Ctx, status: u16, close: bool) {
        let cfg = w.env.cfg.clone();
        let Some(mut x) = self.x.take() else {
            let _ = self.reject(w, status);
            return;
        };
        x.release(w);
        // Interim heads not yet written (a 103 half out) go before the page, whole: what
        // went is dropped, what did not stays.
        self.out.drain(..self.out_pos);
        self.out_pos = 0;
        let at = arrival(
            &cfg,
            self.listener,
            &self.peer_ip,
            &self.client,
            self.served,
        );
        x.write_error(w, &at, &mut self.out, status, close);
        self.x = Some(x);
        self.phase = Phase::Local;
    }

    /// Routes the request parsed into `x` and starts answering it.
    fn start_request(&mut self, mut x: Box<Exchange>, w: &mut Ctx) -> Result<(), Close> {
        let cfg = w.env.cfg.clone();
        self.served += 1;
        if self.out.capacity() == 0 {
            self.out = w.spare.vec();
        }
        self.out.clear();
        self.out_pos = 0;
        let at = arrival(
            &cfg,
            self.listener,
            &self.peer_ip,
            &self.client,
            self.served,
        );
        let Some(buf) = self.req_buf.as_mut() else {
            return Err(Close);
        };
        let head_len = x.req.head_len;
        let begin = x.begin(w, &at, &buf.held()[..head_len], &mut self.out);
        // The head is answered or forwarded: it must not be read again as the next request.
        buf.skip_head(head_len);
        self.x = Some(x);
        match begin {
            // The exchange's first step (the next round of `drive`) starts the attempt.
            Begin::Proxy => self.phase = Phase::Proxy,
            Begin::Answered => self.phase = Phase::Local,
        }
        Ok(())
    }

    pub(crate) fn end_exchange(&mut self, w: &mut Ctx, keep: bool) -> Result<(), Close> {
        // The client asked to close and everything it sent has been read: a plain close
        // sends FIN and cannot reset anything, so lingering would only cost a shutdown, a
        // read and a wakeup (nginx's `lingering_close on` decides alike).
        let said_close = self
            .x
            .as_ref()
            .is_some_and(|x| !x.req.keep_alive && x.req_body.is_done());
        if let Some(x) = self.x.take() {
            w.emit(Event::Done(Done::of(x.facts(), self.conn(), x.status)));
            w.retire(x);
        }
        // An idle connection holds no buffer: this one serves the next request anywhere.
        w.spare.put_vec(std::mem::take(&mut self.out));
        self.out_pos = 0;
        if keep {
            self.phase = Phase::Head;
            if self.req_buf.as_ref().is_some_and(|b| b.is_empty()) {
                w.env.bufs.put(self.req_buf.take().expect("buffer present"));
            }
            // Oldest idle first when connections run short (checked when popped).
            w.env.idle.push_back((self.slot, self.id, self.served));
            Ok(())
        } else if said_close
            && !self.client.ready.r
            && self.req_buf.as_ref().is_none_or(|b| b.is_empty())
        {
            self.release_all(w);
            if !self.client.is_plain() {
                // close_notify, so the client knows the response was not cut short.
                let _ = self.client.shutdown_write();
            }
            Err(Close)
        } else {
            self.linger(w)
        }
    }

    // ---- local responses and closing ----------------------------------------------

    /// Writes what waits for the client: `out` (a head, or a whole local response), then
    /// what the exchange's body offers (`Output`), head and body bytes in one system call
    /// when both wait, a pipe's bytes with splice(2). On a connection that closes after the
    /// response, its last bytes go with the FIN. Returns whether anything moved and what is
    /// left.
    pub(crate) fn send_client(&mut self) -> Result<(bool, Left), Close> {
        let mut progress = false;
        let mut left = Left::Waiting;
        let close_after = self.x.as_ref().is_some_and(|x| x.close_after);
        let plain = self.client.is_plain();
        while self.client.ready.w {
            let head = &self.out[self.out_pos..];
            let out = self
                .x
                .as_deref_mut()
                .map_or(Output::Done, |x| x.body_out(plain));
            let from_file = matches!(out, Output::File { .. });
            let r = match out {
                Output::Bytes { data, last } => {
                    self.client.write_pair(head, data, last && close_after)
                }
                _ if !head.is_empty() => {
                    let done = matches!(out, Output::Done);
                    self.client.write_pair(head, &[], done && close_after)
                }
                // The source broke after the head went out: cut, with a reset.
                Output::Failed => {
                    self.client.reset_on_close();
                    return Err(Close);
                }
                Output::Pipe { fd, len } => self.client.splice_from(fd, len),
                Output::File { fd, offset, len } => self.client.sendfile_from(fd, offset, len),
                Output::Later | Output::Done => {
                    let done = matches!(out, Output::Done);
                    // TLS records of what was written may still wait for the socket.
                    if self.client.pending() {
                        match self.client.flush() {
                            Ok(()) => progress = true,
                            Err(e) if would_block(&e) => break,
                            Err(_) => return Err(Close),
                        }
                    }
                    left = if done { Left::Nothing } else { Left::More };
                    break;
                }
            };
            match r {
                // The file is shorter than the length its head announced.
                Ok(0) if from_file => {
                    self.client.reset_on_close();
                    return Err(Close);
                }
                Ok(0) => break,
                Ok(n) => {
                    let from_head = n.min(self.out.len() - self.out_pos);
                    self.out_pos += from_head;
                    if let Some(x) = &mut self.x {
                        x.written(n - from_head, n);
                    }
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => return Err(Close),
            }
        }
        if self.out_pos == self.out.len() && !self.out.is_empty() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok((progress, left))
    }

    fn step_local(&mut self, w: &mut Ctx) -> Step {
        let (progress, left) = self.send_client()?;
        if left != Left::Nothing {
            return Ok(progress);
        }
        let keep = self.x.as_ref().is_some_and(|x| !x.close_after);
        self.end_exchange(w, keep)?;
        Ok(true)
    }

    /// Flushes the 101 head; then the connection is a tunnel.
    fn step_switching(&mut self) -> Step {
        let (progress, _) = self.send_client()?;
        if self.out.is_empty() && !self.client.pending() {
            self.phase = Phase::Upgraded;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Hands the client and upstream connections, and the bytes each already sent past the
    /// heads, to a tunnel.
    pub fn into_tunnel(self: Box<Self>, w: &mut Ctx) -> Option<Tunnel> {
        let mut h = *self;
        let mut x = h.x.take()?;
        let Some((upstream, from_up)) = x.take_tunnel(w) else {
            h.x = Some(x);
            h.abort(w);
            return None;
        };
        Some(Tunnel::new(
            h.id,
            h.slot,
            h.client,
            upstream,
            h.deadline,
            h.req_buf.take(),
            from_up,
            h.peer_ip,
            h.served,
            x,
            w,
        ))
    }

    fn linger(&mut self, w: &mut Ctx) -> Result<(), Close> {
        self.release_all(w);
        if self.client.shutdown_write().is_err() {
            return Err(Close);
        }
        self.phase = Phase::Linger;
        self.set_deadline(w, w.env.now + LINGER);
        Ok(())
    }

    fn step_linger(&mut self) -> Step {
        match self.client.discard() {
            Ok(false) => Ok(false),
            Ok(true) | Err(_) => Err(Close),
        }
    }

    /// Logs an exchange cut short (client gone, upstream broke mid-body, timeout) and gives
    /// back everything the session holds.
    pub fn abort(&mut self, w: &mut Ctx) {
        self.release_all(w);
        if let Some(x) = self.x.take() {
            let status = if x.status == 0 { 499 } else { x.status };
            w.emit(Event::Done(Done::of(x.facts(), self.conn(), status)));
            w.retire(x);
        }
    }

    /// Draining: answer what is in flight with `Connection: close`; idle connections get a
    /// short grace to send one more request.
    pub fn start_drain(&mut self, w: &mut Ctx) {
        if self.is_idle() {
            self.set_deadline(w, w.env.now + DRAIN_IDLE);
        }
    }
}

/// What the exchange may know of the connection its request came on.
fn arrival<'a>(
    cfg: &Config,
    listener: usize,
    peer: &'a PeerIp,
    client: &'a Transport,
    served: u64,
) -> Arrival<'a> {
    Arrival {
        listener: cfg.listeners[listener],
        client: peer,
        proto: if client.is_plain() { "http" } else { "https" },
        tls: client.tls_info(),
        served,
    }
}

#[cfg(test)]
mod tests;
