//! One cluster's endpoints with everything needed to pick one: subset members, locality
//! priorities or distribute weights, outlier state, in-flight counts and the balancer over
//! the hosts currently in use. Pure and synchronous: the clock and randomness come in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use rand::Rng as _;
use rand::rngs::SmallRng;

use crate::destination_rule::{ClusterPolicy, LbPolicy};
use crate::endpoint::Endpoint;
use crate::lb::{Balancer, LbHost, PickContext};
use crate::locality::{ProxyLocation, distribute_weights, priorities, priority_loads};
use crate::outlier::{Outcome, OutlierDetector};

/// The endpoints of one cluster (host, subset, port) and their balancing state.
///
/// Traffic is shared among locality priorities by [`priority_loads`] (Envoy's spillover: the
/// preferred level keeps all traffic while at least ~71% of it is in service, then hands the
/// rest to the next level); within a level, the policy's balancer picks by weight among the
/// endpoints in service. Balancers are rebuilt only when the set of ejected endpoints changes,
/// so a pick costs the balancer's own work plus two atomic loads (and one draw when several
/// levels share traffic).
/// When every endpoint of every priority is ejected, `pick` returns `None` (Envoy's "no
/// healthy upstream"), unless `minHealthPercent` puts the cluster in panic mode, where
/// ejections are ignored.
///
/// ```
/// use std::time::Instant;
/// use mesh_mirror::{ClusterEndpoints, ClusterPolicy, Endpoint, ProxyLocation, RngSource};
/// let endpoints = (1..=3).map(|i| Endpoint::new(([10, 0, 0, i], 80).into())).collect();
/// let cluster = ClusterEndpoints::new(&ClusterPolicy::default(), &ProxyLocation::default(), endpoints, Instant::now());
/// let mut rng = RngSource::seeded(1).stream();
/// let i = cluster.pick(&mut rng, None, Instant::now()).unwrap();
/// assert!(i < 3);
/// ```
#[derive(Debug)]
pub struct ClusterEndpoints {
    endpoints: Vec<Endpoint>,
    /// Each endpoint's address as a URI authority, parsed once instead of per request
    /// (`None` for an address that is not a valid authority).
    authorities: Vec<Option<http::uri::Authority>>,
    priorities: Vec<u32>,
    weights: Vec<u32>,
    policy: LbPolicy,
    in_flight: Box<[AtomicUsize]>,
    outlier: Option<OutlierDetector>,
    plan: ArcSwap<Plan>,
    rebuilding: Mutex<()>,
}

#[derive(Debug)]
struct Plan {
    generation: u64,
    /// Priority levels that take traffic: cumulative share (percent) and their balancer.
    levels: Vec<(u32, Balancer)>,
}

impl ClusterEndpoints {
    /// Balancing state for `endpoints` (already filtered to the subset) under `policy`.
    pub fn new(
        policy: &ClusterPolicy,
        proxy: &ProxyLocation,
        endpoints: Vec<Endpoint>,
        now: Instant,
    ) -> Self {
        Self::build(policy, proxy, endpoints, None, now)
    }

    /// Balancing state for a changed endpoint list that keeps the outlier state (ejections,
    /// error streaks) of the endpoints `self` already had, matched by address.
    pub fn update(
        &self,
        policy: &ClusterPolicy,
        proxy: &ProxyLocation,
        endpoints: Vec<Endpoint>,
        now: Instant,
    ) -> Self {
        Self::build(policy, proxy, endpoints, Some(self), now)
    }

