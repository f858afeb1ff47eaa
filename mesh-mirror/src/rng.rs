//! Seedable random number streams shared by weighted selection and mirror sampling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::SeedableRng as _;
use rand::rngs::SmallRng;

/// Where a layer's random numbers come from.
///
/// Each service clone draws its own [`SmallRng`] stream from the source, so clones never share
/// (or lock) a generator yet never repeat each other's sequence. A seeded source makes every
/// stream, and therefore every test, deterministic.
///
/// Drawing a stream is cheap (a counter and a few multiplications): services are cloned per
/// request, so the operating system's entropy is read once per source, not once per stream.
/// The streams choose endpoints and sample percentages; they are not for secrets.
///
/// ```
/// use mesh_mirror::RngSource;
/// use rand::Rng as _;
/// let a = RngSource::seeded(7);
/// let b = RngSource::seeded(7);
/// assert_eq!(a.stream().random::<u64>(), b.stream().random::<u64>());
/// ```
#[derive(Debug, Clone)]
pub struct RngSource {
    seed: u64,
    next_stream: Arc<AtomicU64>,
}

impl Default for RngSource {
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl RngSource {
    /// Streams seeded from the operating system: what production wants.
    pub fn from_entropy() -> Self {
        Self::seeded(rand::random())
    }

    /// Deterministic streams: the n-th stream of a source seeded with `seed` is always the same.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            next_stream: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A new, independent generator.
    pub fn stream(&self) -> SmallRng {
        let n = self.next_stream.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(splitmix64(self.seed.wrapping_add(n.wrapping_mul(GOLDEN))))
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Spreads nearby seeds (stream 0, 1, 2...) over the whole seed space.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn streams_of_one_seeded_source_differ() {
        let source = RngSource::seeded(1);
        let a: u64 = source.stream().random();
        let b: u64 = source.stream().random();
        assert_ne!(a, b);
    }

    #[test]
    fn entropy_sources_differ_and_their_streams_differ() {
        let (a, b) = (RngSource::from_entropy(), RngSource::from_entropy());
        let (a1, a2): (u64, u64) = (a.stream().random(), a.stream().random());
        assert_ne!(a1, a2);
        assert_ne!(a1, b.stream().random::<u64>());
    }

    #[test]
    fn clones_of_a_source_continue_one_sequence_of_streams() {
        let source = RngSource::seeded(1);
        let first: u64 = source.stream().random();
        let clone = source.clone();
        let second: u64 = clone.stream().random();
        let fresh = RngSource::seeded(1);
        let _: u64 = fresh.stream().random();
        assert_eq!(second, fresh.stream().random::<u64>());
        assert_ne!(first, second);
    }
}
