//! One client connection and, while it proxies, its upstream connection.
//!
//! Readiness is tracked per socket (mio is edge-triggered): a flag is set by an event and
//! cleared only by WouldBlock. `drive` then makes every move the phase and buffers allow
//! until none is left, so interest never has to be toggled by hand.

use super::buffer::Buf;
use super::{Ctx, Kind};
use crate::config::Action;
use crate::http::body::Framer;
use crate::http::{local, request, response};
use crate::router;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
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
}

/// The session must be closed now.
pub struct Close;

type Step = Result<bool, Close>;

struct UpConn {
    stream: TcpStream,
    upstream: usize,
    peer: usize,
    reused: bool,
    requests: u64,
    connected: bool,
    r: bool,
    w: bool,
}

struct RespState {
    body: Framer,
    decode: bool,
    reusable: bool,
}

/// The request in progress and what the access log needs about it.
struct Exchange {
    req: request::RequestHead,
    server: usize,
    upstream: usize,
    start: Instant,
    keep_alive: bool,
    up_head: Vec<u8>,
    up_head_pos: usize,
    req_body: Framer,
    body_sent: u64,
    send_failed: bool,
    resp: Option<RespState>,
    resp_seen: bool,
    tried: Vec<usize>,
    attempts: usize,
    status: u16,
    bytes_sent: u64,
    close_after: bool,
}

