//! Endpoint load balancers: pure, synchronous structs over a list of weighted hosts. No I/O,
//! no tokio; randomness is injected, so every algorithm is testable and benchmarkable alone.

mod least_request;
mod maglev;
mod random;
mod ring_hash;
mod round_robin;

use std::sync::atomic::AtomicUsize;

use rand::rngs::SmallRng;

use crate::destination_rule::{HashTable, LbPolicy};

pub use least_request::LeastRequest;
pub use maglev::Maglev;
pub use random::WeightedRandom;
pub use ring_hash::{POINTS_PER_WEIGHT, RingHash};
pub use round_robin::RoundRobin;

/// One host a balancer chooses among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbHost {
    /// What [`Balancer::pick`] returns for this host (usually its index in the endpoint list;
    /// also the index into the in-flight counters).
    pub id: usize,
    /// Weight, at least 1 for a host that should receive traffic.
    pub weight: u32,
    /// A stable name, hashed to place the host on a ring or maglev table (its address).
    pub name: String,
}

/// Stable 64-bit hash (xxHash64, seed 0) used for consistent-hash keys and host placement.
///
/// xxHash64 is what Envoy uses for ring hash and maglev; a fixed algorithm and seed keep the
/// same key on the same host across restarts and across proxies.
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// What a pick may use besides the balancer's own state.
#[derive(Debug)]
pub struct PickContext<'a> {
    /// Random numbers (random, least-request, and hash balancers when a request has no key).
    pub rng: &'a mut SmallRng,
    /// The request's consistent-hash key, already hashed with [`hash_key`].
    pub hash: Option<u64>,
    /// Requests in flight per host id (least request); may be empty for other policies.
    pub in_flight: &'a [AtomicUsize],
}

/// A balancer for one set of hosts, built once per endpoint or health change and shared by
/// every request (`pick` takes `&self`).
#[derive(Debug)]
pub enum Balancer {
    /// Weighted round robin.
    RoundRobin(RoundRobin),
    /// Weighted random.
    Random(WeightedRandom),
    /// Power of two choices.
    LeastRequest(LeastRequest),
    /// Ketama ring.
    RingHash(RingHash),
    /// Maglev table.
    Maglev(Maglev),
}

impl Balancer {
    /// A balancer implementing `policy` over `hosts` (hosts with weight 0 are left out).
    /// `Passthrough` has no hosts to balance and falls back to least request here.
    pub fn new(policy: &LbPolicy, hosts: &[LbHost]) -> Self {
        let hosts: Vec<LbHost> = hosts.iter().filter(|h| h.weight > 0).cloned().collect();
        match policy {
            LbPolicy::RoundRobin => Self::RoundRobin(RoundRobin::new(&hosts)),
            LbPolicy::Random => Self::Random(WeightedRandom::new(&hosts)),
            LbPolicy::LeastRequest | LbPolicy::Passthrough => {
                Self::LeastRequest(LeastRequest::new(&hosts))
            }
            LbPolicy::ConsistentHash(ch) => match ch.table {
                HashTable::Ring { minimum_ring_size } => {
                    Self::RingHash(RingHash::new(&hosts, minimum_ring_size))
                }
                HashTable::Maglev { table_size } => Self::Maglev(Maglev::new(&hosts, table_size)),
            },
        }
    }

    /// The chosen host's id, or `None` when there are no hosts.
    pub fn pick(&self, cx: &mut PickContext<'_>) -> Option<usize> {
        match self {
            Self::RoundRobin(b) => b.pick(),
            Self::Random(b) => b.pick(cx.rng),
            Self::LeastRequest(b) => b.pick(cx.rng, cx.in_flight),
            Self::RingHash(b) => b.pick(cx.hash, cx.rng),
            Self::Maglev(b) => b.pick(cx.hash, cx.rng),
        }
    }
}

#[cfg(test)]
pub(crate) fn hosts(weights: &[u32]) -> Vec<LbHost> {
    weights
        .iter()
        .enumerate()
        .map(|(id, &weight)| LbHost {
            id,
            weight,
            name: format!("10.0.{}.{}:8080", id / 256, id % 256),
        })
        .collect()
}
