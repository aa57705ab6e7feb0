//! Where the response body the session writes comes from, and what the session asks of its
//! exchange while it writes: one type whatever makes the body (an answer made here, a file,
//! the upstream's buffer or splice pipe; a cached object next), offered to the session's
//! writer in one shape (`Output`). Transforms (compression, a cache tee) sit between a
//! source and the writer in the body stage (`stage.rs`).

use super::file::FileBody;
use super::Ctx;
use super::Exchange;
use crate::worker::buffer::Buf;
use crate::worker::output::Output;
use crate::worker::upstream::{Driver, UpConn};
use std::sync::Arc;

/// A response body's source.
#[derive(Debug, Default)]
pub enum Source {
    /// No body (none yet, a HEAD answer, an empty one).
    #[default]
    None,
    /// An answer made here, written from `pos` (a configured body is shared, not copied).
    Bytes { data: Arc<[u8]>, pos: usize },
    /// A file (an error page): sendfile to a plain client, read in chunks for TLS.
    File(Box<FileBody>),
    /// The upstream: bytes framed in the driver's buffer, then its splice pipe.
    Upstream,
}

impl Source {
    /// What the source has now (`driver`: the exchange's, for an upstream body; `plain`:
    /// the taker can use a pipe or a file directly).
    pub fn out<'a>(&'a mut self, driver: &'a Driver, plain: bool) -> Output<'a> {
        match self {
            Source::None => Output::Done,
            Source::Bytes { data, pos } if *pos < data.len() => Output::Bytes {
                data: &data[*pos..],
                last: true,
            },
            Source::Bytes { .. } => Output::Done,
            Source::File(f) => f.out(plain),
            Source::Upstream => driver.output(),
        }
    }

    /// It has bytes for the taker now (what `out` would offer as bytes, a pipe or a
    /// file), without pulling them.
    pub fn waiting(&self, driver: &Driver) -> bool {
        match self {
            Source::None => false,
            Source::Bytes { data, pos } => *pos < data.len(),
            Source::File(f) => f.has_more(),
            Source::Upstream => {
                matches!(driver.output(), Output::Bytes { .. } | Output::Pipe { .. })
            }
        }
    }

    /// `n` bytes of what `out` offered were taken.
    pub fn took(&mut self, driver: &mut Driver, n: usize) {
        match self {
            Source::None => {}
            Source::Bytes { pos, .. } => *pos += n,
            Source::File(f) => f.took(n),
            Source::Upstream => driver.took(n),
        }
    }
}

impl Exchange {
    /// Body bytes are ready for the client now (what `body_out` would offer as bytes, a
    /// pipe or a file), without pulling them.
    pub fn body_waiting(&self) -> bool {
        self.stage.as_deref().is_some_and(|s| s.holds()) || self.body.waiting(&self.driver)
    }

    /// What the body has for the client now, through the body stage when there is one
    /// (the session's writer pulls it, writes, then says how much went with `written`).
    /// `plain`: the client's socket can take a pipe or a file directly.
    pub fn body_out(&mut self, plain: bool) -> Output<'_> {
        match self.stage.as_deref_mut() {
            Some(stage) => stage.out(&mut self.body, &mut self.driver),
            None => self.body.out(&self.driver, plain),
        }
    }

    /// The client took `body` bytes of what `body_out` offered, in a write of `wire` bytes
    /// (a head written before them included).
    pub fn written(&mut self, body: usize, wire: usize) {
        match self.stage.as_deref_mut() {
            Some(stage) => stage.took(body),
            None => self.body.took(&mut self.driver, body),
        }
        self.bytes_sent += body as u64;
        self.record.wire += wire as u64;
    }

    /// Readiness for the exchange's upstream connection.
    pub fn upstream_event(&mut self, readable: bool, writable: bool, hup: bool) {
        self.driver.on_event(readable, writable, hup);
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
