//! Endpoint pick cost per load-balancing policy at 10 and 1,000 endpoints.
//!
//! `cargo bench -p mesh-benches --bench lb -- --measurement-time 2 --warm-up-time 1`
//!
//! - `lb_pick/<policy>/<n>`: one `Balancer::pick` over `n` hosts (the algorithm alone).
//!   `*_weighted` use weights 1..=4, which switches round robin to its EDF scheduler and
//!   random/least request to a cumulative-weight search. Hash policies get a different
//!   pre-hashed key per pick.
//! - `cluster_pick/<policy>/<n>`: `ClusterEndpoints::pick` with outlier detection on (the
//!   ejection check and plan load the upstream pays per request), no ejections.
//! - `lb_build/<table>/<n>`: building a ring or maglev table, paid when the endpoint set or
//!   the set of ejected endpoints changes.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_mirror::lb::{Balancer, LbHost, PickContext, hash_key};
use mesh_mirror::{
    ClusterEndpoints, ClusterPolicy, ConsistentHash, Endpoint, HashKey, HashTable, LbPolicy,
    LoadBalancer, OutlierDetection, ProxyLocation, RngSource,
};

const SIZES: [usize; 2] = [10, 1_000];

fn policies() -> Vec<(&'static str, LbPolicy, bool)> {
    let hash = |table| {
        LbPolicy::ConsistentHash(ConsistentHash {
            key: HashKey::Header(http::HeaderName::from_static("x-user")),
            table,
        })
    };
    vec![
        ("round_robin", LbPolicy::RoundRobin, false),
        ("round_robin_weighted", LbPolicy::RoundRobin, true),
        ("random", LbPolicy::Random, false),
        ("random_weighted", LbPolicy::Random, true),
        ("least_request", LbPolicy::LeastRequest, false),
        ("least_request_weighted", LbPolicy::LeastRequest, true),
        (
            "ring_hash",
            hash(HashTable::Ring {
                minimum_ring_size: 1024,
            }),
            false,
        ),
        (
            "maglev",
            hash(HashTable::Maglev { table_size: 65537 }),
            false,
        ),
    ]
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 8080))
}

fn hosts(n: usize, weighted: bool) -> Vec<LbHost> {
    (0..n)
        .map(|i| LbHost {
            id: i,
            weight: if weighted { (i % 4) as u32 + 1 } else { 1 },
            name: addr(i).to_string(),
        })
        .collect()
}

fn keys() -> Vec<u64> {
    (0..1024)
        .map(|k| hash_key(format!("user-{k}").as_bytes()))
        .collect()
}

fn pick(c: &mut Criterion) {
    let keys = keys();
    for (name, policy, weighted) in policies() {
        let mut group = c.benchmark_group(format!("lb_pick/{name}"));
        for n in SIZES {
            let balancer = Balancer::new(&policy, &hosts(n, weighted));
            let in_flight: Vec<AtomicUsize> = (0..n).map(|i| AtomicUsize::new(i % 3)).collect();
            let mut rng = RngSource::seeded(1).stream();
            let mut k = 0usize;
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    let mut cx = PickContext {
                        rng: &mut rng,
                        hash: Some(keys[k]),
                        in_flight: &in_flight,
                    };
                    black_box(balancer.pick(&mut cx))
                })
            });
        }
        group.finish();
    }
}

fn cluster_pick(c: &mut Criterion) {
    let keys = keys();
    for (name, policy, _) in policies().into_iter().filter(|(_, _, weighted)| !weighted) {
        let mut group = c.benchmark_group(format!("cluster_pick/{name}"));
        for n in SIZES {
            let cluster_policy = ClusterPolicy {
                load_balancer: LoadBalancer {
                    policy: policy.clone(),
                    locality: None,
                },
                outlier_detection: Some(OutlierDetection::default()),
                ..ClusterPolicy::default()
            };
            let endpoints = (0..n).map(|i| Endpoint::new(addr(i))).collect();
            let now = Instant::now();
            let cluster =
                ClusterEndpoints::new(&cluster_policy, &ProxyLocation::default(), endpoints, now);
            let mut rng = RngSource::seeded(1).stream();
            let mut k = 0usize;
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    black_box(cluster.pick(&mut rng, Some(keys[k]), now))
                })
            });
        }
        group.finish();
    }
}

fn build(c: &mut Criterion) {
    let tables = [
        (
            "ring_hash",
            HashTable::Ring {
                minimum_ring_size: 1024,
            },
        ),
        ("maglev", HashTable::Maglev { table_size: 65537 }),
    ];
    for (name, table) in tables {
        let policy = LbPolicy::ConsistentHash(ConsistentHash {
            key: HashKey::SourceIp,
            table,
        });
        let mut group = c.benchmark_group(format!("lb_build/{name}"));
        group.sample_size(10);
        for n in SIZES {
            let hosts = hosts(n, false);
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| black_box(Balancer::new(&policy, &hosts)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = pick, cluster_pick, build
}
criterion_main!(benches);
