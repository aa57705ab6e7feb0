//! Resolving peers' host names: the hosts file first, then the configured name servers (or
//! those of /etc/resolv.conf) over UDP, asking for A and, unless `ipv6 = false`, AAAA
//! records. A stub resolver of our own rather than the C library's, for two reasons: the
//! helper process re-resolves names in the same event loop that runs its health probes, so a
//! lookup must not block it, and the operator can name the servers to ask (nginx's
//! `resolver`). Messages are built and parsed by `simple-dns`; `query.rs` is one lookup as a
//! state machine over a non-blocking socket.
//!
//! Names are looked up as written (no search domains, as nginx's resolver), and a recursive
//! server is expected (the query asks for recursion).

mod query;

pub use query::{Lookup, Progress};

use serde::Serialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where and how names are resolved (`resolver = { ... }`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resolver {
    /// Name servers, asked in turn until one answers.
    pub servers: Vec<SocketAddr>,
    /// For one lookup, over all servers.
    #[serde(serialize_with = "crate::units::ser_duration")]
    pub timeout: Duration,
    /// Ask for AAAA records too (and keep IPv6 addresses from the hosts file).
    pub ipv6: bool,
    /// Consulted before any server, as the C library does.
    pub hosts: PathBuf,
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver {
            servers: system_servers(Path::new("/etc/resolv.conf")),
            timeout: Duration::from_secs(5),
            ipv6: true,
            hosts: PathBuf::from("/etc/hosts"),
        }
    }
}

/// The `nameserver` lines of a resolv.conf; the C library's default when there are none.
pub fn system_servers(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if v.is_empty() {
        v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    v
}

/// The addresses the hosts file gives `host` (every matching line), or none.
pub fn from_hosts_file(path: &Path, host: &str, ipv6: bool) -> Vec<IpAddr> {
    // A regular file of bounded size: whatever the config names (a FIFO, a device) can
    // neither block the helper nor eat its memory.
    let text = crate::files::read_bounded(path).unwrap_or_default();
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if (ipv6 || ip.is_ipv4()) && words.any(|w| w.eq_ignore_ascii_case(host)) {
            found.push(ip);
        }
    }
    found
}

/// Sorted and without duplicates, so that the same answer in another order is no change
/// (round-robin name servers rotate their records).
fn tidy(v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

impl Resolver {
    /// Resolves `host` now, waiting for the answer: for the master loading a config (which
    /// may wait; workers keep serving meanwhile) and for `proxyctl -t`.
    pub fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.lookup_all(&[host.to_string()]).remove(0)
    }

    /// Resolves every one of `hosts` at once, waiting for all the answers: a config naming
    /// many hosts while the name servers are down waits one `timeout`, not one per name.
    pub fn lookup_all(&self, hosts: &[String]) -> Vec<Result<Vec<IpAddr>, String>> {
        let now = Instant::now();
        let mut attempts: Vec<Attempt> = hosts.iter().map(|h| Attempt::new(self, h, now)).collect();
        let mut poll = match mio::Poll::new() {
            Ok(p) => p,
            Err(e) => {
                return hosts
                    .iter()
                    .map(|_| Err(format!("cannot resolve: {e}")))
                    .collect()
            }
        };
        for (i, a) in attempts.iter_mut().enumerate() {
            register(poll.registry(), i, a);
        }
        let mut events = mio::Events::with_capacity(64);
        loop {
            let deadline = attempts
                .iter()
                .filter_map(|a| match a {
                    Attempt::Asking(l) => Some(l.deadline()),
                    Attempt::Done(_) => None,
                })
                .min();
            let Some(deadline) = deadline else { break };
            let wait = deadline.saturating_duration_since(Instant::now());
            match poll.poll(&mut events, Some(wait)) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    for a in attempts
                        .iter_mut()
                        .filter(|a| matches!(a, Attempt::Asking(_)))
                    {
                        *a = Attempt::Done(Err(format!("cannot resolve: {e}")));
                    }
                    break;
                }
                Ok(()) => {}
            }
            let readable: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            let now = Instant::now();
            for (i, a) in attempts.iter_mut().enumerate() {
                let Attempt::Asking(l) = a else { continue };
                let mut p = l.expired(now);
                if readable.contains(&i) && p == Progress::Pending {
                    p = l.readable(poll.registry(), mio::Token(i));
                }
                if p == Progress::Pending {
                    continue;
                }
                l.deregister(poll.registry());
                let done = std::mem::replace(a, Attempt::Done(Ok(Vec::new())));
                *a = done.next(self, &hosts[i], p, now);
                register(poll.registry(), i, a);
            }
        }
        attempts
            .into_iter()
            .map(|a| match a {
                Attempt::Done(r) => r,
                Attempt::Asking(_) => Err("cannot resolve".into()),
            })
            .collect()
    }
}

/// Waits for `a`'s answer under token `i` (a failure to do so is its answer).
fn register(r: &mio::Registry, i: usize, a: &mut Attempt) {
    if let Attempt::Asking(l) = a {
        if let Err(e) = l.register(r, mio::Token(i)) {
            *a = Attempt::Done(Err(format!("cannot resolve: {e}")));
        }
    }
}

/// A lookup over the resolver's servers: one `Lookup` per server until one answers.
pub enum Attempt {
    Asking(Lookup),
    Done(Result<Vec<IpAddr>, String>),
}

impl Attempt {
    /// Starts with the first server (or the hosts file's answer).
    pub fn new(r: &Resolver, host: &str, now: Instant) -> Attempt {
        let local = from_hosts_file(&r.hosts, host, r.ipv6);
        if !local.is_empty() {
            return Attempt::Done(Ok(tidy(local)));
        }
        Attempt::ask(r, host, 0, now, None)
    }

    fn ask(r: &Resolver, host: &str, server: usize, now: Instant, last: Option<String>) -> Attempt {
        let Some(&addr) = r.servers.get(server) else {
            return Attempt::Done(Err(last.unwrap_or_else(|| "no name server".into())));
        };
        // Each server gets its share of the lookup's time.
        let share = r.timeout / r.servers.len().max(1) as u32;
        match Lookup::start(addr, server, host, r.ipv6, now + share) {
            Ok(l) => Attempt::Asking(l),
            Err(e) => Attempt::ask(r, host, server + 1, now, Some(e)),
        }
    }

    /// What follows a lookup's outcome: its answer, or the next server after a timeout or a
    /// server failure. A name the server says does not exist is final.
    pub fn next(self, r: &Resolver, host: &str, p: Progress, now: Instant) -> Attempt {
        let Attempt::Asking(l) = self else {
            return self;
        };
        match p {
            Progress::Pending => Attempt::Asking(l),
            Progress::Answer(v) => Attempt::Done(Ok(tidy(v))),
            Progress::NoSuchName(why) => Attempt::Done(Err(why)),
            Progress::TryNext(why) => Attempt::ask(r, host, l.server() + 1, now, Some(why)),
        }
    }
}

/// Logs what a new resolution of peer `name` of upstream `upstream` changed.
pub fn log_placed(upstream: &str, name: &str, p: &crate::shm::Placed) {
    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !p.changed() {
        // The same answer again: said already.
        return;
    }
    log::info!(
        "peer {name} of upstream \"{upstream}\": added [{}], removed [{}]",
        list(&p.added),
        list(&p.removed)
    );
    if !p.left_out.is_empty() {
        log::warn!(
            "peer {name} of upstream \"{upstream}\": no room for [{}] (max_addresses)",
            list(&p.left_out)
        );
    }
}

#[cfg(test)]
mod tests;
