//! Layer 7: upstreams, in nginx's lifecycle order: balance -> pool take or connect -> send
//! the request -> read the response head -> stream the response -> release. Owns the idle
//! pool, the balancer, retries (an idempotent request, or one of which no byte went out) and
//! the one `release()` checklist.

mod balancer;
mod conn;
mod outlier;
mod pool;
mod retry;
mod splice;

pub use balancer::{Balancer, Pick};
pub use conn::{Active, UpConn};
use outlier::Outcome;
pub use pool::{IdleConn, Owner, Pool};
pub(crate) use retry::Cause as RetryCause;
use retry::Cause;

use super::buffer::{Buf, BUF_SIZE};
use super::events::{Context, Event};
use super::exchange::{Recv, RespState, Upload};
use super::session::http1::{Close, Http1, Phase, Step};
use super::transport::{would_block, Connect, Ready, Transport, Unread};
use super::{key, Ctx, Kind};
use crate::http::body::Framer;
use crate::http::response;
use mio::Token;
pub use splice::{Pipes, Splice};

/// Rounds of reading the client and writing the upstream in one `send_request`.
const SEND_ROUNDS: usize = 8;
/// Interim (1xx) responses passed on per request before the upstream is deemed broken.
const MAX_INTERIM: u32 = 16;

/// Stale pooled connections a request may meet in a row before it connects afresh.
const STALE_REPLAYS: usize = 8;

impl Http1 {
    // ---- upstream connection ------------------------------------------------------

    /// Gets an upstream connection for the exchange: idle from the pool, or a new connect.
    pub(super) fn connect(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let cfg = w.cfg.clone();
        let Some(u) = self.x.as_ref().and_then(|x| x.upstream) else {
            return self.upstream_failed(w, 502, "no upstream for the exchange");
        };
        let x = self.x.as_mut().expect("exchange");
        loop {
            let pick = w.balancer.pick(
                &cfg.upstream,
                u,
                &x.tried,
                x.hash,
                w.shared.view(),
                w.now_ms,
            );
            let Pick::Peer(peer) = pick else {
                if x.tried.is_empty() {
                    // Nothing was tried: the node knows every peer is down (503, as a
                    // client may retry later), unless the upstream fails open.
                    let why = format!("no live peers in upstream \"{}\"", cfg.upstream[u].name);
                    return self.upstream_failed(w, 503, &why);
                }
                return self.upstream_failed(w, 502, "all upstream peers failed");
            };
            let slot = cfg.upstream[u].peers[peer].slot;
            x.tried.push(peer);
            let Some((addr, version)) = cfg.upstream[u].peers[peer].locate(w.shared.view()) else {
                // A host name's address went away between the pick and now.
                continue;
            };
            w.shared.request(slot);
            x.attempts += 1;
            x.record.start_attempt(peer, addr, w.now);
            x.up_head_pos = 0;
            // After STALE_REPLAYS pooled connections in a row turned out closed, the rest
            // of the pool is likely stale too: a fresh connection settles it.
            let pooled = if x.stale_replays < STALE_REPLAYS {
                w.pool.take(u, peer, version)
            } else {
                None
            };
            if let Some(mut idle) = pooled {
                w.upconns[idle.conn] = Owner::Session(self.slot);
                // Registered long ago: nothing announces that it is writable, and it is.
                idle.stream.ready = Ready {
                    r: false,
                    w: true,
                    hup: false,
                };
                self.up = Some(UpConn {
                    stream: idle.stream,
                    conn: idle.conn,
                    upstream: u,
                    peer,
                    version,
                    reused: true,
                    requests: idle.requests,
                    connected: true,
                    _active: Active::new(w.shared, slot),
                });
                self.upstream_connected(w, u, peer, true);
                return Ok(());
            }
            let up = &cfg.upstream[u];
            let made = match &up.tls {
                Some(t) => {
                    let name = t.name_for(&up.peers[peer], &up.names, addr);
                    Transport::connect_tls(addr, &t.config, name)
                }
                None => Transport::connect(addr),
            };
            match made {
                Ok(mut s) => {
                    let conn = w.upconns.insert(Owner::Session(self.slot));
                    let token = Token(super::key(conn, Kind::Upstream));
                    if s.register(&w.registry, token).is_ok() {
                        self.up = Some(UpConn {
                            stream: s,
                            conn,
                            upstream: u,
                            peer,
                            version,
                            reused: false,
                            requests: 0,
                            connected: false,
                            _active: Active::new(w.shared, slot),
                        });
                        return Ok(());
                    }
                    w.upconns.remove(conn);
                }
                Err(e) => {
                    log::error!(
                        "connect() to {} failed: {e} (upstream \"{}\"){}",
                        cfg.upstream[u].peers[peer].label(Some(addr)),
                        cfg.upstream[u].name,
                        Context {
                            cfg: &cfg,
                            client: &self.peer_ip,
                            x: Some(x),
                        }
                    );
                    x.record.end_attempt(502, w.now);
                    w.peer_outcome(u, peer, Outcome::ConnectFailed);
                }
            }
            if x.tried.len() >= cfg.upstream[u].peers.len() {
                return self.upstream_failed(w, 502, "all upstream peers failed");
            }
        }
    }

