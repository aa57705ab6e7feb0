//! The consistent hash ring of an upstream's primary peers (ketama style): each peer owns
//! `POINTS x weight` points placed by hashing its name, so removing one of ten peers moves
//! only the keys it owned (about a tenth) and every other key stays where it was.

use super::Peer;

/// Points per unit of weight: enough for an even spread (within a few percent).
const POINTS: u32 = 160;

#[derive(Debug, Default)]
pub struct Ring {
    /// (point, peer index), sorted by point.
    points: Vec<(u32, u32)>,
}

pub use crate::hash::stable as hash;

impl Ring {
    pub fn build(peers: &[Peer]) -> Ring {
        let mut points = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            if p.backup || p.down {
                continue;
            }
            for k in 0..POINTS * p.weight {
                let h = hash(format!("{}-{k}", p.key()).as_bytes());
                points.push(((h >> 32) as u32, i as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Peers in ring order from `key`'s point on, each once, for as long as the caller
    /// wants (it skips the ones that are down or tried).
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let at = (key >> 32) as u32;
        let start = self.points.partition_point(|p| p.0 < at);
        let n = self.points.len();
        (0..n).map(move |i| self.points[(start + i) % n].1 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<Peer> {
        (0..n)
            .map(|i| Peer {
                name: format!("10.0.0.{i}:80"),
                slot: 0,
                addr: super::super::PeerAddr::Fixed(format!("10.0.0.{i}:80").parse().unwrap()),
                weight: 1,
                backup: false,
                down: false,
            })
            .collect()
    }

    /// Removing one of ten peers remaps about a tenth of the keys, and only keys that were
    /// on the removed peer.
    #[test]
    fn removing_one_of_ten_remaps_a_tenth() {
        let ten = peers(10);
        let mut nine = ten.clone();
        nine.remove(4);
        let (a, b) = (Ring::build(&ten), Ring::build(&nine));
        let keys = 20_000;
        let mut moved = 0;
        let mut per_peer = [0usize; 10];
        for k in 0..keys {
            let h = hash(format!("user-{k}").as_bytes());
            let before = &ten[a.walk(h).next().unwrap()].name;
            let after = &nine[b.walk(h).next().unwrap()].name;
            per_peer[a.walk(h).next().unwrap()] += 1;
            if before != after {
                assert_eq!(before, "10.0.0.4:80", "a key moved between two kept peers");
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!((0.07..=0.13).contains(&share), "moved {share}");
        for (i, n) in per_peer.iter().enumerate() {
            assert!((1400..=2600).contains(n), "peer {i} has {n} of {keys}");
        }
    }
}
