//! The session's side of a proxied exchange: request body bytes read from the client and
//! framed (limits enforced), handed to the exchange for its upstream; the response head the
//! exchange serialized and the body bytes its source holds, written to the client; and what
//! the exchange asks for (`Next`): an error page, a protocol switch.

use super::{Close, Http1, Left, Phase, Step};
use crate::config::Config;
use crate::worker::buffer::BUF_SIZE;
use crate::worker::exchange::Ctx;
use crate::worker::exchange::{ClientSide, Exchange, Lend, Next, Wait};
use crate::worker::transport::would_block;
use crate::worker::upstream::Owner;
use std::time::Instant;

impl Http1 {
    /// The exchange in flight and what the session lends it for a step.
    fn lend(&mut self) -> Option<(&mut Exchange, Lend<'_>)> {
        let plain = self.client.is_plain();
        let x = self.x.as_deref_mut()?;
        let lend = Lend {
            owner: Owner::Exchange {
                session: self.slot,
                stream: 0,
            },
            client: &self.peer_ip,
            out: &mut self.out,
            out_pos: self.out_pos,
            plain,
            body: self.req_buf.as_mut(),
        };
        Some((x, lend))
    }

    /// Does what the exchange asked for. Returns whether anything moved.
    fn on_next(&mut self, w: &mut Ctx, next: Next) -> bool {
        match next {
            Next::Go(moved) => moved,
            Next::Respond(status) => {
                // The request body is not read on: the connection closes after the page
                // unless all of it was read.
                let close = self
                    .x
                    .as_ref()
                    .is_none_or(|x| !x.keep_alive || !x.req_body.is_done());
                if let Some(b) = &mut self.req_buf {
                    let n = b.pending().len();
                    b.consume(n);
                }
                self.respond_error(w, status, close);
                true
            }
            Next::Switch => {
                self.phase = Phase::Switching;
                true
            }
            // Only `step` says so, and `step_proxy` handles it.
            Next::Cut => true,
        }
    }