pub struct Session {
    pub id: u64,
    slot: usize,
    client: TcpStream,
    peer_ip: String,
    listener: usize,
    cr: bool,
    cw: bool,
    pub phase: Phase,
    req_buf: Option<Buf>,
    resp_buf: Option<Buf>,
    out: Vec<u8>,
    out_pos: usize,
    up: Option<UpConn>,
    x: Option<Box<Exchange>>,
    served: u64,
    pub deadline: super::timer::Deadline,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn write_some(s: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    loop {
        match s.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Session {
    pub fn new(
        id: u64,
        slot: usize,
        client: TcpStream,
        addr: SocketAddr,
        listener: usize,
    ) -> Session {
        Session {
            id,
            slot,
            client,
            peer_ip: addr.ip().to_string(),
            listener,
            cr: false,
            cw: false,
            phase: Phase::Head,
            req_buf: None,
            resp_buf: None,
            out: Vec::new(),
            out_pos: 0,
            up: None,
            x: None,
            served: 0,
            deadline: Default::default(),
        }
    }

    pub fn client_mut(&mut self) -> &mut TcpStream {
        &mut self.client
    }

    /// Idle keep-alive: between requests with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Head
            && self.served > 0
            && self.req_buf.as_ref().is_none_or(|b| b.is_empty())
    }

    pub fn client_event(&mut self, readable: bool, writable: bool) {
        self.cr |= readable;
        self.cw |= writable;
    }

    pub fn upstream_event(&mut self, readable: bool, writable: bool) {
        if let Some(up) = &mut self.up {
            up.r |= readable;
            up.w |= writable;
        }
    }

    /// Makes all the progress possible now. Returns false when the session must be closed.
    pub fn drive(&mut self, w: &mut Ctx) -> bool {
        let mut moved = false;
        for _ in 0..MAX_ROUNDS {
            let before = self.phase;
            let step = match self.phase {
                Phase::Head => self.step_head(w),
                Phase::Proxy => self.step_proxy(w),
                Phase::Local => self.step_local(w),
                Phase::Linger => self.step_linger(),
            };
            match step {
                Err(Close) => {
                    self.abort(w);
                    return false;
                }
                Ok(true) => moved = true,
                Ok(false) => {
                    if moved || before != self.phase {
                        self.arm_timer(w);
                    }
                    return true;
                }
            }
        }
        // Out of budget: come back after other connections had their turn.
        self.arm_timer(w);
        w.again.push((self.slot, self.id));
        true
    }

    fn arm_timer(&mut self, w: &mut Ctx) {
        let cfg = w.cfg.clone();
        let timeout = match self.phase {
            Phase::Head => {
                let srv =
                    &cfg.server[router::select_server(&cfg, w.listen_addrs[self.listener], None)];
                if self.served == 0 || !self.is_idle() {
                    srv.client_header_timeout
                } else if w.draining {
                    DRAIN_IDLE.min(srv.keepalive_timeout)
                } else {
                    srv.keepalive_timeout
                }
            }
            Phase::Proxy => {
                let x = self.x.as_ref().expect("proxy phase has an exchange");
                let up = &cfg.upstream[x.upstream];
                match &self.up {
                    Some(u) if !u.connected => up.connect_timeout,
                    _ if self.waiting_for_body() => cfg.server[x.server].client_body_timeout,
                    Some(u)
                        if !u.w
                            && (x.up_head_pos < x.up_head.len()
                                || self
                                    .req_buf
                                    .as_ref()
                                    .is_some_and(|b| !b.pending().is_empty())) =>
                    {
                        up.send_timeout
                    }
                    _ if self.out_pos < self.out.len() && !self.cw => {
                        cfg.server[x.server].send_timeout
                    }
                    _ if x.resp.is_none() => up.read_timeout,
                    _ => up.read_timeout.max(cfg.server[x.server].send_timeout),
                }
            }
            Phase::Local => {
                let srv = self.x.as_ref().map(|x| x.server).unwrap_or(0);
                cfg.server[srv].send_timeout
            }
            Phase::Linger => return,
        };
        self.set_deadline(w, w.now + timeout);
    }

    fn set_deadline(&mut self, w: &mut Ctx, at: Instant) {
        let key = super::key(self.slot, Kind::Client);
        self.deadline.set(at, &mut w.timers, key, self.id);
    }

    /// The session's deadline passed.
    pub fn on_timeout(&mut self, w: &mut Ctx) -> bool {
        match self.phase {
            Phase::Head | Phase::Local | Phase::Linger => {
                self.abort(w);
                false
            }
            Phase::Proxy => {
                let connecting = self.up.as_ref().is_some_and(|u| !u.connected);
                let result = if self.waiting_for_body() {
                    log::info!("client {} timed out sending the request body", self.peer_ip);
                    if self.x.as_ref().is_some_and(|x| x.resp.is_some()) {
                        Err(Close)
                    } else {
                        self.upstream_failed_client_side(w, 408);
                        Ok(())
                    }
                } else if connecting {
                    self.connect_failed(w, "timed out".into())
                } else {
                    self.upstream_failed(w, 504, "upstream timed out")
                };
                match result {
                    Ok(_) => self.drive(w),
                    Err(Close) => {
                        self.abort(w);
                        false
                    }
                }
            }
        }
    }

    /// Returns the session's buffers and upstream connection before it is dropped.
    pub fn release_all(&mut self, w: &mut Ctx) {
        if let Some(b) = self.req_buf.take() {
            w.bufs.put(b);
        }
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        if let Some(mut up) = self.up.take() {
            let _ = w.registry.deregister(&mut up.stream);
        }
    }

    // ---- request head -------------------------------------------------------------

    fn step_head(&mut self, w: &mut Ctx) -> Step {
        if let Some(buf) = &self.req_buf {
            if !buf.is_empty() {
                let cfg = w.cfg.clone();
                let srv = router::select_server(&cfg, w.listen_addrs[self.listener], None);
                let limit = cfg.server[srv].client_header_buffer_size;
                match request::parse(buf.held()) {
                    Ok(Some(head)) => {
                        self.start_request(head, w)?;
                        return Ok(true);
                    }
                    Ok(None) if buf.held().len() >= limit || buf.is_full() => {
                        return self.reject(w, 431);
                    }
                    Ok(None) => {}
                    Err(e) => return self.reject(w, e.status()),
                }
            }
        }
        if !self.cr {
            return Ok(false);
        }
        let size = {
            let cfg = &w.cfg;
            let srv = router::select_server(cfg, w.listen_addrs[self.listener], None);
            cfg.server[srv].client_header_buffer_size
        };
        let buf = self.req_buf.get_or_insert_with(|| w.bufs.get(size));
        match buf.read_from(&mut self.client) {
            Ok(0) => Err(Close),
            Ok(_) => Ok(true),
            Err(e) if would_block(&e) => {
                self.cr = false;
                if buf.is_empty() {
                    w.bufs.put(self.req_buf.take().expect("buffer present"));
                }
                Ok(false)
            }
            Err(_) => Err(Close),
        }
    }

    /// A request head that cannot be served: answer with `status` and close.
    fn reject(&mut self, w: &mut Ctx, status: u16) -> Step {
        if let Some(b) = self.req_buf.take() {
            w.bufs.put(b);
        }
        self.out.clear();
        self.out_pos = 0;
        local::write(
            status,
            &local::error_headers(),
            &local::error_page(status),
            false,
            true,
            false,
            &mut self.out,
        );
        w.log_raw(
            self.listener,
            &self.peer_ip,
            "-",
            status,
            local::error_page(status).len() as u64,
        );
        self.x = None;
        self.phase = Phase::Local;
        Ok(true)
    }

    fn start_request(&mut self, head: request::RequestHead, w: &mut Ctx) -> Result<(), Close> {
        let cfg = w.cfg.clone();
        let host = head.host_name();
        let server = router::select_server(&cfg, w.listen_addrs[self.listener], host.as_deref());
        let srv = &cfg.server[server];
        self.served += 1;
        let keep_alive = head.keep_alive
            && !w.draining
            && (srv.keepalive_requests == 0 || self.served < srv.keepalive_requests);
        let route = router::select_route(&cfg, server, host.as_deref(), head.path())
            .map(|r| r.action.clone());
        let buf = self
            .req_buf
            .as_mut()
            .expect("head was parsed from the buffer");
        let mut x = Box::new(Exchange {
            req_body: head.body.clone(),
            req: head,
            server,
            upstream: usize::MAX,
            start: w.now,
            keep_alive,
            up_head: Vec::new(),
            up_head_pos: 0,
            body_sent: 0,
            send_failed: false,
            resp: None,
            resp_seen: false,
            tried: Vec::new(),
            attempts: 0,
            status: 0,
            bytes_sent: 0,
            close_after: false,
        });
        match route {
            Some(Action::Proxy { index, .. }) => {
                x.upstream = index;
                x.req.write_upstream(
                    &buf.held()[..x.req.head_len],
                    &self.peer_ip,
                    "http",
                    &mut x.up_head,
                );
                buf.skip_head(x.req.head_len);
                self.x = Some(x);
                self.phase = Phase::Proxy;
                self.connect(w)
            }
            other => {
                let (status, headers, body) = match other {
                    Some(Action::Return {
                        status,
                        headers,
                        body,
                    }) => (status, headers, body.into_bytes()),
                    _ => (404, local::error_headers(), local::error_page(404)),
                };
                buf.skip_head(x.req.head_len);
                // The body of a request answered here is not read; closing discards it.
                let close = !x.keep_alive || x.req.has_body;
                x.close_after = close;
                x.status = status;
                let head_only = x.req.method == "HEAD";
                x.bytes_sent = if head_only { 0 } else { body.len() as u64 };
                self.out.clear();
                self.out_pos = 0;
                local::write(
                    status,
                    &headers,
                    &body,
                    head_only,
                    close,
                    x.req.minor == 0 && !close,
                    &mut self.out,
                );
                self.x = Some(x);
                self.phase = Phase::Local;
                Ok(())
            }
        }
    }

    // ---- upstream connection ------------------------------------------------------

    /// Gets an upstream connection for the exchange: idle from the pool, or a new connect.
    fn connect(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let cfg = w.cfg.clone();
        let x = self.x.as_mut().expect("exchange");
        let u = x.upstream;
        loop {
            let Some(peer) = w.balancer.pick(&cfg.upstream, u, &x.tried, w.now) else {
                return self.upstream_failed(w, 502, "no live upstreams");
            };
            x.tried.push(peer);
            x.attempts += 1;
            x.up_head_pos = 0;
            let token = Token(super::key(self.slot, Kind::Upstream));
            if let Some(mut idle) = w.pool.take(u, peer) {
                if w.registry
                    .reregister(
                        &mut idle.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_ok()
                {
                    self.up = Some(UpConn {
                        stream: idle.stream,
                        upstream: u,
                        peer,
                        reused: true,
                        requests: idle.requests,
                        connected: true,
                        r: false,
                        w: true,
                    });
                    return Ok(());
                }
            }
            let addr = cfg.upstream[u].peers[peer].addr;
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    if w.registry
                        .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.up = Some(UpConn {
                            stream: s,
                            upstream: u,
                            peer,
                            reused: false,
                            requests: 0,
                            connected: false,
                            r: false,
                            w: false,
                        });
                        return Ok(());
                    }
                }
                Err(e) => {
                    log::error!(
                        "connect() to {} failed: {e} (upstream \"{}\")",
                        cfg.upstream[u].peers[peer].name,
                        cfg.upstream[u].name
                    );
                    w.balancer.failed(u, peer, w.now);
                }
            }
            if x.tried.len() >= cfg.upstream[u].peers.len() {
                return self.upstream_failed(w, 502, "all upstream peers failed");
            }
        }
    }

