//! A plain socket's zero-copy moves: splice(2) between the socket and a pipe (a long
//! upstream body passing through), sendfile(2) from a file (a body read from disk); and a
//! cut that the peer cannot mistake for a clean end (a reset). TLS connections do none of
//! these.

use super::{would_block, Transport};
use std::io;

impl Transport {
    /// Moves up to `len` bytes from this (plain) socket into pipe `to` without copying them
    /// through this process. Ok(0) is end of stream.
    pub fn splice_to(&mut self, to: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
        splice(self.raw_fd(), to, len)
    }

    /// Moves up to `len` bytes from pipe `from` into this (plain) socket; a full socket
    /// clears its write readiness.
    pub fn splice_from(&mut self, from: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
        let r = splice(from, self.raw_fd(), len);
        if r.as_ref().is_err_and(would_block) {
            self.ready.w = false;
        }
        r
    }

    /// Sends up to `len` bytes of file `from` at `offset` with sendfile(2) (a plain socket);
    /// a full socket clears its write readiness.
    pub fn sendfile_from(
        &mut self,
        from: std::os::fd::RawFd,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let mut off = offset as libc::off_t;
        let r = loop {
            // SAFETY: `off` is a valid off_t the call advances; the kernel checks the fds.
            let n = unsafe { libc::sendfile(self.raw_fd(), from, &mut off, len) };
            if n >= 0 {
                break Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                break Err(e);
            }
        };
        if r.as_ref().is_err_and(would_block) {
            self.ready.w = false;
        }
        r
    }

    /// Makes the coming close a reset (SO_LINGER 0): for a response cut short, whose end a
    /// client reading until close would otherwise take for the whole body.
    pub fn reset_on_close(&mut self) {
        let _ = socket2::SockRef::from(self.tcp()).set_linger(Some(std::time::Duration::ZERO));
    }
}

/// One splice(2) call, non-blocking (pipes and sockets only: no offsets).
fn splice(from: std::os::fd::RawFd, to: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
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