    fn build(
        policy: &ClusterPolicy,
        proxy: &ProxyLocation,
        endpoints: Vec<Endpoint>,
        previous: Option<&Self>,
        now: Instant,
    ) -> Self {
        let locality = policy.load_balancer.locality.as_ref();
        let priorities = priorities(
            proxy,
            &endpoints,
            locality,
            policy.outlier_detection.is_some(),
        );
        let weights = distribute_weights(proxy, &endpoints, locality)
            .unwrap_or_else(|| endpoints.iter().map(Endpoint::effective_weight).collect());
        let outlier = policy.outlier_detection.map(|o| {
            match previous.and_then(|p| p.outlier.as_ref().map(|d| (p, d))) {
                Some((p, old)) => {
                    let index: HashMap<_, _> = p
                        .endpoints
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (&e.address, i))
                        .collect();
                    let map: Vec<_> = endpoints
                        .iter()
                        .map(|e| index.get(&e.address).copied())
                        .collect();
                    old.successor(o, &map)
                }
                None => OutlierDetector::new(o, endpoints.len(), now),
            }
        });
        let in_flight = endpoints.iter().map(|_| AtomicUsize::new(0)).collect();
        let authorities = (endpoints.iter())
            .map(|e| http::uri::Authority::try_from(e.address.to_string()).ok())
            .collect();
        let mut this = Self {
            endpoints,
            authorities,
            priorities,
            weights,
            policy: policy.load_balancer.policy.clone(),
            in_flight,
            outlier,
            rebuilding: Mutex::new(()),
            plan: ArcSwap::from_pointee(Plan {
                generation: 0,
                levels: Vec::new(),
            }),
        };
        let plan = this.build_plan();
        this.plan = ArcSwap::from_pointee(plan);
        this
    }

    fn build_plan(&self) -> Plan {
        let generation = self.outlier.as_ref().map_or(0, OutlierDetector::generation);
        let panic = self.outlier.as_ref().is_some_and(OutlierDetector::in_panic);
        let in_service =
            |i: usize| panic || !self.outlier.as_ref().is_some_and(|o| o.is_ejected(i));
        let mut priorities: Vec<u32> = self.priorities.clone();
        priorities.sort_unstable();
        priorities.dedup();
        let members = |p: u32| {
            (0..self.endpoints.len())
                .filter(move |&i| self.priorities[i] == p && self.weights[i] > 0)
        };
        let counts: Vec<(usize, usize)> = priorities
            .iter()
            .map(|&p| {
                (
                    members(p).filter(|&i| in_service(i)).count(),
                    members(p).count(),
                )
            })
            .collect();
        let mut cumulative = 0;
        let mut levels = Vec::new();
        for (&p, load) in priorities.iter().zip(priority_loads(&counts)) {
            if load == 0 {
                continue;
            }
            cumulative += load;
            let hosts: Vec<LbHost> = members(p)
                .filter(|&i| in_service(i))
                .map(|i| LbHost {
                    id: i,
                    weight: self.weights[i],
                    name: self.endpoints[i].address.to_string(),
                })
                .collect();
            levels.push((cumulative, Balancer::new(&self.policy, &hosts)));
        }
        Plan { generation, levels }
    }

    /// Picks an endpoint index for a request with consistent-hash key `hash` (when the policy
    /// uses one); `None` when no endpoint is in service.
    pub fn pick(&self, rng: &mut SmallRng, hash: Option<u64>, now: Instant) -> Option<usize> {
        if let Some(o) = &self.outlier {
            o.refresh(now);
        }
        let generation = self.outlier.as_ref().map_or(0, OutlierDetector::generation);
        let mut plan = self.plan.load();
        if plan.generation != generation {
            // One request rebuilds (a hash table over many hosts takes milliseconds); the
            // others keep using the previous plan meanwhile, as Envoy's asynchronous host
            // set updates do.
            if let Ok(_guard) = self.rebuilding.try_lock() {
                self.plan.store(Arc::new(self.build_plan()));
                plan = self.plan.load();
            }
        }
        let balancer = match plan.levels.as_slice() {
            [] => return None,
            [(_, only)] => only,
            levels => {
                // Hash requests choose their level by hash too, so they stay sticky.
                let ticket = match hash {
                    Some(h) => (h % 100) as u32,
                    None => rng.random_range(0..100),
                };
                let i = levels.partition_point(|(cumulative, _)| *cumulative <= ticket);
                &levels.get(i).unwrap_or(&levels[levels.len() - 1]).1
            }
        };
        balancer.pick(&mut PickContext {
            rng,
            hash,
            in_flight: &self.in_flight,
        })
    }

    /// The endpoints, in the order indices refer to.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Endpoint `i`'s address as a URI authority (`None` when it is not a valid one).
    pub(crate) fn authority(&self, i: usize) -> Option<&http::uri::Authority> {
        self.authorities.get(i).and_then(Option::as_ref)
    }

    /// Counts a request to endpoint `i` as started (for least request); pair with
    /// [`finish`](Self::finish).
    pub fn start(&self, i: usize) {
        if let Some(n) = self.in_flight.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request to endpoint `i` as finished.
    pub fn finish(&self, i: usize) {
        if let Some(n) = self.in_flight.get(i) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Feeds a request's outcome to outlier detection; true when it ejected the endpoint.
    pub fn record(&self, i: usize, outcome: Outcome, now: Instant) -> bool {
        self.outlier
            .as_ref()
            .is_some_and(|o| o.record(i, outcome, now))
    }

    /// The outlier detector, when the policy has one.
    pub fn outlier(&self) -> Option<&OutlierDetector> {
        self.outlier.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::destination_rule::{LoadBalancer, OutlierDetection};
    use crate::endpoint::Locality;
    use crate::rng::RngSource;

    fn policy(lb: LbPolicy) -> ClusterPolicy {
        ClusterPolicy {
            load_balancer: LoadBalancer {
                policy: lb,
                locality: None,
            },
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx: 1,
                max_ejection_percent: 100,
                base_ejection_time: Duration::from_secs(10),
                ..OutlierDetection::default()
            }),
            ..ClusterPolicy::default()
        }
    }

    #[test]
    fn local_endpoints_fail_over_to_the_next_locality_when_ejected() {
        let t0 = Instant::now();
        let proxy = ProxyLocation {
            locality: Locality::parse("r1/z1/s1"),
            ..Default::default()
        };
        let eps = vec![
            Endpoint::new(([10, 0, 0, 1], 80).into()).locality("r1/z1/s1"),
            Endpoint::new(([10, 0, 0, 2], 80).into()).locality("r1/z2/s1"),
            Endpoint::new(([10, 0, 0, 3], 80).into()).locality("r2/z1/s1"),
        ];
        let c = ClusterEndpoints::new(&policy(LbPolicy::RoundRobin), &proxy, eps, t0);
        let mut rng = RngSource::seeded(0).stream();
        let mut pick = |t| c.pick(&mut rng, None, t);
        assert!((0..10).all(|_| pick(t0) == Some(0)));
        assert!(c.record(0, Outcome::Status(StatusCode::BAD_GATEWAY), t0));
        let mut rng = RngSource::seeded(0).stream();
        assert!((0..10).all(|_| c.pick(&mut rng, None, t0) == Some(1)));
        c.record(1, Outcome::Failure, t0);
        assert!((0..10).all(|_| c.pick(&mut rng, None, t0) == Some(2)));
        c.record(2, Outcome::Failure, t0);
        assert_eq!(c.pick(&mut rng, None, t0), None, "everything ejected");
        // Back after the ejection time: the local endpoint is preferred again.
        assert_eq!(
            c.pick(&mut rng, None, t0 + Duration::from_secs(10)),
            Some(0)
        );
    }

    #[test]
    fn a_partly_ejected_locality_spills_over_gradually() {
        let t0 = Instant::now();
        let proxy = ProxyLocation {
            locality: Locality::parse("r1/z1/s1"),
            ..Default::default()
        };
        let eps = vec![
            Endpoint::new(([10, 0, 0, 1], 80).into()).locality("r1/z1/s1"),
            Endpoint::new(([10, 0, 0, 2], 80).into()).locality("r1/z1/s1"),
            Endpoint::new(([10, 0, 0, 3], 80).into()).locality("r2/z1/s1"),
        ];
        let c = ClusterEndpoints::new(&policy(LbPolicy::Random), &proxy, eps, t0);
        let mut rng = RngSource::seeded(3).stream();
        c.record(0, Outcome::Failure, t0);
        let n = 20_000;
        let remote = (0..n)
            .filter(|_| c.pick(&mut rng, None, t0) == Some(2))
            .count();
        // One of two local endpoints left: health min(100, 1.4 x 50%) = 70%, so 30% spills.
        let share = remote as f64 / n as f64;
        assert!((share - 0.30).abs() < 0.02, "remote share {share}");
        assert!((0..100).all(|_| c.pick(&mut rng, None, t0) != Some(0)));
    }

    #[test]
    fn without_outlier_detection_localities_are_not_ranked() {
        let proxy = ProxyLocation {
            locality: Locality::parse("r1/z1/s1"),
            ..Default::default()
        };
        let eps = vec![
            Endpoint::new(([10, 0, 0, 1], 80).into()).locality("r1/z1/s1"),
            Endpoint::new(([10, 0, 0, 2], 80).into()).locality("r2/z1/s1"),
        ];
        let p = ClusterPolicy {
            outlier_detection: None,
            ..policy(LbPolicy::RoundRobin)
        };
        let c = ClusterEndpoints::new(&p, &proxy, eps, Instant::now());
        let mut rng = RngSource::seeded(0).stream();
        let picks: Vec<_> = (0..4)
            .map(|_| c.pick(&mut rng, None, Instant::now()))
            .collect();
        assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
    }
}