    /// A connect attempt failed: mark the peer and try the next one, or give up with 502/504.
    fn connect_failed(&mut self, w: &mut Ctx, why: String) -> Result<(), Close> {
        let cfg = w.cfg.clone();
        let up = self.up.take().expect("connecting upstream");
        let peer = &cfg.upstream[up.upstream].peers[up.peer];
        log::error!(
            "connect() to {} failed: {why} (upstream \"{}\")",
            peer.name,
            cfg.upstream[up.upstream].name
        );
        w.balancer.failed(up.upstream, up.peer, w.now);
        drop(up);
        let x = self.x.as_ref().expect("exchange");
        if x.tried.len() < cfg.upstream[x.upstream].peers.len() {
            return self.connect(w);
        }
        let status = if why == "timed out" { 504 } else { 502 };
        self.upstream_failed(w, status, "cannot connect to upstream")
    }

    /// The upstream failed. Before the response head went out the client gets `status`;
    /// after it, the client connection is cut (nothing else can tell it the body is short).
    fn upstream_failed(&mut self, w: &mut Ctx, status: u16, why: &str) -> Result<(), Close> {
        if let Some(mut up) = self.up.take() {
            let _ = w.registry.deregister(&mut up.stream);
        }
        let x = self.x.as_mut().expect("exchange");
        let cfg = w.cfg.clone();
        log::error!(
            "{why} while proxying \"{} {}\" to upstream \"{}\", client {}",
            x.req.method,
            x.req.uri,
            cfg.upstream
                .get(x.upstream)
                .map(|u| u.name.as_str())
                .unwrap_or("-"),
            self.peer_ip
        );
        if x.resp.is_some() {
            return Err(Close);
        }
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        let body_left = !x.req_body.is_done();
        if let Some(b) = &mut self.req_buf {
            let n = b.pending().len();
            b.consume(n);
        }
        let close = !x.keep_alive || body_left;
        x.close_after = close;
        x.status = status;
        let page = local::error_page(status);
        let head_only = x.req.method == "HEAD";
        x.bytes_sent = if head_only { 0 } else { page.len() as u64 };
        self.out.clear();
        self.out_pos = 0;
        local::write(
            status,
            &local::error_headers(),
            &page,
            head_only,
            close,
            x.req.minor == 0 && !close,
            &mut self.out,
        );
        self.phase = Phase::Local;
        Ok(())
    }

