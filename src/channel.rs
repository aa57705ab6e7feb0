//! The master <-> worker channel: a SOCK_SEQPACKET socketpair, one message per packet, so
//! file descriptors passed with a message (log reopen) stay attached to it. The worker sees
//! EOF when the master dies, and exits.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub enum Msg {
    /// worker -> master: listening and serving.
    Ready,
    /// master -> worker: stop accepting, finish in-flight requests, exit.
    Drain,
    /// worker -> master: no longer accepting (the answer to Drain).
    Draining,
    /// master -> worker: too many generations drain: close idle connections now and cut
    /// what is in flight after a short grace.
    Hurry,
    /// master -> worker: exit now.
    Terminate,
    /// master -> worker: freshly opened log files (error log first if it is a file,
    /// then each access log file, in config order).
    Reopen(Vec<OwnedFd>),
}

pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

pub fn send(fd: RawFd, msg: &Msg) -> io::Result<()> {
    let (tag, fds): (u8, Vec<RawFd>) = match msg {
        Msg::Ready => (b'r', vec![]),
        Msg::Drain => (b'Q', vec![]),
        Msg::Draining => (b'q', vec![]),
        Msg::Hurry => (b'H', vec![]),
        Msg::Terminate => (b'T', vec![]),
        Msg::Reopen(f) => (b'R', f.iter().map(|f| f.as_raw_fd()).collect()),
    };
    let iov = [IoSlice::new(std::slice::from_ref(&tag))];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message. `Ok(None)` is EOF (the other side is gone); WouldBlock when empty.
pub fn recv(fd: RawFd) -> io::Result<Option<Msg>> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 32]);
    let mut iov = [IoSliceMut::new(&mut byte)];
    let (n, fds) = loop {
        match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        // SAFETY: the kernel just gave us these descriptors; we own them.
                        fds.extend(list.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                    }
                }
                break (m.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(match byte[0] {
        b'r' => Msg::Ready,
        b'Q' => Msg::Drain,
        b'q' => Msg::Draining,
        b'H' => Msg::Hurry,
        b'T' => Msg::Terminate,
        b'R' => Msg::Reopen(fds),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad channel message {other}"),
            ))
        }
    }))
}
