//! Listening sockets. The master binds them once and keeps them across generations: a
//! reload reuses every socket whose address is unchanged, so connections waiting in an
//! accept queue are never lost to a close/re-bind.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

const BACKLOG: i32 = 511;

pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind() to {addr} failed: {e}")))?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}
