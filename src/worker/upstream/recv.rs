//! The response half: heads (interim, 101, final) handed to the exchange one at a time,
//! then body bytes framed in the buffer for the session to write, or moved to a pipe.

use super::Cx;
use super::{BodyState, Driver, Failure, HeadWait, Owner, Phase, Trip};
use crate::http::body::Framer;
use crate::http::response::{self, ResponseHead};
use crate::worker::buffer::BUF_SIZE;
use crate::worker::transport::would_block;

/// Interim (1xx) responses passed on per request before the upstream is deemed broken.
pub const MAX_INTERIM: u32 = 16;

/// What reading the response came to.
pub enum Read {
    /// Nothing more for now; whether anything moved.
    Quiet(bool),
    /// A response head (interim, 101 or final) is parsed at the front of the buffer: the
    /// exchange answers it with `interim_passed`, `switched` or `body_starts`, or retries.
    Head(ResponseHead),
    /// A stale pooled connection closed with nothing back and the request may be
    /// replayed: the exchange connects again (not counted as a try).
    Replay,
    /// The TLS handshake failed: a failed connect (`connect_failed`).
    HandshakeFailed(String),
    /// The attempt failed (retries considered): the exchange logs and answers.
    Failed(Failure),
}

/// The most one read takes while a response head is awaited (see `read`): most heads are
/// far smaller, and a larger one takes several reads.
const HEAD_READ: usize = 4096;

/// How the peer's side of the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A FIN: end of stream.
    Closed,
    /// A read error (a reset): what came may be short.
    Broken,
}

impl Driver {
    /// Reads what the peer sent and frames it, as far as the buffer has room. `backlog`:
    /// the client has not taken an interim head yet (the next head waits, so a flood of
    /// 1xx to a client that does not read stays within the buffers). `plain_client`: the
    /// client socket could take a splice. A body being spliced moves socket to pipe
    /// instead (`splice_in`).
    pub fn read(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        backlog: bool,
        plain_client: bool,
    ) -> Read {
        if self.splice().is_some() {
            return self.splice_in(w, owner, trip);
        }
        let mut progress = false;
        loop {
            let (conn, awaiting) = match &mut self.phase {
                Phase::Sending { conn, .. } | Phase::AwaitingHead { conn, .. } => (conn, true),
                Phase::Body { conn, .. } => (conn, false),
                _ => return Read::Quiet(progress),
            };
            // No buffer until the peer has something to say.
            if self.resp.is_none() && !conn.stream.ready.r {
                return Read::Quiet(progress);
            }
            let buf = self.resp.get_or_insert_with(|| w.env.bufs.get(BUF_SIZE));
            if awaiting && !buf.is_empty() && !backlog {
                let spans = std::mem::take(&mut w.env.scratch.resp_spans);
                match response::parse_reusing(buf.held(), trip.req.method == "HEAD", spans) {
                    Ok(Some(h)) => return Read::Head(h),
                    Ok(None) if buf.is_full() => {
                        return self.failed(w, owner, trip, 502, "upstream sent too big a header")
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return self.failed(w, owner, trip, 502, "upstream sent an invalid header")
                    }
                }
            }
            if let Phase::Body { conn, body } = &mut self.phase {
                if !body.framer.is_done() && !buf.unparsed().is_empty() {
                    let before = buf.parsed;
                    let res = if body.decode {
                        buf.decode(&mut body.framer)
                    } else {
                        // What is valid before an error still goes out before the cut.
                        buf.forward(&mut body.framer).result.map(|_| ())
                    };
                    if res.is_err() {
                        let why = "upstream sent an invalid chunked body";
                        return self.failed(w, owner, trip, 502, why);
                    }
                    progress |= buf.parsed != before;
                }
                if body.framer.is_done() {
                    if !buf.unparsed().is_empty() && body.reusable {
                        // Bytes past the end of the response are never passed on, and the
                        // connection that carried them is never reused.
                        log::warn!("upstream sent more data than specified; closing it");
                        body.reusable = false;
                    }
                    return Read::Quiet(progress);
                }
                // splice(2) moves socket bytes; TLS on either side needs them through rustls.
                if plain_client
                    && conn.stream.is_plain()
                    && buf.unparsed().is_empty()
                    && self.start_splice(w)
                {
                    return Read::Quiet(true);
                }
            }
            let Some(conn) = super::conn_of(&mut self.phase) else {
                return Read::Quiet(progress);
            };
            let buf = self.resp.as_mut().expect("taken above");
            if !conn.stream.ready.r || !buf.has_room() || (awaiting && backlog) {
                self.drop_empty_resp(w);
                return Read::Quiet(progress);
            }
            // A head is read in small bites where the body may be spliced: what the first
            // read takes past the head is copied in and out again, where a splice would move
            // it without a copy (a 16 KiB read of a 64 KiB response copied 16 KiB twice).
            let limit = if awaiting && plain_client {
                HEAD_READ
            } else {
                usize::MAX
            };
            match conn.stream.read_into_at_most(buf, limit) {
                Ok(0) => return self.eof(w, owner, trip, End::Closed),
                Ok(n) => {
                    if let Phase::Sending { head, .. } | Phase::AwaitingHead { head, .. } =
                        &mut self.phase
                    {
                        head.seen = true;
                    }
                    if let Some(a) = trip.record.current() {
                        a.received += n as u64;
                    }
                    progress = true;
                }
                Err(e) if would_block(&e) => {
                    self.drop_empty_resp(w);
                    return Read::Quiet(progress);
                }
                // A failed handshake is a failed connect: the peer is charged, another may
                // be tried.
                Err(e) if conn.stream.handshaking() => {
                    return Read::HandshakeFailed(format!("TLS handshake: {e}"));
                }
                Err(e) => {
                    log::debug!("upstream read error: {e}");
                    return self.eof(w, owner, trip, End::Broken);
                }
            }
        }
    }

