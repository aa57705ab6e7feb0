//! A proxied exchange: what each outcome of its upstream driver means for the client. The
//! driver reports heads, failures and replays; this decides what the client gets (the head
//! through the route's filters, an error page, a cut), logs, and records the tries.

use super::Ctx;
use super::Exchange;
use crate::config::Config;
use crate::http::request_id::RequestId;
use crate::worker::buffer::Buf;
use crate::worker::events::{Context, Event};
use crate::worker::filters::{self, Cx, Verdict};
use crate::worker::transport::PeerIp;
use crate::worker::upstream::{
    may_retry, peer_outcome, Advance, Cause, Driver, Failure, Outcome, Owner, Phase, Read, Started,
    Trip, MAX_INTERIM,
};

/// What the session lends its exchange for one step.
pub struct Lend<'a> {
    /// Who the upstream connection's events go to.
    pub owner: Owner,
    pub client: &'a PeerIp,
    /// Response heads for the client are serialized here...
    pub out: &'a mut Vec<u8>,
    /// ...after the first `out_pos` bytes, which the client has taken.
    pub out_pos: usize,
    /// The client socket is plain TCP (a long body may be spliced to it).
    pub plain: bool,
    /// Request body bytes the session framed, for the upstream (the step consumes what
    /// it sends).
    pub body: Option<&'a mut Buf>,
}

/// What a step of a proxied exchange asks of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Carry on; whether anything moved.
    Go(bool),
    /// Answer with this error status now (the attempt is over).
    Respond(u16),
    /// The upstream switched protocols: flush the 101 head, then become a tunnel.
    Switch,
    /// The upstream failed after the head went out: flush what arrived, then cut the
    /// client.
    Cut,
}

/// Borrows of an exchange for one driver call: the driver, and what it may read or record.
macro_rules! trip {
    ($x:expr, $cfg:expr, $client:expr, $up:ident, $trip:ident) => {
        let Exchange {
            req,
            record,
            driver: $up,
            route,
            server,
            request_id,
            req_body,
            ..
        } = $x;
        let log = Context {
            cfg: $cfg,
            client: $client,
            req: Some(req),
            server: *server,
            upstream: $up.upstream,
            peer: record.attempts.last().and_then(|a| a.addr),
            request_id: request_id.as_str(),
        };
        let rule = route
            .and_then(|r| $cfg.server[*server].route.get(r))
            .map(|r| &r.retry);
        #[allow(unused_mut)]
        let mut $trip = Trip {
            req,
            record,
            rule,
            body_done: req_body.is_done(),
            log: &log,
        };
    };
}

impl Exchange {
    /// What a (re)started attempt came to: connected, under way, or failed.
    fn started(&mut self, w: &mut Ctx, lend: &mut Lend, r: Result<Started, Failure>) -> Next {
        match r {
            Ok(Started::Pooled) => {
                self.emit_connected(w, true);
                Next::Go(true)
            }
            Ok(Started::Connecting | Started::Backoff) => Next::Go(true),
            Err(f) => self.give_up(w, lend, f),
        }
    }

    fn emit_connected(&self, w: &mut Ctx, reused: bool) {
        let cfg = w.env.cfg.clone();
        if let Some(conn) = self.driver.conn() {
            let peer = &cfg.upstream[conn.upstream].peers[conn.peer].name;
            w.emit(Event::UpstreamConnected {
                x: self.facts(),
                peer,
                reused,
            });
        }
    }

    /// The attempt failed for good (retries were considered): log it, record it, and tell
    /// the session to answer (or, when the head already went out, to flush and cut).
    fn give_up(&mut self, w: &mut Ctx, lend: &Lend, f: Failure) -> Next {
        let cfg = w.env.cfg.clone();
        log::error!(
            "{} while proxying{}",
            f.why,
            Context::of(&cfg, lend.client, self.facts())
        );
        self.record.end_attempt(f.status, w.env.now);
        if matches!(self.driver.phase, Phase::Truncated) {
            Next::Go(true)
        } else {
            Next::Respond(f.status)
        }
    }

    /// One round of a proxied exchange, in the driver's order: a backoff that is over
    /// connects, a connect that completed lets the request go; the head and the framed body
    /// bytes the session lent go out; the response is read as far as it can be (heads
    /// through the route's filters into `lend.out`, body bytes left in the driver for the
    /// session to write).
    pub fn step(&mut self, w: &mut Ctx, lend: &mut Lend) -> Next {
        if matches!(self.driver.phase, Phase::Truncated) {
            return Next::Cut;
        }
        let cfg = w.env.cfg.clone();
        let advance = {
            trip!(self, &cfg, lend.client, driver, trip);
            driver.advance(&mut w.up(), lend.owner, &mut trip, lend.body.as_deref_mut())
        };
        let moved = match advance {
            Advance::Waiting(moved) => return Next::Go(moved),
            Advance::Failed(f) => return self.give_up(w, lend, f),
            Advance::Sent(moved) => moved,
            Advance::Connected { reused } => {
                self.emit_connected(w, reused);
                true
            }
        };
        match self.step_response(w, lend) {
            Next::Go(m) => Next::Go(moved || m),
            other => other,
        }
    }

