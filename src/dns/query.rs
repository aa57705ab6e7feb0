//! One lookup of a name at one name server: an A query and, for IPv6, an AAAA query over a
//! connected non-blocking UDP socket (so only that server's datagrams arrive), answers matched
//! by random id, question name and type. Anything else that arrives is ignored: a forged or
//! garbled datagram can delay a lookup to its deadline, never change its answer. The queries
//! offer EDNS0 (1232-byte answers, the DNS flag day's size); an answer the server still had
//! to truncate is asked again over TCP (RFC 7766), so a name with many addresses resolves.

use mio::{Interest, Registry, Token};
use simple_dns::rdata::{RData, OPT};
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, RCODE, TYPE};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// Where a lookup stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Answer(Vec<IpAddr>),
    /// The server says the name does not exist or has no address: another server would
    /// say the same.
    NoSuchName(String),
    /// No usable answer from this server (timeout, failure, refusal): ask the next.
    TryNext(String),
}

/// The largest answer over UDP this side takes (EDNS0), and over TCP (the length prefix's
/// limit, 64 KiB).
const UDP_SIZE: u16 = 1232;

/// Queries asked again over TCP, after a truncated answer.
struct Tcp {
    stream: mio::net::TcpStream,
    /// Length-prefixed queries not yet written, and answer bytes not yet parsed.
    out: Vec<u8>,
    input: Vec<u8>,
}

pub struct Lookup {
    socket: mio::net::UdpSocket,
    tcp: Option<Tcp>,
    /// Its index in the resolver's servers.
    server: usize,
    addr: SocketAddr,
    host: String,
    /// Queries not answered yet: id and record type.
    pending: Vec<(u16, TYPE)>,
    found: Vec<IpAddr>,
    /// Some query was answered "no such name".
    nxdomain: bool,
    deadline: Instant,
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: a valid buffer of the length given. Never blocks once the pool is seeded.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 2 {
        // No getrandom: the clock's low bits are still unpredictable enough off-path.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return (t ^ t >> 16) as u16;
    }
    u16::from_le_bytes(b)
}

fn query(id: u16, host: &str, t: TYPE) -> Result<Vec<u8>, String> {
    let name = Name::new(host).map_err(|e| format!("invalid host name \"{host}\": {e}"))?;
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    p.questions
        .push(Question::new(name, t.into(), CLASS::IN.into(), false));
    *p.opt_mut() = Some(OPT {
        opt_codes: Vec::new(),
        udp_packet_size: UDP_SIZE,
        version: 0,
    });
    p.build_bytes_vec()
        .map_err(|e| format!("invalid host name \"{host}\": {e}"))
}