    // ---- proxying -----------------------------------------------------------------

    fn step_proxy(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        let up = self.up.as_mut().expect("proxy phase has an upstream");
        if !up.connected {
            if !(up.r || up.w) {
                return Ok(false);
            }
            match up.stream.take_error() {
                Ok(None) => match up.stream.peer_addr() {
                    Ok(_) => {
                        up.connected = true;
                        w.balancer.succeeded(up.upstream, up.peer);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        up.r = false;
                        up.w = false;
                        return Ok(false);
                    }
                    Err(e) => {
                        self.connect_failed(w, e.to_string())?;
                        return Ok(true);
                    }
                },
                Ok(Some(e)) | Err(e) => {
                    self.connect_failed(w, e.to_string())?;
                    return Ok(true);
                }
            }
        }
        progress |= self.send_request(w)?;
        if self.phase != Phase::Proxy {
            return Ok(true);
        }
        progress |= self.recv_response(w)?;
        if self.phase != Phase::Proxy {
            return Ok(true);
        }
        progress |= self.send_client(w)?;
        if self.response_done() {
            self.finish(w)?;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Stalled on the client: the upstream could take more body but none has arrived.
    fn waiting_for_body(&self) -> bool {
        let Some(x) = &self.x else { return false };
        self.up.as_ref().is_some_and(|u| u.connected)
            && x.up_head_pos == x.up_head.len()
            && !x.req_body.is_done()
            && !self.cr
            && self.req_buf.as_ref().is_none_or(|b| b.pending().is_empty())
    }

    fn request_done(&self) -> bool {
        let x = self.x.as_ref().expect("exchange");
        x.up_head_pos == x.up_head.len()
            && x.req_body.is_done()
            && self.req_buf.as_ref().is_none_or(|b| b.pending().is_empty())
    }

    fn response_done(&self) -> bool {
        let x = self.x.as_ref().expect("exchange");
        x.resp.as_ref().is_some_and(|r| r.body.is_done())
            && self.out_pos == self.out.len()
            && self
                .resp_buf
                .as_ref()
                .is_none_or(|b| b.pending().is_empty())
    }

    /// Sends the request head, then streams the body from the client as it arrives.
    fn send_request(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        let x = self.x.as_mut().expect("exchange");
        let up = self.up.as_mut().expect("upstream");
        if x.send_failed {
            return Ok(false);
        }
        while x.up_head_pos < x.up_head.len() && up.w {
            match write_some(&mut up.stream, &x.up_head[x.up_head_pos..]) {
                Ok(n) => {
                    x.up_head_pos += n;
                    progress = true;
                }
                Err(e) if would_block(&e) => up.w = false,
                Err(_) => {
                    x.send_failed = true;
                    return Ok(true);
                }
            }
        }
        if x.up_head_pos < x.up_head.len() {
            return Ok(progress);
        }
        loop {
            let buf = match &mut self.req_buf {
                Some(b) => b,
                None if x.req_body.is_done() => return Ok(progress),
                None => self.req_buf.insert(w.bufs.get(super::buffer::BUF_SIZE)),
            };
            let mut moved = false;
            if !buf.pending().is_empty() && up.w {
                match write_some(&mut up.stream, buf.pending()) {
                    Ok(n) => {
                        buf.consume(n);
                        x.body_sent += n as u64;
                        moved = true;
                    }
                    Err(e) if would_block(&e) => up.w = false,
                    Err(_) => {
                        x.send_failed = true;
                        return Ok(true);
                    }
                }
            }
            if !x.req_body.is_done() && !buf.unparsed().is_empty() {
                match x.req_body.advance_raw(buf.unparsed()) {
                    Ok((n, _)) => {
                        buf.pass(n);
                        moved |= n > 0;
                    }
                    Err(_) => {
                        log::info!("client {} sent an invalid chunked body", self.peer_ip);
                        if x.resp.is_some() {
                            return Err(Close);
                        }
                        x.req_body = Framer::Done;
                        self.upstream_failed_client_side(w, 400);
                        return Ok(true);
                    }
                }
            }
            // Read from the client: body bytes, or after the body, pipelined input and EOF.
            if self.cr && buf.has_room() && buf.unparsed().len() < buf.capacity() / 2 {
                match buf.read_from(&mut self.client) {
                    Ok(0) => {
                        // The client went away (or half-closed) before its response: abort.
                        return Err(Close);
                    }
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => self.cr = false,
                    Err(_) => return Err(Close),
                }
            }
            if buf.is_empty() && x.req_body.is_done() {
                w.bufs.put(self.req_buf.take().expect("buffer present"));
            }
            if !moved {
                return Ok(progress);
            }
            progress = true;
        }
    }

    /// The client sent a bad body while proxying: answer it and drop the upstream.
    fn upstream_failed_client_side(&mut self, w: &mut Ctx, status: u16) {
        if let Some(mut up) = self.up.take() {
            let _ = w.registry.deregister(&mut up.stream);
        }
        let x = self.x.as_mut().expect("exchange");
        x.status = status;
        x.close_after = true;
        let page = local::error_page(status);
        x.bytes_sent = page.len() as u64;
        self.out.clear();
        self.out_pos = 0;
        local::write(
            status,
            &local::error_headers(),
            &page,
            false,
            true,
            false,
            &mut self.out,
        );
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        self.phase = Phase::Local;
    }

    /// Reads the response: interim heads, the final head, then body bytes as room allows.
    fn recv_response(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        loop {
            let x = self.x.as_mut().expect("exchange");
            let up = self.up.as_mut().expect("upstream");
            let buf = self
                .resp_buf
                .get_or_insert_with(|| w.bufs.get(super::buffer::BUF_SIZE));
            if x.resp.is_none() && !buf.is_empty() {
                match response::parse(buf.held(), x.req.method == "HEAD") {
                    Ok(Some(h)) if h.is_interim() => {
                        if x.req.minor >= 1 {
                            h.write_interim(buf.held(), &mut self.out);
                        }
                        buf.skip_head(h.head_len);
                        progress = true;
                        continue;
                    }
                    Ok(Some(h)) if h.status == 101 => {
                        return self
                            .upstream_failed(w, 502, "upstream switched protocols unasked")
                            .map(|_| true);
                    }
                    Ok(Some(h)) => {
                        let keep = x.keep_alive && !w.draining;
                        let framing = h.write_client(buf.held(), x.req.minor, keep, &mut self.out);
                        x.status = h.status;
                        x.close_after = framing.close;
                        x.resp = Some(RespState {
                            body: h.body.clone(),
                            decode: framing.decode_chunked,
                            reusable: h.reusable,
                        });
                        buf.skip_head(h.head_len);
                        progress = true;
                    }
                    Ok(None) if buf.is_full() => {
                        return self
                            .upstream_failed(w, 502, "upstream sent too big a header")
                            .map(|_| true);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return self
                            .upstream_failed(w, 502, "upstream sent an invalid header")
                            .map(|_| true);
                    }
                }
            }
            if let Some(resp) = &mut x.resp {
                if !resp.body.is_done() && !buf.unparsed().is_empty() {
                    let before = buf.parsed;
                    let res = if resp.decode {
                        decode_into(&mut resp.body, buf)
                    } else {
                        resp.body
                            .advance_raw(buf.unparsed())
                            .map(|(n, _)| buf.pass(n))
                    };
                    if res.is_err() {
                        return self
                            .upstream_failed(w, 502, "upstream sent an invalid chunked body")
                            .map(|_| true);
                    }
                    progress |= buf.parsed != before;
                }
                if resp.body.is_done() {
                    if !buf.unparsed().is_empty() {
                        // Bytes past the end of the response: that connection is not reusable.
                        resp.reusable = false;
                    }
                    return Ok(progress);
                }
            }
            if !up.r || !buf.has_room() {
                return Ok(progress);
            }
            match buf.read_from(&mut up.stream) {
                Ok(0) => return self.upstream_eof(w).map(|_| true),
                Ok(_) => {
                    x.resp_seen = true;
                    progress = true;
                }
                Err(e) if would_block(&e) => {
                    up.r = false;
                    return Ok(progress);
                }
                Err(e) => {
                    log::debug!("upstream read error: {e}");
                    return self.upstream_eof(w).map(|_| true);
                }
            }
        }
    }

    /// The upstream closed its side. Retries a request that died on a reused connection
    /// before any answer (the keep-alive race), ends a close-delimited body, else fails.
    fn upstream_eof(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let x = self.x.as_mut().expect("exchange");
        let up = self.up.as_ref().expect("upstream");
        if let Some(resp) = &mut x.resp {
            if resp.body == Framer::UntilClose {
                resp.body = Framer::Done;
                resp.reusable = false;
                return Ok(());
            }
            return self.upstream_failed(w, 502, "upstream prematurely closed connection");
        }
        let nothing_back = !x.resp_seen && self.resp_buf.as_ref().is_none_or(|b| b.is_empty());
        if up.reused && nothing_back && x.body_sent == 0 && x.attempts < 8 {
            if let Some(mut up) = self.up.take() {
                let _ = w.registry.deregister(&mut up.stream);
            }
            // A stale pooled connection says nothing about the peer: try it again.
            x.tried.pop();
            return self.connect(w);
        }
        self.upstream_failed(w, 502, "upstream prematurely closed connection")
    }

    /// Writes pending head bytes, then body bytes, to the client.
    fn send_client(&mut self, _w: &mut Ctx) -> Step {
        let mut progress = false;
        while self.out_pos < self.out.len() && self.cw {
            match write_some(&mut self.client, &self.out[self.out_pos..]) {
                Ok(n) => {
                    self.out_pos += n;
                    progress = true;
                }
                Err(e) if would_block(&e) => self.cw = false,
                Err(_) => return Err(Close),
            }
        }
        if self.out_pos < self.out.len() {
            return Ok(progress);
        }
        if !self.out.is_empty() {
            self.out.clear();
            self.out_pos = 0;
        }
        let x = self.x.as_mut().expect("exchange");
        if let Some(buf) = &mut self.resp_buf {
            while !buf.pending().is_empty() && self.cw {
                match write_some(&mut self.client, buf.pending()) {
                    Ok(n) => {
                        buf.consume(n);
                        x.bytes_sent += n as u64;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => self.cw = false,
                    Err(_) => return Err(Close),
                }
            }
        }
        Ok(progress)
    }

    /// The response is complete: release the upstream, log, then keep alive or close.
    fn finish(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let request_done = self.request_done();
        let x = self.x.as_ref().expect("exchange");
        let cfg = w.cfg.clone();
        if let Some(up) = self.up.take() {
            let reusable = x.resp.as_ref().is_some_and(|r| r.reusable)
                && request_done
                && !x.send_failed
                && !w.draining
                && self.resp_buf.as_ref().is_none_or(|b| b.is_empty());
            w.release(
                up.stream,
                up.upstream,
                up.peer,
                up.requests + 1,
                reusable,
                &cfg,
            );
        }
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        let keep = !x.close_after && request_done;
        self.end_exchange(w, keep)
    }

    fn end_exchange(&mut self, w: &mut Ctx, keep: bool) -> Result<(), Close> {
        if let Some(x) = self.x.take() {
            w.log_access(
                &x.req,
                x.server,
                &self.peer_ip,
                x.status,
                x.bytes_sent,
                x.start,
            );
        }
        self.out = Vec::new();
        self.out_pos = 0;
        if keep {
            self.phase = Phase::Head;
            if self.req_buf.as_ref().is_some_and(|b| b.is_empty()) {
                w.bufs.put(self.req_buf.take().expect("buffer present"));
            }
            Ok(())
        } else {
            self.linger(w)
        }
    }

    // ---- local responses and closing ----------------------------------------------

    fn step_local(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        while self.out_pos < self.out.len() && self.cw {
            match write_some(&mut self.client, &self.out[self.out_pos..]) {
                Ok(n) => {
                    self.out_pos += n;
                    progress = true;
                }
                Err(e) if would_block(&e) => self.cw = false,
                Err(_) => return Err(Close),
            }
        }
        if self.out_pos < self.out.len() {
            return Ok(progress);
        }
        let keep = self.x.as_ref().is_some_and(|x| !x.close_after);
        self.end_exchange(w, keep)?;
        Ok(true)
    }

    fn linger(&mut self, w: &mut Ctx) -> Result<(), Close> {
        self.release_all(w);
        if self.client.shutdown(Shutdown::Write).is_err() {
            return Err(Close);
        }
        self.phase = Phase::Linger;
        self.set_deadline(w, w.now + LINGER);
        Ok(())
    }

    fn step_linger(&mut self) -> Step {
        let mut scratch = [0u8; 4096];
        while self.cr {
            match self.client.read(&mut scratch) {
                Ok(0) => return Err(Close),
                Ok(_) => {}
                Err(e) if would_block(&e) => self.cr = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close),
            }
        }
        Ok(false)
    }

    /// Logs an exchange cut short (client gone, upstream broke mid-body, timeout).
    fn abort(&mut self, w: &mut Ctx) {
        if let Some(x) = self.x.take() {
            let status = if x.status == 0 { 499 } else { x.status };
            w.log_access(
                &x.req,
                x.server,
                &self.peer_ip,
                status,
                x.bytes_sent,
                x.start,
            );
        }
        self.release_all(w);
    }

    /// Draining: answer what is in flight with `Connection: close`; idle connections get a
    /// short grace to send one more request.
    pub fn start_drain(&mut self, w: &mut Ctx) {
        if self.is_idle() {
            self.set_deadline(w, w.now + DRAIN_IDLE);
        }
    }
}

/// Strips chunked framing in place: payload runs move down to `ready`.
fn decode_into(f: &mut Framer, buf: &mut Buf) -> Result<(), crate::http::body::FrameError> {
    loop {
        let s = f.step(buf.unparsed())?;
        buf.pass_decoded(s.consumed, s.data);
        if s.done || s.consumed == 0 {
            return Ok(());
        }
    }
}
