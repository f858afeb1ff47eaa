//! Ketama-style ring hash (Envoy's `RING_HASH`): each host owns many points on a 64-bit ring
//! in proportion to its weight; a key goes to the first point at or after its hash.

use std::io::Write as _;

use rand::Rng as _;
use rand::rngs::SmallRng;

use super::{LbHost, hash_key};

/// Envoy's cap on ring entries.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// Points each unit of weight gets at least (libketama's 160 points per server).
pub const POINTS_PER_WEIGHT: u64 = 160;

/// A ring of (hash, host id) points, sorted by hash.
#[derive(Debug, Clone)]
pub struct RingHash {
    ring: Vec<(u64, usize)>,
}

impl RingHash {
    /// Builds a ring with at least `minimum_ring_size` points: every host gets `V x weight`
    /// points, where `V` is at least [`POINTS_PER_WEIGHT`] (libketama's count) and large
    /// enough to reach the minimum, capped so the ring stays within Envoy's 8M entries. A
    /// point's hash is xxHash64 of `"{name}_{i}"`.
    ///
    /// Envoy instead rescales every host's points to the minimum ring size, so adding or
    /// removing one host also moves keys between the others (about 2/N of all keys in total);
    /// with a fixed `V` per weight unit, only the keys of the added or removed host move
    /// once `160 x total weight >= minimum_ring_size` (7 or more equal hosts for the default
    /// 1024); below that the points are rescaled as in Envoy.
    pub fn new(hosts: &[LbHost], minimum_ring_size: u64) -> Self {
        let total: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
        if total == 0 {
            return Self { ring: Vec::new() };
        }
        let per_weight = minimum_ring_size
            .div_ceil(total)
            .max(POINTS_PER_WEIGHT)
            .min(MAX_RING_SIZE / total)
            .max(1);
        let mut ring = Vec::with_capacity((per_weight * total) as usize);
        let mut key = Vec::with_capacity(64);
        for h in hosts {
            for i in 0..per_weight * u64::from(h.weight) {
                // `"{name}_{i}"` without an allocation per point.
                key.clear();
                key.extend_from_slice(h.name.as_bytes());
                key.push(b'_');
                let _ = write!(key, "{i}");
                ring.push((hash_key(&key), h.id));
            }
        }
        ring.sort_unstable();
        Self { ring }
    }

    /// The host owning `hash`; a random host when the request had no key (as Envoy does).
    pub fn pick(&self, hash: Option<u64>, rng: &mut SmallRng) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let hash = hash.unwrap_or_else(|| rng.random());
        let i = self.ring.partition_point(|(h, _)| *h < hash);
        Some(self.ring[if i == self.ring.len() { 0 } else { i }].1)
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring has no points.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::hosts;
    use rand::SeedableRng as _;

    fn owners(ring: &RingHash, hosts: &[LbHost], keys: usize) -> Vec<String> {
        let mut rng = SmallRng::seed_from_u64(0);
        (0..keys)
            .map(|k| {
                let id = ring.pick(Some(hash_key(format!("user-{k}").as_bytes())), &mut rng);
                hosts[id.unwrap()].name.clone()
            })
            .collect()
    }

    #[test]
    fn same_key_same_host_while_set_is_stable() {
        let hs = hosts(&[1; 5]);
        let ring = RingHash::new(&hs, 1024);
        assert_eq!(
            owners(&ring, &hs, 1000),
            owners(&RingHash::new(&hs, 1024), &hs, 1000)
        );
    }

    #[test]
    fn removing_one_of_n_moves_only_its_keys() {
        let n = 10;
        let all = hosts(&[1; 10]);
        let before = owners(&RingHash::new(&all, 1024), &all, 10_000);
        let fewer: Vec<_> = all[..n - 1].to_vec();
        let after = owners(&RingHash::new(&fewer, 1024), &fewer, 10_000);
        let removed = &all[n - 1].name;
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                // Only keys of the removed host may move.
                assert_eq!(b, removed);
                moved += 1;
            }
        }
        // About 1/N of the keys lived there; allow 1/N +- 50%.
        assert!((500..1500).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn adding_one_moves_about_one_in_n() {
        let all = hosts(&[1; 10]);
        let before = owners(&RingHash::new(&all[..9], 1024), &all[..9], 10_000);
        let after = owners(&RingHash::new(&all, 1024), &all, 10_000);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(
            after
                .iter()
                .zip(&before)
                .all(|(a, b)| a == b || *a == all[9].name)
        );
        assert!((500..1500).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn weights_set_the_share_of_points() {
        let hs = hosts(&[1, 3]);
        let ring = RingHash::new(&hs, 1024);
        let heavy = ring.ring.iter().filter(|(_, id)| *id == 1).count();
        assert_eq!(heavy * 4, ring.len() * 3, "{heavy} of {}", ring.len());
    }
}