impl Lookup {
    /// Sends the queries for `host` to `addr` (server number `server`); the answer is due by
    /// `deadline`.
    pub fn start(
        addr: SocketAddr,
        server: usize,
        host: &str,
        ipv6: bool,
        deadline: Instant,
    ) -> Result<Lookup, String> {
        let host = host.trim_end_matches('.').to_string();
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = mio::net::UdpSocket::bind(local)
            .and_then(|s| s.connect(addr).map(|()| s))
            .map_err(|e| format!("name server {addr}: {e}"))?;
        let mut pending = vec![(random_id(), TYPE::A)];
        if ipv6 {
            pending.push((random_id(), TYPE::AAAA));
        }
        for &(id, t) in &pending {
            let q = query(id, &host, t)?;
            // A full socket buffer on a fresh socket would be odd; the deadline covers it.
            if let Err(e) = socket.send(&q) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(format!("name server {addr}: {e}"));
                }
            }
        }
        Ok(Lookup {
            socket,
            tcp: None,
            server,
            addr,
            host,
            pending,
            found: Vec::new(),
            nxdomain: false,
            deadline,
        })
    }

    pub fn server(&self) -> usize {
        self.server
    }

    /// Waits for answers under `token` (the UDP socket; the TCP one joins it if needed).
    pub fn register(&mut self, r: &Registry, token: Token) -> io::Result<()> {
        r.register(&mut self.socket, token, Interest::READABLE)
    }

    pub fn deregister(&mut self, r: &Registry) {
        let _ = r.deregister(&mut self.socket);
        if let Some(t) = &mut self.tcp {
            let _ = r.deregister(&mut t.stream);
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn expired(&mut self, now: Instant) -> Progress {
        if now < self.deadline {
            return Progress::Pending;
        }
        Progress::TryNext(format!("name server {} timed out", self.addr))
    }

    /// Reads every datagram waiting (edge-triggered readiness: to WouldBlock), and moves
    /// the TCP queries on if there are any; `r` and `token` register a TCP connection the
    /// lookup opens meanwhile.
    pub fn readable(&mut self, r: &Registry, token: Token) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Progress::TryNext(format!("name server {}: {e}", self.addr)),
            };
            match self.answer(&buf[..n]) {
                Some(Progress::Pending) => {
                    if let Err(e) = self.ask_over_tcp(&buf[..n], r, token) {
                        return Progress::TryNext(format!("name server {} (TCP): {e}", self.addr));
                    }
                }
                Some(p) => return p,
                None => {}
            }
        }
        match self.tcp_progress() {
            Ok(Some(p)) => p,
            Ok(None) => Progress::Pending,
            Err(e) => Progress::TryNext(format!("name server {} (TCP): {e}", self.addr)),
        }
    }

    /// The answer `truncated` was cut short: asks its query again over TCP.
    fn ask_over_tcp(&mut self, truncated: &[u8], r: &Registry, token: Token) -> io::Result<()> {
        let Some(&(id, t)) = self.pending.iter().find(|(id, _)| {
            truncated.len() >= 2 && u16::from_be_bytes([truncated[0], truncated[1]]) == *id
        }) else {
            return Ok(());
        };
        let q = query(id, &self.host, t).map_err(io::Error::other)?;
        if self.tcp.is_none() {
            let mut stream = mio::net::TcpStream::connect(self.addr)?;
            r.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
            self.tcp = Some(Tcp {
                stream,
                out: Vec::new(),
                input: Vec::new(),
            });
        }
        let tcp = self.tcp.as_mut().expect("just made");
        tcp.out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        tcp.out.extend_from_slice(&q);
        Ok(())
    }

    /// Writes what the TCP connection owes, reads what it has, and takes each whole answer.
    fn tcp_progress(&mut self) -> io::Result<Option<Progress>> {
        let Some(tcp) = &mut self.tcp else {
            return Ok(None);
        };
        while !tcp.out.is_empty() {
            match tcp.stream.write(&tcp.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(tcp.out.drain(..n)),
                // Not connected yet, or full: the writable event comes back here.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match tcp.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => tcp.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // Two answers at most, of 64 KiB at most each: more is not an answer.
            if tcp.input.len() > 2 * (65535 + 2) {
                return Err(io::Error::other("answer too long"));
            }
        }
        loop {
            let Some(tcp) = &mut self.tcp else {
                return Ok(None);
            };
            if tcp.input.len() < 2 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([tcp.input[0], tcp.input[1]]) as usize;
            if tcp.input.len() < 2 + len {
                return Ok(None);
            }
            let message: Vec<u8> = tcp.input.drain(..2 + len).skip(2).collect();
            match self.answer(&message) {
                // Truncated over TCP too: no more can be had.
                Some(Progress::Pending) => {
                    return Err(io::Error::other("answer truncated over TCP"))
                }
                Some(p) => return Ok(Some(p)),
                None => {}
            }
        }
    }

    /// Takes one answer: None when it is not one of ours, Some(Pending) when it is ours but
    /// truncated (ask again over TCP), otherwise Some when the lookup is over.
    pub(super) fn answer(&mut self, data: &[u8]) -> Option<Progress> {
        let packet = Packet::parse(data).ok()?;
        if !packet.has_flags(PacketFlag::RESPONSE) {
            return None;
        }
        let q = packet.questions.first()?;
        let i = self.pending.iter().position(|&(id, t)| {
            id == packet.id()
                && q.qtype == t.into()
                && q.qname.to_string().eq_ignore_ascii_case(&self.host)
        })?;
        if packet.has_flags(PacketFlag::TRUNCATION) {
            return Some(Progress::Pending);
        }
        let (_, t) = self.pending.swap_remove(i);
        match packet.rcode() {
            RCODE::NoError => {}
            RCODE::NameError => self.nxdomain = true,
            other => {
                return Some(Progress::TryNext(format!(
                    "name server {} answered {other:?}",
                    self.addr
                )))
            }
        }
        for rr in &packet.answers {
            match (&rr.rdata, t) {
                (RData::A(a), TYPE::A) => self.found.push(Ipv4Addr::from(a.address).into()),
                (RData::AAAA(a), TYPE::AAAA) => self.found.push(Ipv6Addr::from(a.address).into()),
                _ => {}
            }
        }
        if !self.pending.is_empty() {
            return None;
        }
        Some(match (self.found.is_empty(), self.nxdomain) {
            (false, _) => Progress::Answer(std::mem::take(&mut self.found)),
            (true, true) => Progress::NoSuchName(format!("\"{}\" not found", self.host)),
            (true, false) => Progress::NoSuchName(format!("\"{}\" has no address", self.host)),
        })
    }
}

#[cfg(test)]
impl Lookup {
    pub(super) fn pending_queries(&self) -> Vec<(u16, TYPE)> {
        self.pending.clone()
    }
}
