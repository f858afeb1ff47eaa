//! Pure weight arithmetic: which index gets the next request. No I/O, no async.

use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng as _;
use rand::rngs::SmallRng;

use crate::rng::RngSource;

/// Why a list of weights cannot split traffic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// No destinations at all.
    #[error("at least one destination is required")]
    Empty,
    /// Several destinations, all with weight 0: Istio rejects this configuration.
    #[error("weights of {0} destinations are all 0; at least one must be positive")]
    AllZero(usize),
}

/// Weights after Istio's rules: a single destination gets everything whatever its weight;
/// with several, at least one is positive and weight-0 entries are never chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    weights: Arc<[u32]>,
    /// Running sums, for binary search in random mode.
    cumulative: Arc<[u64]>,
    total: u64,
}

impl Weights {
    /// Validates `weights` (in destination order) against Istio's rules.
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Result<Self, WeightsError> {
        let mut weights: Vec<u32> = weights.into_iter().collect();
        match weights.len() {
            0 => return Err(WeightsError::Empty),
            1 => weights[0] = 1,
            n if weights.iter().all(|w| *w == 0) => return Err(WeightsError::AllZero(n)),
            _ => {}
        }
        let mut total = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                total += u64::from(*w);
                total
            })
            .collect();
        Ok(Self {
            weights: weights.into(),
            cumulative,
            total,
        })
    }

    /// Number of destinations (including weight-0 ones).
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: the list is validated non-empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Sum of the weights: the length of one round-robin period.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The effective weights, in order.
    pub fn as_slice(&self) -> &[u32] {
        &self.weights
    }

    /// The index owning ticket `t` in `0..total`.
    fn index_of_ticket(&self, t: u64) -> usize {
        // First running sum strictly above t; weight-0 entries repeat the previous sum and are
        // therefore never the first one above it.
        self.cumulative.partition_point(|&c| c <= t)
    }
}

/// How the next destination is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Independent draws with probability `weight / total` (Envoy's weighted clusters).
    #[default]
    Random,
    /// nginx's smooth weighted round-robin: every window of `total` consecutive choices holds
    /// each destination exactly `weight` times, interleaved rather than in bursts.
    RoundRobin,
}

/// Chooses indices according to [`Weights`] and a [`Mode`].
///
/// Cloning a random picker gives the clone its own generator stream; cloning a round-robin
/// picker shares the rotation, so proportions stay exact across all clones of a service (one
/// clone per connection would otherwise restart the rotation on every connection).
///
/// ```
/// use mesh_mirror::{Mode, Picker, RngSource, Weights};
/// let mut rr = Picker::new(Weights::new([2, 1]).unwrap(), Mode::RoundRobin, &RngSource::seeded(0));
/// let picks: Vec<usize> = (0..6).map(|_| rr.pick()).collect();
/// assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
/// ```
#[derive(Debug)]
pub struct Picker {
    weights: Weights,
    state: PickerState,
}

#[derive(Debug)]
enum PickerState {
    Random { rng: SmallRng, source: RngSource },
    RoundRobin(Arc<Mutex<Vec<i64>>>),
}

impl Clone for Picker {
    fn clone(&self) -> Self {
        let state = match &self.state {
            PickerState::Random { source, .. } => PickerState::Random {
                rng: source.stream(),
                source: source.clone(),
            },
            PickerState::RoundRobin(current) => PickerState::RoundRobin(current.clone()),
        };
        Self {
            weights: self.weights.clone(),
            state,
        }
    }
}

impl Picker {
    /// A picker over `weights`; `rng` is only used in random mode.
    pub fn new(weights: Weights, mode: Mode, rng: &RngSource) -> Self {
        let state = match mode {
            Mode::Random => PickerState::Random {
                rng: rng.stream(),
                source: rng.clone(),
            },
            Mode::RoundRobin => {
                PickerState::RoundRobin(Arc::new(Mutex::new(vec![0; weights.len()])))
            }
        };
        Self { weights, state }
    }

    /// The weights this picker follows.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The next index. Never returns the index of a weight-0 destination (unless it is the only
    /// destination, which Istio sends everything to).
    pub fn pick(&mut self) -> usize {
        let weights = &self.weights;
        if weights.len() == 1 {
            return 0;
        }
        match &mut self.state {
            PickerState::Random { rng, .. } => {
                weights.index_of_ticket(rng.random_range(0..weights.total))
            }
            PickerState::RoundRobin(current) => {
                // A poisoned lock only means another thread panicked between two plain integer
                // updates; the vector is still a valid rotation state.
                let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
                smooth_round_robin(&mut current, &weights.weights, weights.total)
            }
        }
    }
}

