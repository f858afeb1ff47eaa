//! Weighted round robin: an atomic counter when weights are equal, earliest-deadline-first
//! scheduling (Envoy's algorithm) when they differ.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::LbHost;

/// Round robin over hosts; every window of `sum(weights)` picks holds each host `weight`
/// times (up to rounding in the scheduler's float deadlines). State is shared by all users
/// of one balancer, so the rotation does not restart per connection.
#[derive(Debug)]
pub struct RoundRobin {
    ids: Vec<usize>,
    next: AtomicUsize,
    /// `None` when all weights are equal.
    edf: Option<Mutex<Edf>>,
}

#[derive(Debug)]
struct Edf {
    /// (deadline, position): the earliest deadline is served next; ties go to the lower
    /// position, which keeps the order deterministic.
    heap: BinaryHeap<Reverse<(Deadline, usize)>>,
    step: Vec<f64>,
}

/// A non-negative float ordered by its bit pattern (monotonic for non-negative values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline(u64);

impl Deadline {
    fn new(v: f64) -> Self {
        Self(v.to_bits())
    }
    fn value(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl RoundRobin {
    /// A balancer over `hosts` (weights must be positive).
    pub fn new(hosts: &[LbHost]) -> Self {
        let uniform = hosts.windows(2).all(|w| w[0].weight == w[1].weight);
        let edf = (!uniform).then(|| {
            let step: Vec<f64> = hosts.iter().map(|h| 1.0 / f64::from(h.weight)).collect();
            let heap = step
                .iter()
                .enumerate()
                .map(|(i, s)| Reverse((Deadline::new(*s), i)))
                .collect();
            Mutex::new(Edf { heap, step })
        });
        Self {
            ids: hosts.iter().map(|h| h.id).collect(),
            next: AtomicUsize::new(0),
            edf,
        }
    }

    /// The next host in the rotation.
    pub fn pick(&self) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        let i = match &self.edf {
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.ids.len(),
            Some(edf) => {
                let mut edf = edf.lock().unwrap_or_else(PoisonError::into_inner);
                let Reverse((deadline, i)) = edf.heap.pop()?;
                let next = Deadline::new(deadline.value() + edf.step[i]);
                edf.heap.push(Reverse((next, i)));
                i
            }
        };
        Some(self.ids[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::hosts;

    #[test]
    fn equal_weights_rotate_in_order() {
        let rr = RoundRobin::new(&hosts(&[1, 1, 1]));
        let picks: Vec<_> = (0..6).map(|_| rr.pick().unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_exact_over_each_period() {
        let rr = RoundRobin::new(&hosts(&[5, 1, 2]));
        for _ in 0..10 {
            let mut counts = [0; 3];
            for _ in 0..8 {
                counts[rr.pick().unwrap()] += 1;
            }
            assert_eq!(counts, [5, 1, 2]);
        }
    }
}
