//! Listening sockets. The master binds them once and keeps them across generations: a
//! reload reuses every socket whose address is unchanged, so connections waiting in an
//! accept queue are never lost to a close/re-bind.
//!
//! Each address is a `SO_REUSEPORT` group of sockets, one per worker slot, and worker `i`
//! of a generation of `n` accepts from the sockets `j` with `j % n == i`. The kernel spreads
//! new connections evenly over the group by their addresses, and each connection wakes one
//! worker only (one shared socket wakes every worker, and the one that wins the race takes
//! most of the load). A group never shrinks while its address stays configured: closing a
//! socket resets the connections in its queue, so with fewer workers each takes more
//! sockets instead.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};

const BACKLOG: i32 = 511;

pub struct ListenSet {
    addr: SocketAddr,
    socks: Vec<Sock>,
}

struct Sock {
    sock: TcpListener,
    /// Bound but not yet listening: the kernel sends a group's connections only to its
    /// listening sockets, so one added for a reload takes none before the reload commits
    /// (and none at all if the reload fails and it is closed).
    listening: bool,
}

fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    // Accepted connections inherit it: no setsockopt per connection.
    s.set_nodelay(true)?;
    defer_accept(&s)?;
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind() to {addr} failed: {e}")))?;
    Ok(s)
}

impl ListenSet {
    /// Binds `n` sockets for `addr`, not yet listening (see `listen`).
    pub fn bind(addr: SocketAddr, n: usize) -> io::Result<ListenSet> {
        // A socket without SO_REUSEPORT cannot bind where anything listens, so another
        // proxyd (or anything else that sets SO_REUSEPORT as the same user) on this address
        // is an error here rather than a silent share of its connections.
        drop(socket(addr, false)?);
        let mut set = ListenSet {
            addr,
            socks: Vec::new(),
        };
        set.grow(n)?;
        Ok(set)
    }

    /// Takes over listening sockets a previous master passed across exec (binary upgrade).
    ///
    /// # Safety
    /// Each fd must be an open listening TCP socket for `addr` that nothing else in this
    /// process owns.
    pub unsafe fn adopt(addr: SocketAddr, fds: &[RawFd]) -> ListenSet {
        use std::os::fd::FromRawFd;
        let socks = fds
            .iter()
            .map(|&fd| {
                // SAFETY: the caller vouches for the descriptor. It stays close-on-exec from
                // here on, like every socket this process makes.
                let sock = unsafe { TcpListener::from_raw_fd(fd) };
                let _ = set_cloexec(fd, true);
                Sock {
                    sock,
                    listening: true,
                }
            })
            .collect();
        ListenSet { addr, socks }
    }

    /// Every socket, for handing over to a new master (see `master/upgrade.rs`).
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.socks.iter().map(|s| s.sock.as_raw_fd())
    }

    /// Adds sockets (not yet listening) until there are at least `n`. Returns how many
    /// were added; on an error adds none.
    pub fn grow(&mut self, n: usize) -> io::Result<usize> {
        let before = self.socks.len();
        while self.socks.len() < n {
            match socket(self.addr, true) {
                Ok(s) => self.socks.push(Sock {
                    sock: s.into(),
                    listening: false,
                }),
                Err(e) => {
                    self.socks.truncate(before);
                    return Err(e);
                }
            }
        }
        Ok(self.socks.len() - before)
    }

    /// Closes the last `k` sockets (the ones a failed reload added; they never listened).
    pub fn shrink_by(&mut self, k: usize) {
        for _ in 0..k {
            if self.socks.last().is_some_and(|s| !s.listening) {
                self.socks.pop();
            }
        }
    }

    /// Starts listening on every socket not yet listening.
    pub fn listen(&mut self) -> io::Result<()> {
        for s in self.socks.iter_mut().filter(|s| !s.listening) {
            // SAFETY: a bound TCP socket we own; listen(2) has no memory effects.
            if unsafe { libc::listen(s.sock.as_raw_fd(), BACKLOG) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("listen() on {} failed: {e}", self.addr),
                ));
            }
            s.listening = true;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.socks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The sockets worker `index` of a generation of `workers` accepts from.
    pub fn for_worker(&self, index: usize, workers: usize) -> impl Iterator<Item = RawFd> + '_ {
        let workers = workers.max(1);
        self.socks
            .iter()
            .enumerate()
            .filter(move |(j, _)| j % workers == index % workers)
            .map(|(_, s)| s.sock.as_raw_fd())
    }
}

/// Seconds the kernel holds a connection that has sent nothing (see `defer_accept`).
const DEFER_SECS: libc::c_int = 1;

/// `TCP_DEFER_ACCEPT`: a connection reaches `accept` once its first bytes have arrived, so
/// the worker reads its request straight away instead of waiting for another wakeup, and a
/// client that connects and sends nothing is held by the kernel (which retransmits its
/// SYN-ACK) rather than by a worker: after `DEFER_SECS` and the next retransmission (about
/// 3 s in all) it is accepted anyway and `client_header_timeout` applies. HTTP clients
/// speak first; a listener for a protocol where the server speaks first must not set it.
fn defer_accept(s: &Socket) -> io::Result<()> {
    // SAFETY: a valid socket and an int option of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&DEFER_SECS as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor; the flags are plain integers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