/// One step of nginx's smooth weighted round-robin (`ngx_http_upstream_get_peer`): every
/// entry gains its weight, the largest (first on ties) is chosen and pays back the total.
/// After `total` steps every counter is back at zero, so the sequence is periodic with period
/// `total` and any window of `total` consecutive picks holds exactly `weight` of each index.
fn smooth_round_robin(current: &mut [i64], weights: &[u32], total: u64) -> usize {
    let mut best = 0;
    let mut best_value = i64::MIN;
    for (i, (c, w)) in current.iter_mut().zip(weights).enumerate() {
        *c += i64::from(*w);
        if i == 0 || *c > best_value {
            best = i;
            best_value = *c;
        }
    }
    // A route has a handful of destinations of at most u32::MAX each: the total fits in i64.
    current[best] -= i64::try_from(total).unwrap_or(i64::MAX);
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn picker(weights: &[u32], mode: Mode, seed: u64) -> Picker {
        let weights = Weights::new(weights.iter().copied()).unwrap();
        Picker::new(weights, mode, &RngSource::seeded(seed))
    }

    #[test]
    fn all_zero_with_several_destinations_is_an_error() {
        assert_eq!(Weights::new([0, 0, 0]), Err(WeightsError::AllZero(3)));
        assert_eq!(Weights::new([]), Err(WeightsError::Empty));
    }

    #[test]
    fn single_destination_gets_everything_even_with_weight_zero() {
        for mode in [Mode::Random, Mode::RoundRobin] {
            let mut p = picker(&[0], mode, 1);
            assert!((0..100).all(|_| p.pick() == 0));
        }
    }

    #[test]
    fn weight_zero_never_chosen() {
        for mode in [Mode::Random, Mode::RoundRobin] {
            let mut p = picker(&[0, 3, 0, 1, 0], mode, 2);
            for _ in 0..10_000 {
                let i = p.pick();
                assert!(i == 1 || i == 3, "{mode:?} chose weight-0 index {i}");
            }
        }
    }

    #[test]
    fn round_robin_interleaves_like_nginx() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c.
        let mut p = picker(&[5, 1, 1], Mode::RoundRobin, 0);
        let picks: Vec<usize> = (0..7).map(|_| p.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_rotation_is_shared_by_clones() {
        let mut a = picker(&[1, 1], Mode::RoundRobin, 0);
        let mut b = a.clone();
        assert_eq!([a.pick(), b.pick(), a.pick(), b.pick()], [0, 1, 0, 1]);
    }

    #[test]
    fn random_clones_draw_different_sequences() {
        let mut a = picker(&[1, 1], Mode::Random, 9);
        let mut b = a.clone();
        let sa: Vec<usize> = (0..64).map(|_| a.pick()).collect();
        let sb: Vec<usize> = (0..64).map(|_| b.pick()).collect();
        assert_ne!(sa, sb);
    }

    fn weight_lists() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(0u32..100, 2..8)
            .prop_filter("not all zero", |w| w.iter().any(|x| *x > 0))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Tolerance: each destination's observed share is within 1 percentage point of
        /// weight/total after 100k draws. The standard deviation of a share is at most
        /// sqrt(0.25 / 100_000) ~ 0.16 points, so 1 point is more than 6 sigma.
        #[test]
        fn random_mode_converges_to_the_weights(weights in weight_lists(), seed in any::<u64>()) {
            const DRAWS: usize = 100_000;
            let mut p = picker(&weights, Mode::Random, seed);
            let mut counts = vec![0usize; weights.len()];
            for _ in 0..DRAWS {
                counts[p.pick()] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (w, c) in weights.iter().zip(&counts) {
                let expected = f64::from(*w) / f64::from(total);
                let observed = *c as f64 / DRAWS as f64;
                prop_assert!((expected - observed).abs() < 0.01,
                    "weights {weights:?}: expected {expected}, observed {observed}");
                if *w == 0 {
                    prop_assert_eq!(*c, 0);
                }
            }
        }

        #[test]
        fn round_robin_is_exact_over_every_window(weights in weight_lists(), offset in 0usize..50) {
            let mut p = picker(&weights, Mode::RoundRobin, 0);
            let period = usize::try_from(p.weights().total()).unwrap();
            let picks: Vec<usize> = (0..offset + 3 * period).map(|_| p.pick()).collect();
            for window in picks[offset..].windows(period) {
                let mut counts = vec![0u32; weights.len()];
                for i in window {
                    counts[*i] += 1;
                }
                prop_assert_eq!(&counts, &weights);
            }
        }
    }
}