    /// Reads the response as far as it can: heads go through the route's filters into
    /// `lend.out`, body bytes wait in the driver for the session to write.
    fn step_response(&mut self, w: &mut Ctx, lend: &mut Lend) -> Next {
        let cfg = w.env.cfg.clone();
        let mut progress = false;
        loop {
            let backlog = lend.out.len() > lend.out_pos;
            let read = {
                trip!(self, &cfg, lend.client, driver, trip);
                driver.read(&mut w.up(), lend.owner, &mut trip, backlog, lend.plain)
            };
            match read {
                Read::Quiet(moved) => return Next::Go(progress || moved),
                Read::Head(h) => {
                    progress = true;
                    match self.on_head(w, &cfg, lend, h) {
                        Next::Go(_) => {}
                        other => return other,
                    }
                }
                Read::Replay => {
                    progress = true;
                    trip!(self, &cfg, lend.client, driver, trip);
                    let r = driver.connect(&mut w.up(), lend.owner, &mut trip);
                    match self.started(w, lend, r) {
                        Next::Go(_) => {}
                        other => return other,
                    }
                }
                Read::HandshakeFailed(why) => {
                    trip!(self, &cfg, lend.client, driver, trip);
                    let r = driver.connect_failed(&mut w.up(), lend.owner, &mut trip, &why, false);
                    return match self.started(w, lend, r) {
                        Next::Go(_) => Next::Go(true),
                        other => other,
                    };
                }
                Read::Failed(f) => return self.give_up(w, lend, f),
            }
        }
    }