    /// One round of a proxied exchange: what the client sent of the body is read and
    /// framed; the exchange takes its step (connect, send, read the response, heads into
    /// `out`); what it has for the client is written.
    pub(super) fn step_proxy(&mut self, w: &mut Ctx) -> Step {
        let mut progress = self.take_body(w)?;
        if self.phase != Phase::Proxy {
            return Ok(true);
        }
        let Some((x, mut lend)) = self.lend() else {
            return Err(Close);
        };
        let next = x.step(w, &mut lend);
        if matches!(next, Next::Cut) {
            // The upstream failed after the head went out: flush what arrived, then cut
            // the client (nothing else can tell it the body is short).
            let (progress, left) = self.send_client()?;
            if left == Left::Waiting {
                return Ok(progress);
            }
            // A reset, so that a body read until close is not taken for a whole one.
            self.client.reset_on_close();
            return Err(Close);
        }
        progress |= self.on_next(w, next);
        if self.phase != Phase::Proxy {
            return Ok(true);
        }
        self.drop_empty_body_buf(w);
        let (moved, left) = self.send_client()?;
        progress |= moved;
        if left == Left::Nothing {
            self.finish(w)?;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Reads what the client sent of the request body (one buffer ahead at most) and frames
    /// it, enforcing `client_max_body_size`; the exchange's step sends the framed bytes.
    /// After the body, a read finds pipelined input or EOF (an abort).
    fn take_body(&mut self, w: &mut Ctx) -> Step {
        let Some(x) = self.x.as_deref_mut() else {
            return Err(Close);
        };
        let mut buf = match &mut self.req_buf {
            Some(b) => b,
            // Nothing buffered and nothing to read: only the head may still go out.
            None if !self.client.ready.r => return Ok(false),
            None => self.req_buf.insert(w.env.bufs.get(BUF_SIZE)),
        };
        // The small buffer a head was read into is too small to stream a body through.
        if !x.req_body.is_done() && buf.capacity() < BUF_SIZE {
            let small = self.req_buf.take().expect("buffer present");
            buf = self
                .req_buf
                .insert(small.grow(w.env.bufs.get(BUF_SIZE), &mut w.env.bufs));
        }
        let mut moved = false;
        if self.client.ready.r && buf.has_room() && buf.unparsed().len() < buf.capacity() / 2 {
            match self.client.read_into(buf) {
                // The client went away (or half-closed) before its response: abort.
                Ok(0) => return Err(Close),
                Ok(_) => moved = true,
                Err(e) if would_block(&e) => {}
                Err(_) => return Err(Close),
            }
        }
        if x.req_body.is_done() || buf.unparsed().is_empty() {
            return Ok(moved);
        }
        let max_body = w.env.cfg.server[x.server].client_max_body_size;
        let a = buf.forward(&mut x.req_body);
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
            if x.response_started() {
                return Err(Close);
            }
            x.req_body = crate::http::body::Framer::Done;
            self.client_failed(w, status);
            return Ok(true);
        }
        Ok(moved)
    }

    /// An empty body buffer goes back to the pool while the client is quiet: a slow body
    /// holds no memory between its bytes.
    fn drop_empty_body_buf(&mut self, w: &mut Ctx) {
        let body_done = self.x.as_ref().is_none_or(|x| x.req_body.is_done());
        if self.req_buf.as_ref().is_some_and(|b| b.is_empty())
            && (body_done || !self.client.ready.r)
        {
            w.env.bufs.put(self.req_buf.take().expect("buffer present"));
        }
    }

    /// The client sent a bad body (or none in time) while proxying: answer it and close;
    /// the upstream attempt is dropped.
    fn client_failed(&mut self, w: &mut Ctx, status: u16) {
        self.respond_error(w, status, true);
    }

    /// The client side, for the exchange's deadline.
    fn client_side(&self) -> ClientSide {
        let body_left = self
            .req_buf
            .as_ref()
            .is_some_and(|b| !b.pending().is_empty());
        // Response bytes wait for a socket that does not take them: a head in `out`, or
        // body bytes (buffered, piped or in a file).
        let waiting =
            self.out_pos < self.out.len() || self.x.as_ref().is_some_and(|x| x.body_waiting());
        ClientSide {
            body_left,
            quiet: !self.client.ready.r && !body_left,
            full: waiting && !self.client.ready.w,
        }
    }

    /// The response is complete: release the upstream, log, then keep alive or close.
    fn finish(&mut self, w: &mut Ctx) -> Result<(), Close> {
        let body_left = self.client_side().body_left;
        let Some(x) = self.x.as_deref_mut() else {
            return Err(Close);
        };
        let keep = x.finish(w, body_left);
        self.end_exchange(w, keep)
    }

    /// When the proxy phase times out, whichever side it waits for (the exchange knows).
    pub(super) fn proxy_deadline(&mut self, cfg: &Config, now: Instant) -> Option<Instant> {
        let side = self.client_side();
        let x = self.x.as_deref_mut()?;
        Some(x.deadline(cfg, now, side))
    }

    /// The proxy phase's deadline passed. Returns whether the session lives on.
    pub(super) fn proxy_timeout(&mut self, w: &mut Ctx) -> bool {
        let Some(x) = &self.x else { return false };
        match x.wait(self.client_side()) {
            // A retry's backoff is over: `drive` connects.
            Wait::Backoff(_) => true,
            // Flushing what a failed upstream sent before the cut took too long: the
            // response is short, so the close is a reset.
            Wait::Gone => {
                self.client.reset_on_close();
                self.abort(w);
                false
            }
            // The client does not take its response: its fault, not the upstream's (no
            // failure is charged to the peer, whose connection is closed with the
            // exchange). The response is short, so the close is a reset.
            Wait::ClientFull => {
                log::info!(
                    "client timed out reading the response{}",
                    self.context(&w.env.cfg)
                );
                self.client.reset_on_close();
                self.abort(w);
                false
            }
            Wait::ClientBody => {
                log::info!(
                    "client timed out sending the request body{}",
                    self.context(&w.env.cfg)
                );
                if x.response_started() {
                    self.abort(w);
                    return false;
                }
                self.client_failed(w, 408);
                true
            }
            _ => {
                if let Some((x, mut lend)) = self.lend() {
                    let next = x.upstream_timeout(w, &mut lend);
                    self.on_next(w, next);
                }
                if self.phase == Phase::Proxy {
                    // A retry's backoff is not a move `drive` sees: its deadline is set here.
                    self.arm_timer(w);
                }
                true
            }
        }
    }
}
