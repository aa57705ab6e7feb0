//! Choosing a peer: smooth weighted round-robin (nginx's) with passive failure marking.

use crate::config::Upstream;
use std::time::{Duration, Instant};

/// A peer that failed is skipped for this long (nginx `fail_timeout` default).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct PeerState {
    current: i64,
    down_until: Option<Instant>,
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
        now: Instant,
    ) -> Option<usize> {
        self.pick_inner(ups, u, tried, now, true)
            .or_else(|| self.pick_inner(ups, u, tried, now, false))
    }

    fn pick_inner(
        &mut self,
        ups: &[Upstream],
        u: usize,
        tried: &[usize],
        now: Instant,
        skip_down: bool,
    ) -> Option<usize> {
        let states = &mut self.peers[u];
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, p) in ups[u].peers.iter().enumerate() {
            if tried.contains(&i) || (skip_down && states[i].down_until.is_some_and(|t| t > now)) {
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

    pub fn failed(&mut self, u: usize, peer: usize, now: Instant) {
        self.peers[u][peer].down_until = Some(now + FAIL_TIMEOUT);
    }

    pub fn succeeded(&mut self, u: usize, peer: usize) {
        self.peers[u][peer].down_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;

    fn ups(weights: &[u32]) -> Vec<Upstream> {
        vec![Upstream {
            name: "u".into(),
            peers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Peer {
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
        let now = Instant::now();
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&u, 0, &[], now).unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        b.failed(0, 0, now);
        assert_ne!(b.pick(&u, 0, &[], now), Some(0));
        assert_eq!(
            b.pick(&u, 0, &[1, 2], now),
            Some(0),
            "a down peer is used as last resort"
        );
        assert_eq!(b.pick(&u, 0, &[0, 1, 2], now), None);
    }
}
