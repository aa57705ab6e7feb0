//! What a response body's source offers the session's writer at one moment: the one shape
//! a writer pulls (an HTTP/1 session writes it to its socket; an HTTP/2 session will frame
//! it as DATA within a stream's window), whatever makes the body.

use std::os::fd::RawFd;

#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    /// Bytes to write now. `last`: nothing follows them (a connection that closes after the
    /// response may send its FIN with them).
    Bytes { data: &'a [u8], last: bool },
    /// `len` bytes waiting in a pipe: a plain socket takes them with splice(2).
    Pipe { fd: RawFd, len: usize },
    /// `len` bytes of a file from `offset`: a plain socket takes them with sendfile(2).
    File { fd: RawFd, offset: u64, len: usize },
    /// Nothing now; more will come (an event wakes the session).
    Later,
    /// The body is complete and all of it was taken.
    Done,
    /// The source broke after the head went out (a file that shrank): the client must be
    /// cut, since nothing else can tell it the body is short.
    Failed,
}
