//! A small real DNS server on 127.0.0.1 (UDP) for peers given by host name: answers A and
//! AAAA queries from a table the test changes while proxyd runs, "no such name" for names
//! not in it, and can fall silent or fail on command. Counts the queries per name.

use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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
}

pub struct Dns {
    pub port: u16,
    records: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
}

impl Dns {
    pub fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let records = Arc::new(Mutex::new(HashMap::new()));
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let mode = Arc::new(AtomicU8::new(Mode::Answer as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, q, m, s) = (records.clone(), queries.clone(), mode.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                let Some(question) = query.questions.first() else {
                    continue;
                };
                let name = question.qname.to_string().to_ascii_lowercase();
                *q.lock().unwrap().entry(name.clone()).or_insert(0) += 1;
                let mode = m.load(Ordering::SeqCst);
                if mode == Mode::Silent as u8 {
                    continue;
                }
                let mut reply = Packet::new_reply(query.id());
                reply.set_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_AVAILABLE);
                reply.questions.push(question.clone());
                let known = r.lock().unwrap().get(&name).cloned();
                *reply.rcode_mut() = match (&known, mode) {
                    (_, 2) => RCODE::ServerFailure,
                    (None, _) => RCODE::NameError,
                    (Some(_), _) => RCODE::NoError,
                };
                if mode == Mode::Answer as u8 {
                    for ip in known.unwrap_or_default() {
                        let rdata = match (ip, question.qtype) {
                            (IpAddr::V4(a), QTYPE::TYPE(TYPE::A)) => {
                                RData::A(A { address: a.into() })
                            }
                            (IpAddr::V6(a), QTYPE::TYPE(TYPE::AAAA)) => {
                                RData::AAAA(AAAA { address: a.into() })
                            }
                            _ => continue,
                        };
                        let rr = ResourceRecord::new(question.qname.clone(), CLASS::IN, 1, rdata);
                        reply.answers.push(rr);
                    }
                }
                if let Ok(bytes) = reply.build_bytes_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Dns {
            port,
            records,
            queries,
            mode,
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

    /// Queries received for `name` (A and AAAA count one each).
    pub fn queries(&self, name: &str) -> usize {
        self.queries.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
