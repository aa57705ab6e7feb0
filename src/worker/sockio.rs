//! Socket I/O with readiness bookkeeping. mio is edge-triggered, so each socket's
//! readiness is remembered here: set by an event, cleared when the kernel says there is no
//! more (WouldBlock, or a short read or write, which means the same without the extra call).

use super::buffer::Buf;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Write};

#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub r: bool,
    pub w: bool,
    /// The peer's FIN (or an error) is queued: keep reading until 0 even after short reads,
    /// since no new edge will announce it.
    pub hup: bool,
}

impl Ready {
    pub fn on_event(&mut self, readable: bool, writable: bool, hup: bool) {
        self.r |= readable;
        self.w |= writable;
        self.hup |= hup;
    }
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// One read into `buf`. Ok(0) is end of stream.
pub fn read_into(s: &mut TcpStream, buf: &mut Buf, ready: &mut Ready) -> io::Result<usize> {
    let room = buf.make_room();
    match buf.read_from(s) {
        Ok(n) => {
            if n > 0 && n < room && !ready.hup {
                ready.r = false;
            }
            Ok(n)
        }
        Err(e) => {
            if would_block(&e) {
                ready.r = false;
            }
            Err(e)
        }
    }
}

/// Writes `a` then `b` with one system call where both have bytes. Returns the count.
pub fn write_pair(s: &mut TcpStream, a: &[u8], b: &[u8], ready: &mut Ready) -> io::Result<usize> {
    let total = a.len() + b.len();
    loop {
        let res = if b.is_empty() {
            s.write(a)
        } else if a.is_empty() {
            s.write(b)
        } else {
            s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        };
        return match res {
            Ok(0) if total > 0 => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                if n < total {
                    ready.w = false;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if would_block(&e) {
                    ready.w = false;
                }
                Err(e)
            }
        };
    }
}
