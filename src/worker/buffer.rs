//! Fixed-size byte buffers taken from a per-worker pool, so an idle keep-alive connection
//! holds none and memory per connection stays bounded whatever the body size.

use crate::http::body::{Advance, FrameError, Framer};
use std::io::{self, Read};

pub const BUF_SIZE: usize = 16 * 1024;
/// A request head is read into a buffer this small first, grown only when a head needs more:
/// a thousand slow-header connections then cost a thousand small buffers, not 16 KiB each.
pub const HEAD_START: usize = 1024;
/// Free buffers kept for reuse, per size; more are returned to the allocator.
const POOL_MAX: usize = 512;

/// Bytes flow in at `end` and out at `start`. Between them, `start..ready` may be sent,
/// `ready..parsed` is framing already understood but not forwarded (decoded chunk headers
/// are squeezed out), and `parsed..end` has not been looked at yet.
pub struct Buf {
    data: Box<[u8]>,
    pub start: usize,
    pub ready: usize,
    pub parsed: usize,
    pub end: usize,
}

impl Buf {
    fn new(data: Box<[u8]>) -> Buf {
        Buf {
            data,
            start: 0,
            ready: 0,
            parsed: 0,
            end: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Everything held, sent or not.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.data.len()
    }

    /// Bytes that may be sent now.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.ready]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.ready);
        if self.start == self.ready {
            // Everything sendable is gone; decoded framing in ready..parsed is dead weight.
            self.start = self.parsed;
            self.ready = self.parsed;
        }
        if self.start == self.end {
            self.start = 0;
            self.ready = 0;
            self.parsed = 0;
            self.end = 0;
        }
    }

    /// Bytes received but not yet examined by a parser or framer.
    pub fn unparsed(&self) -> &[u8] {
        &self.data[self.parsed..self.end]
    }

    /// Everything not yet sent (for head parsing, where nothing was sent yet).
    pub fn held(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Marks `n` unparsed bytes as forwardable as they are.
    pub fn pass(&mut self, n: usize) {
        debug_assert_eq!(self.ready, self.parsed);
        self.parsed += n;
        self.ready = self.parsed;
    }

    /// Marks `n` unparsed bytes as framing, then moves the payload run `data` (relative to
    /// the unparsed region) down to `ready`. Used to strip chunked framing in place.
    pub fn pass_decoded(&mut self, n: usize, data: std::ops::Range<usize>) {
        let from = self.parsed + data.start;
        let len = data.len();
        self.data.copy_within(from..from + len, self.ready);
        self.ready += len;
        self.parsed += n;
    }

    /// Lets a codec rewrite framing in place: `f` gets the bytes up to `end` with `ready`
    /// (where output goes) and `parsed` (where input starts), and returns both moved on
    /// (output never past input).
    pub fn rewrite<T>(
        &mut self,
        f: impl FnOnce(&mut [u8], usize, usize) -> (usize, usize, T),
    ) -> T {
        let (ready, parsed, t) = f(&mut self.data[..self.end], self.ready, self.parsed);
        debug_assert!(self.ready <= ready && ready <= parsed && parsed <= self.end);
        self.ready = ready;
        self.parsed = parsed;
        t
    }

    /// Drops `n` bytes at the front that were parsed (a head) and will not be sent as is.
    pub fn skip_head(&mut self, n: usize) {
        self.start += n;
        self.ready = self.start;
        self.parsed = self.start;
        if self.start == self.end {
            self.consume(0);
        }
    }

    /// Room for more input, compacting first when that helps.
    pub fn make_room(&mut self) -> usize {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.ready -= self.start;
            self.parsed -= self.start;
            self.end -= self.start;
            self.start = 0;
        }
        self.data.len() - self.end
    }

    pub fn has_room(&self) -> bool {
        self.end < self.data.len() || self.start > 0
    }

    /// Moves what this buffer holds into `bigger` (positions kept relative to the start)
    /// and returns it; this buffer's memory is handed back through `pool`.
    pub fn grow(self, mut bigger: Buf, pool: &mut BufPool) -> Buf {
        let held = self.end - self.start;
        debug_assert!(bigger.data.len() >= held && bigger.is_empty());
        bigger.data[..held].copy_from_slice(&self.data[self.start..self.end]);
        bigger.ready = self.ready - self.start;
        bigger.parsed = self.parsed - self.start;
        bigger.end = held;
        pool.put(self);
        bigger
    }

