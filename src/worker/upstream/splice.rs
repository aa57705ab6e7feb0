//! Large response bodies move from the upstream socket to the client socket through a pipe
//! with splice(2): the kernel hands the pages over, and the body never crosses into this
//! process (Sozu and HAProxy do the same). Used only where nothing has to look at the bytes:
//! plain TCP on both sides, a body framed by Content-Length (the framer just counts), at
//! least SPLICE_MIN bytes still to come, and nothing of it waiting in the response buffer.
//!
//! A pipe holds at most PIPE_CAP bytes, so memory per connection stays bounded whatever the
//! body size. EAGAIN from a splice into the pipe can mean an empty socket or a full pipe; it
//! is taken as "socket drained" only when the pipe is empty.

use super::super::exchange::{Recv, RespState};
use super::super::session::http1::{Close, Http1, Step};
use super::super::Ctx;
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
}

/// Empty pipes for reuse (two descriptors and a pipe2 call saved per large response).
#[derive(Default)]
pub struct Pipes {
    free: Vec<Pipe>,
}

impl Pipes {
    fn get(&mut self) -> Option<Pipe> {
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

/// After the buffered body bytes were framed: switches a long Content-Length body to
/// splicing when the buffer holds none of what follows. Returns whether it did.
pub fn try_start(resp: &mut RespState, buffer_framed: bool, pipes: &mut Pipes) -> bool {
    let eligible = matches!(resp.body, Framer::Length(n) if n >= SPLICE_MIN)
        && !resp.decode
        && resp.splice.is_none()
        && buffer_framed;
    if !eligible {
        return false;
    }
    let Some(pipe) = pipes.get() else {
        return false;
    };
    resp.splice = Some(Splice {
        pipe,
        in_pipe: 0,
        eof: false,
    });
    true
}

/// One splice(2) call, non-blocking. Ok(0) is end of stream on a socket source.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: no offsets (both ends are streams); the kernel checks the descriptors.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Http1 {
    /// Moves body bytes upstream -> pipe -> client while either side can. The response
    /// buffer (head, and body bytes read with it) is flushed first: order is kept.
    pub(super) fn splice_body(&mut self, w: &mut Ctx) -> Step {
        let mut progress = self.send_client()?;
        let buffered = self.out_pos < self.out.len()
            || self
                .resp_buf
                .as_ref()
                .is_some_and(|b| !b.pending().is_empty());
        if buffered {
            return Ok(progress);
        }
        if let Some(b) = self.resp_buf.take() {
            w.bufs.put(b);
        }
        let x = self.x.as_mut().expect("exchange");
        let up = self.up.as_mut().expect("upstream");
        let Recv::Body(RespState {
            body,
            splice: Some(s),
            reusable,
            ..
        }) = &mut x.recv
        else {
            return Ok(progress);
        };
        loop {
            let mut moved = false;
            if s.in_pipe > 0 && self.client.ready.w {
                match splice(s.pipe.r.as_raw_fd(), self.client.raw_fd(), s.in_pipe) {
                    Ok(n) => {
                        s.in_pipe -= n;
                        x.bytes_sent += n as u64;
                        x.record.wire += n as u64;
                        moved |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.client.ready.w = false,
                    Err(_) => return Err(Close),
                }
            }
            let left = match body {
                Framer::Length(n) => *n,
                _ => 0,
            };
            if left > 0 && !s.eof && up.stream.ready.r && s.in_pipe < PIPE_CAP {
                let len = (PIPE_CAP - s.in_pipe).min(usize::try_from(left).unwrap_or(PIPE_CAP));
                match splice(up.stream.raw_fd(), s.pipe.w.as_raw_fd(), len) {
                    Ok(0) => s.eof = true,
                    Ok(n) => {
                        s.in_pipe += n;
                        if let Some(a) = x.record.current() {
                            a.received += n as u64;
                        }
                        let left = left - n as u64;
                        *body = if left == 0 {
                            Framer::Done
                        } else {
                            Framer::Length(left)
                        };
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // With bytes in the pipe this may be a full pipe, not an empty
                        // socket: try again once the client has taken them.
                        if s.in_pipe == 0 {
                            up.stream.ready.r = false;
                        }
                    }
                    Err(e) => {
                        log::debug!("upstream splice error: {e}");
                        s.eof = true;
                    }
                }
            }
            progress |= moved;
            if !moved {
                break;
            }
        }
        if s.eof && s.in_pipe == 0 {
            *reusable = false;
            return self
                .upstream_failed(w, 502, "upstream prematurely closed connection")
                .map(|_| true);
        }
        Ok(progress)
    }
}
