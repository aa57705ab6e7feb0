//! Where the response body the session writes comes from, and what the session asks of its
//! exchange while it writes: one type whatever makes the body (an answer made here, the
//! upstream's buffer or splice pipe; a file or a cached object next), so the session's
//! writer has one shape. A transform (compression, a cache tee) will sit between a source
//! and the writer here.

use super::Ctx;
use super::Exchange;
use crate::worker::buffer::Buf;
use crate::worker::upstream::{Splice, UpConn};
use std::sync::Arc;

/// A response body's source.
#[derive(Debug, Default)]
pub enum Source {
    /// No body (none yet, a HEAD answer, an empty one).
    #[default]
    None,
    /// An answer made here, written from `pos` (a configured body is shared, not copied).
    Bytes { data: Arc<[u8]>, pos: usize },
    /// The upstream: bytes framed in the driver's buffer, then its splice pipe.
    Upstream,
}

impl Exchange {
    /// Body bytes ready for the client now.
    pub fn body_chunk(&self) -> &[u8] {
        match &self.body {
            Source::None => &[],
            Source::Bytes { data, pos } => &data[*pos..],
            Source::Upstream => self.driver.body_pending(),
        }
    }

    /// The client took `n` bytes of `body_chunk`.
    pub fn body_taken(&mut self, n: usize) {
        match &mut self.body {
            Source::None => {}
            Source::Bytes { pos, .. } => *pos += n,
            Source::Upstream => self.driver.body_consumed(n),
        }
        self.bytes_sent += n as u64;
    }

    /// The pipe a spliced upstream body waits in, once the buffered bytes are out.
    pub fn body_pipe(&mut self) -> Option<&mut Splice> {
        match self.body {
            Source::Upstream if self.driver.body_pending().is_empty() => self.driver.splice(),
            _ => None,
        }
    }

    /// The pipe's bytes the client took.
    pub fn body_piped(&mut self, n: usize) {
        if let Some(s) = self.driver.splice() {
            s.took(n);
        }
        self.bytes_sent += n as u64;
    }

    /// Every byte of the body has been produced (what the session holds is all there will
    /// be): a connection that closes after it may send its last bytes with the FIN.
    pub fn body_all_read(&self) -> bool {
        match &self.body {
            Source::None | Source::Bytes { .. } => true,
            Source::Upstream => self.driver.all_read(),
        }
    }

    /// The proxied response came whole and its body went to the session's writer (false
    /// until the final head came).
    pub fn upstream_done(&self) -> bool {
        matches!(self.body, Source::Upstream) && self.driver.response_done()
    }

    /// The whole body of an answer made here went to the session's writer.
    pub fn body_done(&self) -> bool {
        match &self.body {
            Source::None => true,
            Source::Bytes { data, pos } => *pos == data.len(),
            Source::Upstream => self.driver.response_done(),
        }
    }

    /// Readiness for the exchange's upstream connection.
    pub fn upstream_event(&mut self, readable: bool, writable: bool, hup: bool) {
        self.driver.on_event(readable, writable, hup);
    }

    /// The request head went upstream (body bytes may still follow).
    pub fn request_head_out(&self) -> bool {
        self.driver.head_written()
    }

    /// The final response head went to the client: an error page can no longer replace it.
    pub fn response_started(&self) -> bool {
        self.driver.head_sent()
    }

    /// Gives back what the exchange holds outside itself: its upstream connection (closed),
    /// buffer and pipe. For an exchange that is answered here instead, ends, or is cut.
    pub fn release(&mut self, w: &mut Ctx) {
        self.driver.close(&mut w.up());
        self.body = Source::None;
    }

    /// After a 101: the upstream connection and what it sent past the head, for a tunnel.
    pub fn take_tunnel(&mut self, w: &mut Ctx) -> Option<(UpConn, Option<Buf>)> {
        self.driver.take_switched(&mut w.up())
    }
}

/// What the upstream side waits for, for the session's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamWait {
    /// A retry's backoff, until then.
    Backoff(std::time::Instant),
    /// No connection: the upstream failed and what it sent is being flushed.
    Gone,
    /// The TCP connect or TLS handshake (`connect_timeout`).
    Connecting,
    /// The final response head: by then once the request is all sent, else `read_timeout`
    /// from now.
    Head(Option<std::time::Instant>),
    /// The response body (`read_timeout`).
    Body,
}

impl Exchange {
    /// What the upstream side waits for now.
    pub fn upstream_wait(&self) -> UpstreamWait {
        if let Some(until) = self.driver.backoff_until() {
            UpstreamWait::Backoff(until)
        } else if self.driver.conn().is_none() {
            UpstreamWait::Gone
        } else if self.driver.establishing() {
            UpstreamWait::Connecting
        } else if !self.driver.head_sent() {
            UpstreamWait::Head(self.driver.head_deadline())
        } else {
            UpstreamWait::Body
        }
    }

    /// The upstream's socket is full while request bytes wait (`body_left`: framed body
    /// bytes the session still holds): `send_timeout` applies.
    pub fn upstream_stalled(&self, body_left: bool) -> bool {
        self.driver.send_stalled(body_left)
    }

    /// Connected to the upstream (a TLS handshake may still be under way).
    pub fn upstream_connected(&self) -> bool {
        self.driver.connected()
    }
}
