//! Choosing a peer (`balance`): smooth weighted round-robin (nginx's), least connections
//! over the whole node, power of two random choices, a consistent hash ring (client address
//! or a request value), or the first live peer. Every algorithm sees only the usable peers:
//! not yet tried for this request, not `down` in the config, with an address (a host name's
//! spare entries have none), and not marked down in the node's shared health; `backup`
//! peers only when no primary is usable. The round-robin
//! position and the random generator are this worker's; health and connection counts are
//! the node's (see `shm`).

use crate::config::{Balance, Peer, Upstream};
use crate::shm::{Checked, PeerAdmin, View};

pub struct Balancer {
    /// Smooth weighted round-robin: each peer's current weight, every upstream's peers one
    /// after another (upstream `u`'s start at `starts[u]`). One allocation, not one per
    /// upstream: a worker's small allocations land in the heap pages it shares with the
    /// master, and each copies a page (5,000 upstreams cost every worker 20 MB that way).
    current: Vec<i64>,
    starts: Vec<usize>,
    rng: u64,
    /// The usable peers of the pick in progress (kept to reuse its memory).
    scratch: Vec<usize>,
}

/// The outcome of a pick.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Peer(usize),
    /// No usable peer: every one is down, `down` in the config, or already tried.
    None,
}

impl Balancer {
    pub fn new(upstreams: &[Upstream]) -> Balancer {
        let seed = (std::process::id() as u64) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        Balancer {
            current: vec![0; upstreams.iter().map(|u| u.peers.len()).sum()],
            starts: upstreams
                .iter()
                .scan(0, |at, u| {
                    let start = *at;
                    *at += u.peers.len();
                    Some(start)
                })
                .collect(),
            rng: seed | 1,
            scratch: Vec::new(),
        }
    }

    /// xorshift64*: enough for spreading load, and no system call per request.
    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Picks a peer of upstream `u` for a request that already tried `tried`; `hash` is
    /// the request's key for `ip_hash` and `hash`.
    pub fn pick(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        hash: Option<u64>,
        shared: &View,
        now_ms: u64,
    ) -> Pick {
        let group = &ups[u];
        // A lone peer is never ejected for its failures (nginx ignores max_fails then):
        // trying it is the only chance the request has. A failed health check still counts.
        let lone = group
            .peers
            .iter()
            .filter(|p| {
                !p.down && p.present(shared) && shared.health(p.slot).admin() == PeerAdmin::Normal
            })
            .count()
            == 1;
        let live = |i: usize, p: &Peer, health: bool| {
            let h = shared.health(p.slot);
            !p.down
                && h.admin() == PeerAdmin::Normal
                && !tried.contains(&i)
                && p.present(shared)
                && (!health || (checked_up(group, h.checked()) && (lone || !h.ejected(now_ms))))
        };
        let mut c = std::mem::take(&mut self.scratch);
        for health in [true, false] {
            if !health && !group.fail_open {
                break;
            }
            for backup in [false, true] {
                c.clear();
                c.extend(
                    group
                        .peers
                        .iter()
                        .enumerate()
                        .filter(|(i, p)| p.backup == backup && live(*i, p, health))
                        .map(|(i, _)| i),
                );
                if !c.is_empty() {
                    let on_ring = |i: usize| c.contains(&i);
                    let p = match (&group.balance, hash) {
                        (Balance::IpHash | Balance::Hash(_), Some(h))
                            if !backup && !group.ring.is_empty() =>
                        {
                            group.ring.walk(h).find(|&i| on_ring(i))
                        }
                        _ => None,
                    };
                    let p = p.unwrap_or_else(|| self.choose(group, u, &c, shared));
                    self.scratch = c;
                    return Pick::Peer(p);
                }
            }
        }
        self.scratch = c;
        Pick::None
    }