    /// Marks the body bytes held forwardable: as they are for a length or until-close body,
    /// with canonical framing for a chunked one (`http::reframe`). What was valid before an
    /// error is marked too.
    pub fn forward(&mut self, f: &mut Framer) -> Advance {
        if !f.is_chunked() {
            let a = f.advance(self.unparsed());
            self.pass(a.consumed);
            return a;
        }
        self.rewrite(|bytes, out, inp| {
            let r = f.reframe(bytes, out, inp);
            let a = Advance {
                consumed: r.inp - inp,
                payload: r.payload,
                result: r.result,
            };
            (r.out, r.inp, a)
        })
    }

    /// Strips chunked framing in place: payload runs move down to `ready`.
    pub fn decode(&mut self, f: &mut Framer) -> Result<(), FrameError> {
        loop {
            let s = f.step(self.unparsed())?;
            self.pass_decoded(s.consumed, s.data);
            if s.done || s.consumed == 0 {
                return Ok(());
            }
        }
    }

    /// One read into the free space; Ok(0) means end of stream (or no room: check has_room).
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        self.read_at_most(r, usize::MAX)
    }

    /// One read of at most `limit` bytes into the free space.
    pub fn read_at_most(&mut self, r: &mut impl Read, limit: usize) -> io::Result<usize> {
        let room = self.make_room().min(limit);
        if room == 0 {
            return Ok(0);
        }
        loop {
            match r.read(&mut self.data[self.end..self.end + room]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[derive(Default)]
pub struct BufPool {
    free: Vec<Box<[u8]>>,
    small: Vec<Box<[u8]>>,
}

impl BufPool {
    /// A small buffer to start reading a request head into.
    pub fn get_small(&mut self) -> Buf {
        match self.small.pop() {
            Some(b) => Buf::new(b),
            None => Buf::new(vec![0u8; HEAD_START].into_boxed_slice()),
        }
    }

    /// A buffer of at least `size` bytes (pooled when `size` is the standard size).
    pub fn get(&mut self, size: usize) -> Buf {
        if size <= BUF_SIZE {
            if let Some(b) = self.free.pop() {
                return Buf::new(b);
            }
            return Buf::new(vec![0u8; BUF_SIZE].into_boxed_slice());
        }
        Buf::new(vec![0u8; size].into_boxed_slice())
    }

    pub fn put(&mut self, b: Buf) {
        if b.data.len() == BUF_SIZE && self.free.len() < POOL_MAX {
            self.free.push(b.data);
        } else if b.data.len() == HEAD_START && self.small.len() < POOL_MAX {
            self.small.push(b.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_in_place_and_compact() {
        let mut pool = BufPool::default();
        let mut b = pool.get(BUF_SIZE);
        let mut src: &[u8] = b"3\r\nabc\r\n";
        b.read_from(&mut src).unwrap();
        b.pass_decoded(3, 3..3); // "3\r\n" is framing
        b.pass_decoded(3, 0..3); // "abc"
        assert_eq!(b.pending(), b"abc");
        b.pass_decoded(2, 2..2);
        assert_eq!(b.unparsed(), b"");
        b.consume(3);
        assert!(b.is_empty());
        pool.put(b);
        assert_eq!(pool.free.len(), 1);
    }

    #[test]
    fn a_read_takes_at_most_its_limit() {
        let mut pool = BufPool::default();
        let mut b = pool.get(BUF_SIZE);
        let data = vec![7u8; 10_000];
        let mut src: &[u8] = &data;
        assert_eq!(b.read_at_most(&mut src, 4096).unwrap(), 4096);
        assert_eq!(b.read_at_most(&mut src, usize::MAX).unwrap(), 10_000 - 4096);
        assert_eq!(b.unparsed().len(), 10_000);
    }

    #[test]
    fn grow_keeps_positions() {
        let mut pool = BufPool::default();
        let mut b = pool.get_small();
        let mut src: &[u8] = b"xxGET / HTTP/1.1\r\n";
        b.read_from(&mut src).unwrap();
        b.skip_head(2);
        b.pass(3);
        let b = b.grow(pool.get(BUF_SIZE), &mut pool);
        assert_eq!(b.capacity(), BUF_SIZE);
        assert_eq!(b.pending(), b"GET");
        assert_eq!(b.unparsed(), b" / HTTP/1.1\r\n");
        assert_eq!(pool.small.len(), 1);
    }
}
