//! Weighted random choice.

use rand::Rng as _;
use rand::rngs::SmallRng;

use super::LbHost;

/// Each pick is an independent draw with probability `weight / total`.
#[derive(Debug, Clone)]
pub struct WeightedRandom {
    ids: Vec<usize>,
    /// Running sums; `None` when all weights are equal (a uniform draw suffices).
    cumulative: Option<Vec<u64>>,
}

impl WeightedRandom {
    /// A balancer over `hosts` (weights must be positive).
    pub fn new(hosts: &[LbHost]) -> Self {
        let uniform = hosts.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = (!uniform).then(|| {
            let mut total = 0u64;
            hosts
                .iter()
                .map(|h| {
                    total += u64::from(h.weight);
                    total
                })
                .collect()
        });
        Self {
            ids: hosts.iter().map(|h| h.id).collect(),
            cumulative,
        }
    }

    /// Draws a host.
    pub fn pick(&self, rng: &mut SmallRng) -> Option<usize> {
        let i = self.draw(rng)?;
        Some(self.ids[i])
    }

    /// Draws a position in the host list.
    pub(crate) fn draw(&self, rng: &mut SmallRng) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        match &self.cumulative {
            None => Some(rng.random_range(0..self.ids.len())),
            Some(c) => {
                let total = *c.last()?;
                let t = rng.random_range(0..total);
                Some(c.partition_point(|&s| s <= t))
            }
        }
    }

    /// The host id at a position returned by `draw`.
    pub(crate) fn id(&self, i: usize) -> usize {
        self.ids[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::hosts;
    use rand::SeedableRng as _;

    #[test]
    fn weights_are_honoured_within_one_point() {
        let b = WeightedRandom::new(&hosts(&[1, 3]));
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 100_000;
        let second = (0..n).filter(|_| b.pick(&mut rng) == Some(1)).count();
        let share = second as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
    }

    #[test]
    fn empty_set_picks_nothing() {
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(WeightedRandom::new(&[]).pick(&mut rng), None);
    }
}
