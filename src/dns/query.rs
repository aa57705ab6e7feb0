//! One lookup of a name at one name server: an A query and, for IPv6, an AAAA query over a
//! connected non-blocking UDP socket (so only that server's datagrams arrive), answers matched
//! by random id, question name and type. Anything else that arrives is ignored: a forged or
//! garbled datagram can delay a lookup to its deadline, never change its answer.

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, RCODE, TYPE};
use std::io;
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

pub struct Lookup {
    pub socket: mio::net::UdpSocket,
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

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn expired(&mut self, now: Instant) -> Progress {
        if now < self.deadline {
            return Progress::Pending;
        }
        Progress::TryNext(format!("name server {} timed out", self.addr))
    }

    /// Reads every datagram waiting (edge-triggered readiness: to WouldBlock).
    pub fn readable(&mut self) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Progress::TryNext(format!("name server {}: {e}", self.addr)),
            };
            if let Some(p) = self.answer(&buf[..n]) {
                return p;
            }
        }
    }

    /// Takes one datagram; Some when the lookup is over.
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