    /// One of the usable peers `c` (never empty), by the upstream's algorithm.
    fn choose(&mut self, group: &Upstream, u: usize, c: &[usize], shared: &View) -> usize {
        let weight = |i: usize| effective_weight(group, i, shared);
        let active = |i: usize| shared.health(group.peers[i].slot).active();
        // `a` carries less load per weight than `b`.
        let lighter = |a: usize, b: usize| active(a) * weight(b) < active(b) * weight(a);
        match group.balance {
            Balance::First => c[0],
            Balance::LeastConn => {
                // Ties (common: idle peers) go to one of them uniformly at random
                // (reservoir sampling), so no peer inherits another's share.
                let mut best = c[0];
                let mut ties = 1u64;
                for &i in &c[1..] {
                    if lighter(i, best) {
                        best = i;
                        ties = 1;
                    } else if !lighter(best, i) {
                        ties += 1;
                        if self.random().is_multiple_of(ties) {
                            best = i;
                        }
                    }
                }
                best
            }
            Balance::RandomTwo if c.len() > 1 => {
                let a = self.weighted_random(group, c, None, shared);
                let b = self.weighted_random(group, c, Some(a), shared);
                if lighter(b, a) {
                    b
                } else {
                    a
                }
            }
            // Round-robin, and the hash balancers for a request without a key.
            _ => {
                let start = self.starts[u];
                let cur = &mut self.current[start..start + group.peers.len()];
                let mut total = 0i64;
                let mut best = c[0];
                for &i in c {
                    cur[i] += weight(i) as i64;
                    total += weight(i) as i64;
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                best
            }
        }
    }

    /// A peer of `c` drawn with probability proportional to its weight, other than `not`.
    fn weighted_random(
        &mut self,
        group: &Upstream,
        c: &[usize],
        not: Option<usize>,
        shared: &View,
    ) -> usize {
        let total: u64 = c
            .iter()
            .filter(|&&i| Some(i) != not)
            .map(|&i| effective_weight(group, i, shared))
            .sum();
        let mut at = self.random() % total.max(1);
        for &i in c.iter().filter(|&&i| Some(i) != not) {
            let w = effective_weight(group, i, shared);
            if at < w {
                return i;
            }
            at -= w;
        }
        c[0]
    }
}

/// A peer's weight: the one set at run time through the admin API, else the config's.
fn effective_weight(group: &Upstream, i: usize, shared: &View) -> u64 {
    let p = &group.peers[i];
    shared.health(p.slot).weight().unwrap_or(p.weight) as u64
}

/// Whether the health check lets a peer take requests: not found down, and, for a check with
/// `initial = "down"`, judged up at least once.
fn checked_up(group: &crate::config::Upstream, c: Checked) -> bool {
    match c {
        Checked::Up => true,
        Checked::Down => false,
        Checked::Unknown => group
            .health_check
            .as_ref()
            .is_none_or(|h| h.initial == crate::config::Initial::Up),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ring::Ring;
    use crate::config::PeerAddr;
    use crate::shm::Region;
    use std::sync::Arc;
    use std::time::Duration;

    const FAIL_TIMEOUT_MS: u64 = 10_000;

    fn failed(v: &crate::shm::View, slot: u32, now: u64) {
        v.health(slot).eject(now, |_| FAIL_TIMEOUT_MS);
    }

    fn ups(weights: &[u32], balance: Balance) -> Vec<Upstream> {
        let peers: Vec<Peer> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Peer {
                slot: i as u32,
                name: format!("p{i}"),
                addr: PeerAddr::Fixed(format!("127.0.0.1:{}", 1000 + i).parse().unwrap()),
                weight: w,
                backup: false,
                down: false,
            })
            .collect();
        vec![Upstream {
            slot: 9,
            name: "u".into(),
            ring: Arc::new(Ring::build(&peers)),
            peers,
            balance,
            hash_key: None,
            fail_open: false,
            health_check: None,
            outlier: crate::config::Outlier {
                consecutive_failures: 1,
                count_5xx: false,
                ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(300),
                max_ejected_percent: 100,
            },
            keepalive: 1,
            keepalive_timeout: Duration::from_secs(1),
            keepalive_requests: 1,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            names: Vec::new(),
            resolve_interval: Duration::ZERO,
            max_addresses: 8,
            tls: None,
        }]
    }

    fn peer(p: Pick) -> usize {
        match p {
            Pick::Peer(i) => i,
            Pick::None => panic!("no peer"),
        }
    }

    #[test]
    fn smooth_weighted_round_robin() {
        let u = ups(&[5, 1, 1], Balance::RoundRobin);
        let mut b = Balancer::new(&u);
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        let now = 1000;
        let picks: Vec<usize> = (0..7)
            .map(|_| peer(b.pick(&u, 0, &[], None, &v, now)))
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        failed(&v, 0, now);
        assert_ne!(b.pick(&u, 0, &[], None, &v, now), Pick::Peer(0));
        assert_eq!(
            b.pick(&u, 0, &[1, 2], None, &v, now),
            Pick::None,
            "every usable peer is down"
        );
        assert_eq!(
            b.pick(&u, 0, &[1, 2], None, &v, now + FAIL_TIMEOUT_MS),
            Pick::Peer(0),
            "up again after the timeout"
        );
    }

    /// A host name's entries without an address are never picked; a lone addressed one is
    /// "lone" (not ejected for its failures) however many spare entries it has.
    #[test]
    fn entries_without_an_address_are_skipped() {
        let mut u = ups(&[1, 1, 1, 1], Balance::LeastConn);
        for (i, p) in u[0].peers.iter_mut().enumerate() {
            p.addr = PeerAddr::Named {
                name: 0,
                index: i as u32,
            };
        }
        let mut b = Balancer::new(&u);
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        assert_eq!(b.pick(&u, 0, &[], None, &v, 5), Pick::None);
        let (a1, a2) = (
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        v.place(&[0, 1, 2, 3], &[a1, a2]);
        v.place(&[0, 1, 2, 3], &[a2]);
        // 10.0.0.1 went; 10.0.0.2 stayed in slot 1.
        assert_eq!(v.address(0), None);
        for _ in 0..10 {
            assert_eq!(b.pick(&u, 0, &[], None, &v, 5), Pick::Peer(1));
        }
        failed(&v, 1, 5);
        assert_eq!(b.pick(&u, 0, &[], None, &v, 5), Pick::Peer(1), "lone");
    }

    #[test]
    fn backups_down_peers_and_fail_open() {
        let mut u = ups(&[1, 1, 1, 1], Balance::RoundRobin);
        u[0].peers[1].down = true;
        u[0].peers[2].backup = true;
        u[0].peers[3].backup = true;
        let mut b = Balancer::new(&u);
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        for _ in 0..10 {
            assert_eq!(b.pick(&u, 0, &[], None, &v, 5), Pick::Peer(0));
        }
        failed(&v, 0, 5);
        let mut seen = [0; 4];
        for _ in 0..10 {
            seen[peer(b.pick(&u, 0, &[], None, &v, 5))] += 1;
        }
        assert_eq!(
            seen,
            [0, 0, 5, 5],
            "backups share the load while the primary is down"
        );
        failed(&v, 2, 5);
        failed(&v, 3, 5);
        assert_eq!(b.pick(&u, 0, &[], None, &v, 5), Pick::None);
        u[0].fail_open = true;
        assert_eq!(
            b.pick(&u, 0, &[], None, &v, 5),
            Pick::Peer(0),
            "fail open: try anyway"
        );
    }

    #[test]
    fn least_conn_and_random_two_prefer_the_idle_peer() {
        for balance in [Balance::LeastConn, Balance::RandomTwo] {
            let u = ups(&[1, 1, 1], balance.clone());
            let mut b = Balancer::new(&u);
            let r = Region::create(16, 2).unwrap();
            let v = r.view();
            let names: Vec<String> = (0..3).map(|i| format!("peer {i}")).collect();
            let slots = crate::shm::Directory(&v)
                .assign(&names, &Default::default())
                .unwrap();
            assert_eq!(slots, [0, 1, 2]);
            // Peer 1 carries 50 connections (from another worker's block).
            v.block(1).active(1, 50);
            let mut seen = [0; 3];
            for _ in 0..300 {
                seen[peer(b.pick(&u, 0, &[], None, &v, 0))] += 1;
            }
            assert_eq!(seen[1], 0, "{balance:?}: {seen:?}");
            assert!(seen[0] > 100 && seen[2] > 100, "{balance:?}: {seen:?}");
            // Its worker dies: the master retires its block and the count goes.
            v.retire(1);
            assert_eq!(v.health(1).active(), 0);
        }
    }

    #[test]
    fn first_and_hash() {
        let u = ups(&[1, 1, 1], Balance::First);
        let mut b = Balancer::new(&u);
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        assert_eq!(b.pick(&u, 0, &[], None, &v, 0), Pick::Peer(0));
        assert_eq!(b.pick(&u, 0, &[0], None, &v, 0), Pick::Peer(1));
        let u = ups(&[1, 1, 1], Balance::IpHash);
        let mut b = Balancer::new(&u);
        for key in 0..50u64 {
            let h = crate::config::ring::hash(&key.to_le_bytes());
            let first = peer(b.pick(&u, 0, &[], Some(h), &v, 0));
            assert_eq!(peer(b.pick(&u, 0, &[], Some(h), &v, 0)), first);
            // Tried (or down): the next peer on the ring, never the same.
            assert_ne!(peer(b.pick(&u, 0, &[first], Some(h), &v, 0)), first);
        }
    }
}