    /// `fail`, as what reading came to.
    pub(super) fn failed(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        status: u16,
        why: &str,
    ) -> Read {
        match self.fail(w, owner, trip, status, why) {
            None => Read::Quiet(true),
            Some(f) => Read::Failed(f),
        }
    }

    /// The peer's side ended. A request that died on a reused connection before any
    /// answer is replayed (the keep-alive race), a close-delimited body ends when the peer
    /// closed (not when the connection broke: a reset mid-body is a short body, and the
    /// client is cut rather than told it got all of it), else it failed.
    fn eof(&mut self, w: &mut Cx, owner: Owner, trip: &mut Trip, end: End) -> Read {
        let why = match end {
            End::Closed => "upstream prematurely closed connection",
            End::Broken => "upstream connection broke (reset) while reading the response",
        };
        if let Phase::Body { body, .. } = &mut self.phase {
            if body.framer == Framer::UntilClose && end == End::Closed {
                body.framer = Framer::Done;
                body.reusable = false;
                return Read::Quiet(true);
            }
            return self.failed(w, owner, trip, 502, why);
        }
        let nothing_back = !self.response_seen() && self.resp.as_ref().is_none_or(|b| b.is_empty());
        // Replaying is safe only for an idempotent request or one of which no byte went out
        // (the peer may have acted on a POST before it closed).
        let replayable = self.body_sent == 0 && (trip.req.idempotent() || self.head_pos == 0);
        let reused = self.conn().is_some_and(|c| c.reused);
        // Bounded: past STALE_REPLAYS the replay connects afresh (`reused` false).
        if reused && nothing_back && replayable {
            // A stale pooled connection says nothing about the peer: try again, logged as
            // one try and not counted against the route's `tries` (nginx gives the try back
            // the same way), or a peer that went away would use up the tries meant for
            // the others.
            self.tried.pop();
            trip.record.attempts.pop();
            self.attempts -= 1;
            self.stale_replays += 1;
            self.drop_conn(Phase::Off, w);
            if let Some(b) = self.resp.take() {
                w.env.bufs.put(b);
            }
            return Read::Replay;
        }
        self.failed(w, owner, trip, 502, why)
    }

    /// Counts an interim head just passed on (or dropped for an HTTP/1.0 client) and skips
    /// it. Returns false when the peer has sent too many.
    pub fn interim_passed(&mut self, w: &mut Cx, h: ResponseHead) -> bool {
        let mut ok = true;
        let read_timeout = self
            .upstream
            .and_then(|u| w.env.cfg.upstream.get(u))
            .map_or(Default::default(), |u| u.read_timeout);
        match &mut self.phase {
            Phase::Sending { head, .. } => {
                head.interim += 1;
                ok = head.interim <= MAX_INTERIM;
            }
            // A whole interim head is the peer saying it is working on it (102 Processing
            // exists for that): the final head's deadline starts again, at most
            // MAX_INTERIM times.
            Phase::AwaitingHead { head, by, .. } => {
                head.interim += 1;
                ok = head.interim <= MAX_INTERIM;
                *by = w.env.now + read_timeout;
            }
            _ => {}
        }
        self.skip_head(w, h);
        ok
    }

    /// The final head went to the client: the body streams (HTTP/1.0 clients get chunked
    /// framing stripped: `decode`).
    pub fn body_starts(&mut self, w: &mut Cx, h: ResponseHead, decode: bool) {
        let body = BodyState {
            framer: h.body.clone(),
            decode,
            reusable: h.reusable,
        };
        if let Some(conn) = self.take_conn(Phase::Off, w) {
            self.phase = Phase::Body { conn, body };
        }
        self.skip_head(w, h);
    }

    /// The peer switched protocols: the connection waits for the tunnel. What follows the
    /// 101 head is already tunnel data and stays in the buffer.
    pub fn switched(&mut self, w: &mut Cx, h: ResponseHead) {
        if let Some(conn) = self.take_conn(Phase::Off, w) {
            self.phase = Phase::Switched { conn };
        }
        self.skip_head(w, h);
    }

    /// A head that is answered (or retried) is gone from the buffer; its span list is
    /// kept for the next parse.
    pub fn skip_head(&mut self, w: &mut Cx, h: ResponseHead) {
        if let Some(b) = &mut self.resp {
            b.skip_head(h.head_len);
        }
        w.env.scratch.resp_spans = h.into_spans();
    }

    /// What waits for the final head: interim heads seen.
    pub fn head_wait(&self) -> Option<HeadWait> {
        match &self.phase {
            Phase::Sending { head, .. } | Phase::AwaitingHead { head, .. } => Some(*head),
            _ => None,
        }
    }
}
