//! A small real DNS server on 127.0.0.1 (UDP, and TCP on the same port) for peers given by
//! host name: answers A and AAAA queries from a table the test changes while proxyd runs, "no
//! such name" for names not in it, and can fall silent, fail, or truncate its UDP answers
//! (so that the client must ask again over TCP) on command. Counts the queries per name.

use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Answer = 0,
    /// Reads queries and never answers.
    Silent = 1,
    /// Answers every query with SERVFAIL.
    Fail = 2,
    /// Answers over UDP truncated (TC, no records); over TCP in full.
    Truncate = 3,
}

type Records = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

pub struct Dns {
    pub port: u16,
    records: Records,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    tcp_queries: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    records: Records,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    mode: Arc<AtomicU8>,
}

impl Shared {
    /// The answer to `query`, or None for no answer at all.
    fn reply(&self, query: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
        let query = Packet::parse(query).ok()?;
        let question = query.questions.first()?;
        let name = question.qname.to_string().to_ascii_lowercase();
        *self
            .queries
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_insert(0) += 1;
        let mode = self.mode.load(Ordering::SeqCst);
        if mode == Mode::Silent as u8 {
            return None;
        }
        let mut reply = Packet::new_reply(query.id());
        reply.set_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_AVAILABLE);
        reply.questions.push(question.clone());
        let known = self.records.lock().unwrap().get(&name).cloned();
        *reply.rcode_mut() = match (&known, mode) {
            (_, 2) => RCODE::ServerFailure,
            (None, _) => RCODE::NameError,
            (Some(_), _) => RCODE::NoError,
        };
        if mode == Mode::Truncate as u8 && !over_tcp {
            reply.set_flags(PacketFlag::TRUNCATION);
        } else if mode != Mode::Fail as u8 {
            for ip in known.unwrap_or_default() {
                let rdata = match (ip, question.qtype) {
                    (IpAddr::V4(a), QTYPE::TYPE(TYPE::A)) => RData::A(A { address: a.into() }),
                    (IpAddr::V6(a), QTYPE::TYPE(TYPE::AAAA)) => {
                        RData::AAAA(AAAA { address: a.into() })
                    }
                    _ => continue,
                };
                let rr = ResourceRecord::new(question.qname.clone(), CLASS::IN, 1, rdata);
                reply.answers.push(rr);
            }
        }
        reply.build_bytes_vec().ok()
    }
}

impl Dns {
    pub fn start() -> Dns {
        // UDP and TCP on one port.
        let (sock, tcp) = loop {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = sock.local_addr().unwrap().port();
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                break (sock, l);
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let port = sock.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            records: Arc::new(Mutex::new(HashMap::new())),
            queries: Arc::new(Mutex::new(HashMap::new())),
            mode: Arc::new(AtomicU8::new(Mode::Answer as u8)),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let (sh, s) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(bytes) = sh.reply(&buf[..n], false) {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        let (sh, s, count) = (shared.clone(), stop.clone(), tcp_queries.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                // Length-prefixed queries, answered in turn until the client closes.
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut q).is_err() {
                        break;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(bytes) = sh.reply(&q, true) {
                        let _ = conn.write_all(&(bytes.len() as u16).to_be_bytes());
                        let _ = conn.write_all(&bytes);
                    }
                }
            }
        });
        Dns {
            port,
            records: shared.records.clone(),
            queries: shared.queries.clone(),
            tcp_queries,
            mode: shared.mode.clone(),
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `name` resolves to `ips` from now on (none: no such name).
    pub fn set(&self, name: &str, ips: &[&str]) {
        let mut r = self.records.lock().unwrap();
        if ips.is_empty() {
            r.remove(name);
        } else {
            r.insert(
                name.into(),
                ips.iter().map(|i| i.parse().unwrap()).collect(),
            );
        }
    }

    pub fn mode(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    /// Queries received for `name` (A and AAAA count one each, UDP and TCP alike).
    pub fn queries(&self, name: &str) -> usize {
        self.queries.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Queries received over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
