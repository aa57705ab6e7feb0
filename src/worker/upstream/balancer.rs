//! Choosing a peer: smooth weighted round-robin (nginx's) with passive failure marking. The
//! round-robin position is this worker's; whether a peer is down is the node's, in shared
//! memory, so every worker (and the next generation, and a respawned worker) skips it.

use crate::config::Upstream;
use crate::shm::View;

/// A peer that failed is skipped for this long (nginx `fail_timeout` default), in ms.
const FAIL_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Default)]
struct PeerState {
    current: i64,
}

pub struct Balancer {
    peers: Vec<Vec<PeerState>>,
}

impl Balancer {
    pub fn new(upstreams: &[Upstream]) -> Balancer {
        Balancer {
            peers: upstreams
                .iter()
                .map(|u| vec![PeerState::default(); u.peers.len()])
                .collect(),
        }
    }

    /// Picks a peer of upstream `u` not in `tried`; peers marked down are used only when
    /// every untried peer is down.
    pub fn pick(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        shared: &View,
        now_ms: u64,
    ) -> Option<usize> {
        self.pick_inner(ups, u, tried, Some((shared, now_ms)))
            .or_else(|| self.pick_inner(ups, u, tried, None))
    }

    fn pick_inner(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        skip_down: Option<(&View, u64)>,
    ) -> Option<usize> {
        let states = &mut self.peers[u];
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, p) in ups[u].peers.iter().enumerate() {
            let down = || skip_down.is_some_and(|(v, now)| v.health(p.slot).is_down(now));
            if tried.contains(&i) || down() {
                continue;
            }
            states[i].current += p.weight as i64;
            total += p.weight as i64;
            if best.is_none_or(|b| states[i].current > states[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        states[b].current -= total;
        Some(b)
    }
}

/// A peer failed: it is skipped by every worker for `FAIL_TIMEOUT_MS`.
pub fn failed(shared: &View, peer_slot: u32, now_ms: u64) {
    shared
        .health(peer_slot)
        .failed(now_ms, now_ms + FAIL_TIMEOUT_MS);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;
    use crate::shm::Region;
    use std::time::Duration;

    fn ups(weights: &[u32]) -> Vec<Upstream> {
        vec![Upstream {
            slot: 9,
            name: "u".into(),
            peers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Peer {
                    slot: i as u32,
                    name: format!("p{i}"),
                    addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    weight: w,
                })
                .collect(),
            keepalive: 1,
            keepalive_timeout: Duration::from_secs(1),
            keepalive_requests: 1,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        }]
    }

    #[test]
    fn smooth_weighted_round_robin() {
        let u = ups(&[5, 1, 1]);
        let mut b = Balancer::new(&u);
        let r = Region::create(16, 1).unwrap();
        let v = r.view();
        let now = 1000;
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&u, 0, &[], &v, now).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        failed(&v, 0, now);
        assert_ne!(b.pick(&u, 0, &[], &v, now), Some(0));
        assert_eq!(
            b.pick(&u, 0, &[1, 2], &v, now),
            Some(0),
            "a down peer is used as last resort"
        );
        assert_eq!(b.pick(&u, 0, &[0, 1, 2], &v, now), None);
        assert_eq!(
            b.pick(&u, 0, &[1, 2], &v, now + FAIL_TIMEOUT_MS),
            Some(0),
            "up again after the timeout"
        );
    }
}
