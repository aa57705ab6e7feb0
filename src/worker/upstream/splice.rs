//! Large response bodies move from the upstream socket to the client socket through a pipe
//! with splice(2): the kernel hands the pages over, and the body never crosses into this
//! process (Sozu and HAProxy do the same). Used only where nothing has to look at the bytes:
//! plain TCP on both sides, a body framed by Content-Length (the framer just counts), at
//! least SPLICE_MIN bytes still to come, and nothing of it waiting in the response buffer.
//!
//! A pipe holds at most PIPE_CAP bytes, so memory per connection stays bounded whatever the
//! body size. EAGAIN from a splice into the pipe can mean an empty socket or a full pipe; it
//! is taken as "socket drained" only when the pipe is empty.

use super::Cx;
use super::{Driver, Owner, Phase, Read, Trip};
use crate::http::body::Framer;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bodies shorter than this are copied: a splice pair costs more than a copy of a few pages.
pub const SPLICE_MIN: u64 = 32 * 1024;
/// What a pipe holds (Linux's default pipe size).
const PIPE_CAP: usize = 64 * 1024;
/// Empty pipes kept for reuse.
const KEEP: usize = 64;

#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

/// A response body in the middle of being spliced.
#[derive(Debug)]
pub struct Splice {
    pipe: Pipe,
    /// Bytes in the pipe, not yet sent to the client.
    in_pipe: usize,
    /// The upstream closed (or failed) before the body was complete.
    eof: bool,
}

impl Splice {
    pub fn drained(&self) -> bool {
        self.in_pipe == 0
    }

    /// The pipe's read end and the bytes in it, for the session to splice to its client.
    pub fn out(&self) -> (RawFd, usize) {
        (self.pipe.r.as_raw_fd(), self.in_pipe)
    }

    /// The client took `n` bytes from the pipe.
    pub fn took(&mut self, n: usize) {
        self.in_pipe -= n;
    }
}

/// Empty pipes for reuse (two descriptors and a pipe2 call saved per large response).
#[derive(Default)]
pub struct Pipes {
    free: Vec<Pipe>,
}

impl Pipes {
    pub fn get(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            // Out of descriptors, say: the body is copied instead.
            return None;
        }
        // SAFETY: freshly created descriptors, owned by nothing else.
        Some(unsafe {
            Pipe {
                r: OwnedFd::from_raw_fd(fds[0]),
                w: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    /// Takes back a pipe; one that still holds bytes is closed instead.
    pub fn put(&mut self, s: Splice) {
        if s.in_pipe == 0 && self.free.len() < KEEP {
            self.free.push(s.pipe);
        }
    }
}

impl Driver {
    /// After the buffered body bytes were framed: switches a long Content-Length body to
    /// splicing (the buffer holds none of what follows). Returns whether it did.
    pub(super) fn start_splice(&mut self, w: &mut Cx) -> bool {
        let left = match &self.phase {
            Phase::Body { body, .. } if !body.decode => match body.framer {
                Framer::Length(n) if n >= SPLICE_MIN => n,
                _ => return false,
            },
            _ => return false,
        };
        let Some(pipe) = w.ups.pipes.get() else {
            return false;
        };
        let Phase::Body { conn, body } = std::mem::take(&mut self.phase) else {
            return false;
        };
        self.phase = Phase::Splicing {
            conn,
            splice: Splice {
                pipe,
                in_pipe: 0,
                eof: false,
            },
            left,
            reusable: body.reusable,
        };
        true
    }

    /// The pipe of a spliced body, while there is one.
    pub fn splice(&mut self) -> Option<&mut Splice> {
        match &mut self.phase {
            Phase::Splicing { splice, .. } => Some(splice),
            _ => None,
        }
    }

    /// Moves body bytes from the peer into the pipe while it has room. A peer that closed
    /// before the body was complete fails the attempt once the pipe is drained.
    pub fn splice_in(&mut self, w: &mut Cx, owner: Owner, trip: &mut Trip) -> Read {
        // The buffer held the head and the first body bytes; once the client took them, a
        // spliced body needs it no more.
        self.drop_empty_resp(w);
        let Phase::Splicing {
            conn,
            splice: s,
            left,
            reusable,
        } = &mut self.phase
        else {
            return Read::Quiet(false);
        };
        let mut progress = false;
        while *left > 0 && !s.eof && conn.stream.ready.r && s.in_pipe < PIPE_CAP {
            let len = (PIPE_CAP - s.in_pipe).min(usize::try_from(*left).unwrap_or(PIPE_CAP));
            match conn.stream.splice_to(s.pipe.w.as_raw_fd(), len) {
                Ok(0) => s.eof = true,
                Ok(n) => {
                    s.in_pipe += n;
                    if let Some(a) = trip.record.current() {
                        a.received += n as u64;
                    }
                    *left -= n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // With bytes in the pipe this may be a full pipe, not an empty socket:
                    // try again once the client has taken them.
                    if s.in_pipe == 0 {
                        conn.stream.ready.r = false;
                    }
                    break;
                }
                Err(e) => {
                    log::debug!("upstream splice error: {e}");
                    s.eof = true;
                }
            }
        }
        if s.eof && s.in_pipe == 0 {
            *reusable = false;
            return self.failed(
                w,
                owner,
                trip,
                502,
                "upstream prematurely closed connection",
            );
        }
        Read::Quiet(progress)
    }
}
