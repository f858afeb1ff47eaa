//! Least request by the power of two choices: draw two hosts, send to the one with fewer
//! requests in flight (Envoy's `LEAST_REQUEST`, Istio's default).

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::SmallRng;

use super::LbHost;
use super::random::WeightedRandom;

/// Power of two choices. With unequal weights both candidates are drawn by weight and
/// compared by `in_flight / weight` (Envoy instead schedules by `weight / (in_flight + 1)`;
/// both favour heavier hosts in proportion).
#[derive(Debug, Clone)]
pub struct LeastRequest {
    draw: WeightedRandom,
    weights: Vec<u32>,
}

impl LeastRequest {
    /// A balancer over `hosts` (weights must be positive).
    pub fn new(hosts: &[LbHost]) -> Self {
        Self {
            draw: WeightedRandom::new(hosts),
            weights: hosts.iter().map(|h| h.weight).collect(),
        }
    }

    /// Draws two candidates and returns the less loaded one (the first on a tie). A host id
    /// beyond `in_flight` counts as idle.
    pub fn pick(&self, rng: &mut SmallRng, in_flight: &[AtomicUsize]) -> Option<usize> {
        let a = self.draw.draw(rng)?;
        let b = self.draw.draw(rng)?;
        let load = |i: usize| {
            in_flight
                .get(self.draw.id(i))
                .map_or(0, |n| n.load(Ordering::Relaxed)) as u128
        };
        // a_load / a_weight <= b_load / b_weight, without division.
        let a_score = load(a) * u128::from(self.weights[b]);
        let b_score = load(b) * u128::from(self.weights[a]);
        Some(self.draw.id(if a_score <= b_score { a } else { b }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::hosts;
    use rand::SeedableRng as _;

    #[test]
    fn busy_host_is_avoided_when_it_is_one_of_the_two() {
        let b = LeastRequest::new(&hosts(&[1, 1]));
        let in_flight = [AtomicUsize::new(10), AtomicUsize::new(0)];
        let mut rng = SmallRng::seed_from_u64(1);
        let to_busy = (0..1000)
            .filter(|_| b.pick(&mut rng, &in_flight) == Some(0))
            .count();
        // Only a draw of (busy, busy) lands on it: about a quarter of the time.
        assert!((150..350).contains(&to_busy), "{to_busy}");
    }

    #[test]
    fn idle_hosts_share_evenly() {
        let b = LeastRequest::new(&hosts(&[1, 1, 1, 1]));
        let in_flight: Vec<_> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        let mut rng = SmallRng::seed_from_u64(2);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[b.pick(&mut rng, &in_flight).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