    fn upstream_connected(&mut self, w: &mut Ctx, u: usize, peer: usize, reused: bool) {
        let cfg = w.cfg.clone();
        let x = self.x.as_mut().expect("exchange");
        x.timings.upstream_connected = Some(w.now);
        if let Some(a) = x.record.current() {
            a.connected = Some(w.now);
        }
        w.emit(Event::UpstreamConnected {
            x,
            peer: &cfg.upstream[u].peers[peer].name,
            reused,
        });
    }

    /// Closes the upstream connection of this session, if any (never back to the pool).
    pub(super) fn drop_upstream(&mut self, w: &mut Ctx) {
        if let Some(up) = self.up.take() {
            w.upconns.try_remove(up.conn);
        }
    }

    /// A connect attempt failed: mark the peer and try the next one, or give up with 502
    /// (504 when it timed out).
    pub(super) fn connect_failed(
        &mut self,
        w: &mut Ctx,
        why: &str,
        timed_out: bool,
    ) -> Result<(), Close> {
        let cfg = w.cfg.clone();
        let up = self.up.take().expect("connecting upstream");
        let peer = &cfg.upstream[up.upstream].peers[up.peer];
        log::error!(
            "connect() to {} failed: {why} (upstream \"{}\"){}",
            peer.label(peer.address(w.shared.view())),
            cfg.upstream[up.upstream].name,
            self.context(&cfg)
        );
        w.peer_outcome(up.upstream, up.peer, Outcome::ConnectFailed);
        w.upconns.try_remove(up.conn);
        let x = self.x.as_mut().expect("exchange");
        x.record
            .end_attempt(if timed_out { 504 } else { 502 }, w.now);
        let why_not = match retry::may_retry(w, self.x.as_ref().expect("exchange"), Cause::Connect)
        {
            Ok(()) => return self.retry(w, Cause::Connect),
            Err(why_not) => why_not,
        };
        let status = if timed_out { 504 } else { 502 };
        self.upstream_failed(
            w,
            status,
            &format!("cannot connect to upstream (not retried: {why_not})"),
        )
    }

    /// The upstream failed. Before the response head went out the client gets `status`;
    /// after it, the client connection is cut (nothing else can tell it the body is short).
    pub(super) fn upstream_failed(
        &mut self,
        w: &mut Ctx,
        status: u16,
        why: &str,
    ) -> Result<(), Close> {
        if status == 502 && self.retry_after(w, Cause::Error, why) {
            return Ok(());
        }
        if let Some(up) = &self.up {
            w.peer_outcome(up.upstream, up.peer, Outcome::Failed);
        }
        self.drop_upstream(w);
        let cfg = w.cfg.clone();
        log::error!("{why} while proxying{}", self.context(&cfg));
        let x = self.x.as_mut().expect("exchange");
        x.record.end_attempt(status, w.now);
        if x.head_sent() {
            // Too late for an error page: send what arrived intact, then cut the client.
            x.recv = Recv::Truncated;
            return Ok(());
        }
        let close = !x.keep_alive || !x.req_body.is_done();
        if let Some(b) = &mut self.req_buf {
            let n = b.pending().len();
            b.consume(n);
        }
        self.respond_error(w, status, close);
        Ok(())
    }