    /// What the response filters may know (the client's certificate is the request's
    /// business, not the response's).
    fn response_cx<'a>(
        &self,
        w: &Ctx,
        cfg: &'a Config,
        lend: &'a Lend,
        rid: &'a RequestId,
    ) -> Cx<'a> {
        let proto = if lend.plain { "http" } else { "https" };
        self.filter_cx(w, cfg, (lend.client.as_str(), proto, None), rid)
    }

    /// A response head came: an interim one is passed on, a 101 switches protocols, a
    /// retriable 5xx goes to another peer, a final one goes to the client. Each goes
    /// through the route's response filters first.
    fn on_head(
        &mut self,
        w: &mut Ctx,
        cfg: &Config,
        lend: &mut Lend,
        h: crate::http::response::ResponseHead,
    ) -> Next {
        let chain = self.chain(cfg);
        fn raw(driver: &Driver) -> &[u8] {
            driver.resp.as_ref().map_or(&[], |b| b.held())
        }
        let rid = self.request_id;
        let mut fields = std::mem::take(&mut w.env.scratch.headers);
        if h.is_interim() {
            let too_many = self
                .driver
                .head_wait()
                .is_some_and(|h| h.interim >= MAX_INTERIM);
            if too_many {
                w.env.scratch.headers = fields;
                self.driver.skip_head(&mut w.up(), h);
                return self.fail(
                    w,
                    cfg,
                    lend,
                    502,
                    "upstream sent too many interim responses",
                );
            }
            // An HTTP/1.0 client cannot read one; an interim head a filter refuses is dropped.
            if self.req.minor >= 1 {
                h.fields(&mut fields);
                let cx = self.response_cx(w, cfg, lend, &rid);
                if filters::on_response(chain, raw(&self.driver), &mut fields, &cx)
                    == Verdict::Continue
                {
                    h.write_interim(raw(&self.driver), &fields, lend.out);
                }
            }
            w.env.scratch.headers = fields;
            self.driver.interim_passed(&mut w.up(), h);
            return Next::Go(true);
        }
        if h.status == 101 {
            h.fields(&mut fields);
            let cx = self.response_cx(w, cfg, lend, &rid);
            let passed = filters::on_response(chain, raw(&self.driver), &mut fields, &cx);
            let why = if self.req.upgrade.is_none() {
                Some("upstream switched protocols unasked")
            } else if passed != Verdict::Continue
                || h.write_upgrade(raw(&self.driver), &fields, lend.out)
                    .is_none()
            {
                Some("upstream sent 101 without Upgrade")
            } else {
                None
            };
            w.env.scratch.headers = fields;
            if let Some(why) = why {
                self.driver.skip_head(&mut w.up(), h);
                return self.fail(w, cfg, lend, 502, why);
            }
            self.status = 101;
            self.record.got_head(101, w.env.now);
            self.driver.switched(&mut w.up(), h);
            return Next::Switch;
        }
        if matches!(h.status, 502..=504) {
            let retry = {
                trip!(self, cfg, lend.client, driver, trip);
                may_retry(&mut w.up(), driver, &trip, Cause::Status(h.status)).is_ok()
            };
            if retry {
                w.env.scratch.headers = fields;
                return self.retry_status(w, cfg, lend, h);
            }
        }
        // Unread request body bytes would be taken for the next request.
        let keep = self.keep_alive && !w.env.draining() && self.req_body.is_done();
        h.fields(&mut fields);
        // The request id replaces any the upstream sent, before the filters (so
        // `response_headers` may still remove it).
        if let Some(id) = &cfg.server[self.server].request_id {
            fields.remove_named(raw(&self.driver), id.header.as_bytes());
            fields.append_copy(id.header.as_bytes(), rid.as_str().as_bytes());
        }
        let cx = self.response_cx(w, cfg, lend, &rid);
        let verdict = filters::on_response(chain, raw(&self.driver), &mut fields, &cx);
        if let Verdict::Answer(a) = verdict {
            w.env.scratch.headers = fields;
            self.driver.skip_head(&mut w.up(), h);
            return self.fail(
                w,
                cfg,
                lend,
                a.status,
                "a response filter refused the response",
            );
        }
        let head_start = lend.out.len();
        let framing = h.write_client(raw(&self.driver), self.req.minor, keep, &fields, lend.out);
        w.env.scratch.headers = fields;
        self.status = h.status;
        if let Some(conn) = self.driver.conn() {
            let outcome = if h.status >= 500 {
                Outcome::Status5xx
            } else {
                Outcome::Success
            };
            peer_outcome(&w.env, conn.upstream, conn.peer, outcome);
        }
        self.close_after = framing.close;
        self.record.got_head(h.status, w.env.now);
        self.record
            .capture_response(&cfg.log_formats.captures.response, &lend.out[head_start..]);
        self.driver
            .body_starts(&mut w.up(), h, framing.decode_chunked);
        w.emit(Event::ResponseHead { x: self.facts() });
        Next::Go(true)
    }

    /// A 502/503/504 the route retries: the try ends with that status and the request goes
    /// to another peer after a backoff.
    fn retry_status(
        &mut self,
        w: &mut Ctx,
        cfg: &Config,
        lend: &mut Lend,
        h: crate::http::response::ResponseHead,
    ) -> Next {
        let status = h.status;
        self.driver.skip_head(&mut w.up(), h);
        if let Some(conn) = self.driver.conn() {
            let (u, peer) = (conn.upstream, conn.peer);
            log::warn!(
                "upstream \"{}\" peer {} answered {status}: retrying{}",
                cfg.upstream[u].name,
                cfg.upstream[u].peers[peer].label(None),
                Context::of(cfg, lend.client, self.facts())
            );
            peer_outcome(&w.env, u, peer, Outcome::Status5xx);
        }
        self.record.got_head(status, w.env.now);
        self.record.end_attempt(status, w.env.now);
        trip!(self, cfg, lend.client, driver, trip);
        let r = driver.retry(&mut w.up(), lend.owner, &mut trip, Cause::Status(status));
        self.started(w, lend, r)
    }

    /// The attempt failed with `status` (a 502 may still be retried).
    fn fail(&mut self, w: &mut Ctx, cfg: &Config, lend: &mut Lend, status: u16, why: &str) -> Next {
        let failure = {
            trip!(self, cfg, lend.client, driver, trip);
            driver.fail(&mut w.up(), lend.owner, &mut trip, status, why)
        };
        match failure {
            None => Next::Go(true),
            Some(f) => self.give_up(w, lend, f),
        }
    }

    /// The upstream's deadline passed (see `Http1::on_timeout`): a connect that took too
    /// long fails over to the next peer; a head that did not come is retried when the route
    /// says so; anything else is a 504 (or, after the head, a cut).
    pub fn upstream_timeout(&mut self, w: &mut Ctx, lend: &mut Lend) -> Next {
        let cfg = w.env.cfg.clone();
        if matches!(
            self.driver.phase,
            Phase::Backoff { .. } | Phase::Off | Phase::Ready
        ) {
            return Next::Go(true);
        }
        if self.driver.establishing() {
            trip!(self, &cfg, lend.client, driver, trip);
            let r = driver.connect_failed(&mut w.up(), lend.owner, &mut trip, "timed out", true);
            return self.started(w, lend, r);
        }
        let why = "upstream timed out";
        if !self.driver.head_sent() && !self.driver.response_seen() {
            let retrying = {
                trip!(self, &cfg, lend.client, driver, trip);
                driver.retry_after(&mut w.up(), lend.owner, &mut trip, Cause::Timeout, why)
            };
            if retrying {
                return Next::Go(true);
            }
        }
        self.fail(w, &cfg, lend, 504, why)
    }

    /// The response is complete: the try ends and the connection goes back to the pool
    /// when it may carry another request (all of this one went out: `body_left` says
    /// whether framed body bytes still wait in the session). Returns whether the client
    /// connection may carry another request too.
    pub fn finish(&mut self, w: &mut Ctx, body_left: bool) -> bool {
        let request_done = self.driver.head_written() && self.req_body.is_done() && !body_left;
        self.record.end_attempt(0, w.env.now);
        self.driver.finish(&mut w.up(), request_done);
        !self.close_after && request_done
    }
}