    // ---- proxying -----------------------------------------------------------------

    pub(super) fn step_proxy(&mut self, w: &mut Ctx) -> Step {
        if self
            .x
            .as_ref()
            .is_some_and(|x| matches!(x.recv, Recv::Truncated))
        {
            let progress = self.send_client()?;
            if self.out.is_empty()
                && self
                    .resp_buf
                    .as_ref()
                    .is_none_or(|b| b.pending().is_empty())
            {
                return Err(Close);
            }
            return Ok(progress);
        }
        if self.up.is_none() {
            return self.step_backoff(w);
        }
        let mut progress = false;
        let up = self.up.as_mut().expect("proxy phase has an upstream");
        if !up.connected {
            if !(up.stream.ready.r || up.stream.ready.w) {
                return Ok(false);
            }
            match up.stream.connect_state() {
                Connect::Done => {
                    up.connected = true;
                    progress = true;
                    let (u, p) = (up.upstream, up.peer);
                    self.upstream_connected(w, u, p, false);
                }
                Connect::InProgress => return Ok(false),
                Connect::Failed(e) => {
                    self.connect_failed(w, &e.to_string(), false)?;
                    return Ok(true);
                }
            }
        }
        progress |= self.send_request(w)?;
        if self.phase != Phase::Proxy {
            return Ok(true);
        }
        if self.request_done() {
            let x = self.x.as_mut().expect("exchange");
            if let Recv::Head { by: by @ None, .. } = &mut x.recv {
                let read_timeout = x
                    .upstream
                    .and_then(|u| w.cfg.upstream.get(u))
                    .map_or(Default::default(), |u| u.read_timeout);
                *by = Some(w.now + read_timeout);
            }
        }
        if self.splicing() {
            progress |= self.splice_body(w)?;
        } else {
            progress |= self.recv_response(w)?;
            if self.phase != Phase::Proxy {
                return Ok(true);
            }
            progress |= self.send_client()?;
        }
        if self.response_done() {
            self.finish(w)?;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Stalled on the client: the upstream could take more body but none has arrived.
    pub(super) fn waiting_for_body(&self) -> bool {
        let Some(x) = &self.x else { return false };
        self.up.as_ref().is_some_and(|u| u.connected)
            && x.up_head_pos == x.up_head.len()
            && !x.req_body.is_done()
            && !self.client.ready.r
            && self.req_buf.as_ref().is_none_or(|b| b.pending().is_empty())
    }

    fn request_done(&self) -> bool {
        let x = self.x.as_ref().expect("exchange");
        x.up_head_pos == x.up_head.len()
            && x.req_body.is_done()
            && self.req_buf.as_ref().is_none_or(|b| b.pending().is_empty())
    }

    fn splicing(&self) -> bool {
        self.x
            .as_ref()
            .is_some_and(|x| matches!(&x.recv, Recv::Body(r) if r.splice.is_some()))
    }

    fn response_done(&self) -> bool {
        let x = self.x.as_ref().expect("exchange");
        matches!(&x.recv, Recv::Body(r) if r.body.is_done() && r.splice.as_ref().is_none_or(|s| s.drained()))
            && self.out_pos == self.out.len()
            && self
                .resp_buf
                .as_ref()
                .is_none_or(|b| b.pending().is_empty())
            && !self.client.pending()
    }

    /// Sends the request head, then streams the body from the client as it arrives (head
    /// and the first body bytes go out in one system call).
    fn send_request(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        let x = self.x.as_mut().expect("exchange");
        let up = self.up.as_mut().expect("upstream");
        if x.send == Upload::Failed {
            return Ok(false);
        }
        // TLS records taken earlier and still waiting for the socket.
        if up.stream.pending() && up.stream.ready.w {
            match up.stream.flush() {
                Ok(()) => progress = true,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    x.send = Upload::Failed;
                    return Ok(true);
                }
            }
        }
        let max_body = w.cfg.server[x.server].client_max_body_size;
        // Bounded, so a fast client uploading to a fast upstream yields to the others.
        for _ in 0..SEND_ROUNDS {
            let mut buf = match &mut self.req_buf {
                Some(b) => b,
                // Nothing buffered and nothing to read: only the head may still go out. (A
                // readable client after the body means pipelined input or EOF, an abort.)
                None if !self.client.ready.r => {
                    if x.up_head_pos < x.up_head.len() && up.stream.ready.w {
                        match up
                            .stream
                            .write_pair(&x.up_head[x.up_head_pos..], &[], false)
                        {
                            Ok(n) => {
                                x.up_head_pos += n;
                                progress = true;
                                continue;
                            }
                            Err(e) if would_block(&e) => {}
                            Err(_) => {
                                x.send = Upload::Failed;
                                return Ok(true);
                            }
                        }
                    }
                    return Ok(progress);
                }
                None => self.req_buf.insert(w.bufs.get(BUF_SIZE)),
            };
            // The small buffer a head was read into is too small to stream a body through.
            if !x.req_body.is_done() && buf.capacity() < BUF_SIZE {
                let small = self.req_buf.take().expect("buffer present");
                buf = self
                    .req_buf
                    .insert(small.grow(w.bufs.get(BUF_SIZE), &mut w.bufs));
            }
            let mut moved = false;
            if !x.req_body.is_done() && !buf.unparsed().is_empty() {
                let a = forward_body(&mut x.req_body, buf);
                if a.result.is_ok() {
                    moved |= a.consumed > 0;
                    x.body_read += a.payload;
                }
                let verdict = match a.result {
                    Err(_) => Some(400),
                    Ok(_) if max_body > 0 && x.body_read > max_body => Some(413),
                    Ok(_) => None,
                };
                if let Some(status) = verdict {
                    log::info!(
                        "client {} sent {}",
                        self.peer_ip,
                        if status == 413 {
                            "too large a body"
                        } else {
                            "an invalid chunked body"
                        }
                    );
                    if x.head_sent() {
                        return Err(Close);
                    }
                    x.req_body = Framer::Done;
                    self.upstream_failed_client_side(w, status);
                    return Ok(true);
                }
            }
            let head = &x.up_head[x.up_head_pos..];
            if (!head.is_empty() || !buf.pending().is_empty()) && up.stream.ready.w {
                match up.stream.write_pair(head, buf.pending(), false) {
                    Ok(n) => {
                        let from_head = n.min(head.len());
                        x.up_head_pos += from_head;
                        buf.consume(n - from_head);
                        x.body_sent += (n - from_head) as u64;
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => {
                        x.send = Upload::Failed;
                        return Ok(true);
                    }
                }
            }
            // Read from the client: body bytes, or after the body, pipelined input and EOF.
            if self.client.ready.r && buf.has_room() && buf.unparsed().len() < buf.capacity() / 2 {
                match self.client.read_into(buf) {
                    // The client went away (or half-closed) before its response: abort.
                    Ok(0) => return Err(Close),
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => {}
                    Err(_) => return Err(Close),
                }
            }
            // An empty buffer goes back to the pool while the client is quiet: a slow body
            // holds no memory between its bytes.
            if buf.is_empty() && (x.req_body.is_done() || !self.client.ready.r) {
                w.bufs.put(self.req_buf.take().expect("buffer present"));
            }
            if !moved {
                return Ok(progress);
            }
            progress = true;
        }
        Ok(progress)
    }

    /// The client sent a bad body while proxying: answer it and drop the upstream.
    pub(super) fn upstream_failed_client_side(&mut self, w: &mut Ctx, status: u16) {
        self.drop_upstream(w);
        self.respond_error(w, status, true);
    }

    /// Reads the response: interim heads, the final head, then body bytes as room allows.
    fn recv_response(&mut self, w: &mut Ctx) -> Step {
        let mut progress = false;
        loop {
            let x = self.x.as_mut().expect("exchange");
            let up = self.up.as_mut().expect("upstream");
            // No buffer until the upstream has something to say.
            if self.resp_buf.is_none() && !up.stream.ready.r {
                return Ok(progress);
            }
            let buf = self.resp_buf.get_or_insert_with(|| w.bufs.get(BUF_SIZE));
            // An interim head still unsent to the client holds back the next one: a flood of
            // 1xx to a client that does not read stays within the buffers.
            let interim_pending = self.out_pos < self.out.len();
            if !x.head_sent() && !buf.is_empty() && !interim_pending {
                let spans = std::mem::take(&mut w.resp_spans);
                match response::parse_reusing(buf.held(), x.req.method == "HEAD", spans) {
                    Ok(Some(h)) if h.is_interim() => {
                        if let Recv::Head { interim, .. } = &mut x.recv {
                            *interim += 1;
                        }
                        if matches!(x.recv, Recv::Head { interim, .. } if interim > MAX_INTERIM) {
                            return self
                                .upstream_failed(w, 502, "upstream sent too many interim responses")
                                .map(|_| true);
                        }
                        if x.req.minor >= 1 {
                            h.write_interim(buf.held(), x.filters(&w.cfg), &mut self.out);
                        }
                        buf.skip_head(h.head_len);
                        w.resp_spans = h.into_spans();
                        progress = true;
                        continue;
                    }
                    Ok(Some(h)) if h.status == 101 => {
                        if x.req.upgrade.is_none() {
                            return self
                                .upstream_failed(w, 502, "upstream switched protocols unasked")
                                .map(|_| true);
                        }
                        if h.write_upgrade(buf.held(), x.filters(&w.cfg), &mut self.out)
                            .is_none()
                        {
                            return self
                                .upstream_failed(w, 502, "upstream sent 101 without Upgrade")
                                .map(|_| true);
                        }
                        // What follows the 101 head is already tunnel data; it stays put.
                        x.status = 101;
                        x.record.got_head(101, w.now);
                        buf.skip_head(h.head_len);
                        self.phase = Phase::Switching;
                        return Ok(true);
                    }
                    Ok(Some(h))
                        if matches!(h.status, 502..=504)
                            && retry::may_retry(w, x, Cause::Status(h.status)).is_ok() =>
                    {
                        let cfg = w.cfg.clone();
                        log::warn!(
                            "upstream \"{}\" peer {} answered {}: retrying{}",
                            cfg.upstream[up.upstream].name,
                            cfg.upstream[up.upstream].peers[up.peer].label(None),
                            h.status,
                            Context {
                                cfg: &cfg,
                                client: &self.peer_ip,
                                x: Some(x),
                            }
                        );
                        let (u, peer, status) = (up.upstream, up.peer, h.status);
                        w.resp_spans = h.into_spans();
                        x.record.got_head(status, w.now);
                        x.record.end_attempt(status, w.now);
                        w.peer_outcome(u, peer, Outcome::Status5xx);
                        self.retry(w, Cause::Status(status))?;
                        return Ok(true);
                    }
                    Ok(Some(h)) => {
                        // Unread request body bytes would be taken for the next request.
                        let keep = x.keep_alive && !w.draining && x.req_body.is_done();
                        let cfg = w.cfg.clone();
                        let head_start = self.out.len();
                        let request_id = cfg.server[x.server]
                            .request_id
                            .as_ref()
                            .map(|h| (h.header.as_str(), x.request_id.as_str()));
                        let framing = match h.write_client_id(
                            buf.held(),
                            x.req.minor,
                            keep,
                            x.filters(&cfg),
                            request_id,
                            &mut w.headers,
                            &mut self.out,
                        ) {
                            Ok(f) => f,
                            Err(status) => {
                                return self
                                    .upstream_failed(
                                        w,
                                        status,
                                        "a response filter refused the response",
                                    )
                                    .map(|_| true);
                            }
                        };
                        x.status = h.status;
                        let outcome = if h.status >= 500 {
                            Outcome::Status5xx
                        } else {
                            Outcome::Success
                        };
                        w.peer_outcome(up.upstream, up.peer, outcome);
                        x.close_after = framing.close;
                        x.recv = Recv::Body(RespState {
                            body: h.body.clone(),
                            decode: framing.decode_chunked,
                            reusable: h.reusable,
                            splice: None,
                        });
                        x.timings.response_head = Some(w.now);
                        x.record.got_head(h.status, w.now);
                        x.record.capture_response(
                            &cfg.log_formats.captures.response,
                            &self.out[head_start..],
                        );
                        w.emit(Event::ResponseHead { x });
                        buf.skip_head(h.head_len);
                        w.resp_spans = h.into_spans();
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
            if let Recv::Body(resp) = &mut x.recv {
                if !resp.body.is_done() && !buf.unparsed().is_empty() {
                    let before = buf.parsed;
                    let res = if resp.decode {
                        decode_into(&mut resp.body, buf)
                    } else {
                        // What is valid before an error still goes out before the cut.
                        forward_body(&mut resp.body, buf).result.map(|_| ())
                    };
                    if res.is_err() {
                        return self
                            .upstream_failed(w, 502, "upstream sent an invalid chunked body")
                            .map(|_| true);
                    }
                    progress |= buf.parsed != before;
                }
                if resp.body.is_done() {
                    if !buf.unparsed().is_empty() && resp.reusable {
                        // Bytes past the end of the response are never passed on, and the
                        // connection that carried them is never reused.
                        log::warn!("upstream sent more data than specified; closing it");
                        resp.reusable = false;
                    }
                    return Ok(progress);
                }
                // splice(2) moves socket bytes; TLS on either side needs them through rustls.
                if self.client.is_plain()
                    && up.stream.is_plain()
                    && splice::try_start(resp, buf.unparsed().is_empty(), &mut w.pipes)
                {
                    return Ok(true);
                }
            }
            if !up.stream.ready.r || !buf.has_room() || (!x.head_sent() && interim_pending) {
                self.drop_empty_resp_buf(w);
                return Ok(progress);
            }
            match up.stream.read_into(buf) {
                Ok(0) => return self.upstream_eof(w).map(|_| true),
                Ok(n) => {
                    if let Recv::Head { seen, .. } = &mut x.recv {
                        *seen = true;
                    }
                    if let Some(a) = x.record.current() {
                        a.received += n as u64;
                    }
                    progress = true;
                }
                Err(e) if would_block(&e) => {
                    self.drop_empty_resp_buf(w);
                    return Ok(progress);
                }
                // A failed handshake is a failed connect: the peer is charged, another may
                // be tried.
                Err(e) if up.stream.handshaking() => {
                    let why = format!("TLS handshake: {e}");
                    return self.connect_failed(w, &why, false).map(|_| true);
                }
                Err(e) => {
                    log::debug!("upstream read error: {e}");
                    return self.upstream_eof(w).map(|_| true);
                }
            }
        }
    }

    /// An empty response buffer goes back to the pool while the upstream is quiet.
    fn drop_empty_resp_buf(&mut self, w: &mut Ctx) {
        if self.resp_buf.as_ref().is_some_and(|b| b.is_empty()) {
            w.bufs.put(self.resp_buf.take().expect("buffer present"));
        }
    }

    /// The upstream closed its side. Retries a request that died on a reused connection
    /// before any answer (the keep-alive race), ends a close-delimited body, else fails.
    fn upstream_eof(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let x = self.x.as_mut().expect("exchange");
        let up = self.up.as_ref().expect("upstream");
        if let Recv::Body(resp) = &mut x.recv {
            if resp.body == Framer::UntilClose {
                resp.body = Framer::Done;
                resp.reusable = false;
                return Ok(());
            }
            return self.upstream_failed(w, 502, "upstream prematurely closed connection");
        }
        let nothing_back =
            !x.response_seen() && self.resp_buf.as_ref().is_none_or(|b| b.is_empty());
        // Replaying is safe only for an idempotent request or one of which no byte went out
        // (the upstream may have acted on a POST before it closed).
        let replayable = x.body_sent == 0 && (x.req.idempotent() || x.up_head_pos == 0);
        // Bounded: past STALE_REPLAYS the replay connects afresh (`reused` false).
        if up.reused && nothing_back && replayable {
            // A stale pooled connection says nothing about the peer: try again, logged as
            // one try and not counted against the route's `tries` (nginx gives the try back
            // the same way), or a peer that went away would use up the tries meant for
            // the others.
            x.tried.pop();
            x.record.attempts.pop();
            x.attempts -= 1;
            x.stale_replays += 1;
            self.drop_upstream(w);
            return self.connect(w);
        }
        self.upstream_failed(w, 502, "upstream prematurely closed connection")
    }

    /// The response is complete: release the upstream, log, then keep alive or close.
    fn finish(&mut self, w: &mut Ctx) -> Result<(), Close> {
        if let Some(Recv::Body(r)) = self.x.as_mut().map(|x| &mut x.recv) {
            if let Some(s) = r.splice.take() {
                w.pipes.put(s);
            }
        }
        let request_done = self.request_done();
        let x = self.x.as_mut().expect("exchange");
        x.record.end_attempt(0, w.now);
        let x = self.x.as_ref().expect("exchange");
        if let Some(mut up) = self.up.take() {
            let reusable = matches!(&x.recv, Recv::Body(r) if r.reusable)
                && request_done
                && x.send != Upload::Failed
                && !w.draining
                && self.resp_buf.as_ref().is_none_or(|b| b.is_empty())
                && nothing_unread(&mut up);
            w.release(up, reusable);
        }
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        let keep = !x.close_after && request_done;
        self.end_exchange(w, keep)
    }
}

impl Ctx {
    /// The one way an upstream connection goes back to the pool (nginx
    /// `ngx_http_upstream_free_keepalive_peer`): only a clean, reusable connection under the
    /// pool and request limits, in a worker that is not draining.
    /// `up` has just carried one more request; `reusable` is the session's verdict on it.
    pub(crate) fn release(&mut self, up: UpConn, reusable: bool) {
        let u = &self.cfg.upstream[up.upstream];
        let requests = up.requests + 1;
        // A peer given by host name that moved: its old address is on its way out.
        let moved = u.peers[up.peer].address_version(self.shared.view()) != up.version;
        if !reusable
            || moved
            || self.draining
            || u.keepalive == 0
            || requests >= u.keepalive_requests
        {
            self.upconns.try_remove(up.conn);
            return;
        }
        let (expires, max_idle) = (self.now + u.keepalive_timeout, u.keepalive);
        let id = self.next_id();
        let conn = up.conn;
        let idle = IdleConn {
            stream: up.stream,
            conn,
            upstream: up.upstream,
            peer: up.peer,
            version: up.version,
            requests,
            id,
            expires,
        };
        let (slot, evicted) = self.pool.put(idle, max_idle);
        if let Some(old) = evicted {
            self.upconns.try_remove(old.conn);
        }
        self.upconns[conn] = Owner::Idle(slot);
        self.timers.add(expires, key(slot, Kind::Idle), id);
    }
}

/// Whether the kernel holds nothing more from this upstream connection: bytes past the
/// response would otherwise reach the next client of the connection.
fn nothing_unread(up: &mut UpConn) -> bool {
    match up.stream.unread() {
        Unread::Nothing => true,
        Unread::Closed => false,
        Unread::Bytes => {
            log::warn!("upstream sent more data than specified; closing it");
            false
        }
    }
}

/// Marks the body bytes in `buf` forwardable: as they are for a length or until-close body,
/// with canonical framing for a chunked one (`http::reframe`). What was valid before an
/// error is marked too.
fn forward_body(f: &mut Framer, buf: &mut Buf) -> crate::http::body::Advance {
    if !f.is_chunked() {
        let a = f.advance(buf.unparsed());
        buf.pass(a.consumed);
        return a;
    }
    buf.rewrite(|bytes, out, inp| {
        let r = f.reframe(bytes, out, inp);
        let a = crate::http::body::Advance {
            consumed: r.inp - inp,
            payload: r.payload,
            result: r.result,
        };
        (r.out, r.inp, a)
    })
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
