//! Model to runtime: the one place where Istio's DestinationRule rules are enforced. Every
//! problem is recorded with its field path; nothing stops at the first.

use std::time::Duration;

use http::HeaderName;
use mesh_routing::{Collector, Problem, parse_duration};

use super::compile_pool::{connection_pool, outlier, tls};
use super::model as m;
use super::policy::{
    ConsistentHash, DistributeRule, HashKey, HashTable, LbPolicy, LoadBalancer, LocalityLbSetting,
    LocalityPattern, TrafficPolicy,
};

/// Istio's default `minimumRingSize`.
const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's largest ring.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's default maglev table size (prime).
const DEFAULT_MAGLEV_SIZE: u64 = 65537;

/// Compiles a `trafficPolicy`; `port_level` is false inside `portLevelSettings` entries.
pub(crate) fn traffic_policy(p: &m::TrafficPolicy, c: &mut Collector<'_>) -> TrafficPolicy {
    for (field, set) in [
        ("tunnel", p.tunnel.is_some()),
        ("proxyProtocol", p.proxy_protocol.is_some()),
        ("retryBudget", p.retry_budget.is_some()),
    ] {
        if set {
            c.push_at(field, Problem::Unsupported(field));
        }
    }
    let mut out = TrafficPolicy {
        load_balancer: p.load_balancer.as_ref().and_then(|lb| load_balancer(lb, c)),
        connection_pool: p.connection_pool.as_ref().map(|cp| connection_pool(cp, c)),
        outlier_detection: p.outlier_detection.as_ref().map(|o| outlier(o, c)),
        tls: p.tls.as_ref().and_then(|t| tls(t, c)),
        port_level: Vec::new(),
    };
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        c.at(format_args!("portLevelSettings[{i}]"), |c| {
            let number = match pl.port.as_ref().and_then(|p| p.number) {
                None => {
                    c.push_at("port.number", Problem::Missing);
                    return;
                }
                Some(n) if !(1..=65535).contains(&n) => {
                    c.push_at("port.number", out_of_range(n, 1, 65535));
                    return;
                }
                Some(n) => n as u16,
            };
            if out.port_level.iter().any(|(p, _)| *p == number) {
                c.push_at(
                    "port.number",
                    Problem::Invalid(format!("port {number} is configured more than once")),
                );
            }
            let policy = TrafficPolicy {
                load_balancer: pl
                    .load_balancer
                    .as_ref()
                    .and_then(|lb| load_balancer(lb, c)),
                connection_pool: pl.connection_pool.as_ref().map(|cp| connection_pool(cp, c)),
                outlier_detection: pl.outlier_detection.as_ref().map(|o| outlier(o, c)),
                tls: pl.tls.as_ref().and_then(|t| tls(t, c)),
                port_level: Vec::new(),
            };
            out.port_level.push((number, policy));
        });
    }
    out
}

fn load_balancer(lb: &m::LoadBalancerSettings, c: &mut Collector<'_>) -> Option<LoadBalancer> {
    c.at(format_args!("loadBalancer"), |c| {
        let before = c.error_count();
        if lb.warmup_duration_secs.is_some() || lb.warmup.is_some() {
            c.push_at("warmup", Problem::Unsupported("slow-start warmup"));
        }
        let policy = match (&lb.simple, &lb.consistent_hash) {
            (Some(_), Some(_)) => {
                c.push(Problem::Conflict("simple", "consistentHash"));
                LbPolicy::default()
            }
            (Some(s), None) => match s {
                m::SimpleLb::Unspecified | m::SimpleLb::LeastRequest | m::SimpleLb::LeastConn => {
                    LbPolicy::LeastRequest
                }
                m::SimpleLb::RoundRobin => LbPolicy::RoundRobin,
                m::SimpleLb::Random => LbPolicy::Random,
                m::SimpleLb::Passthrough => LbPolicy::Passthrough,
            },
            (None, Some(h)) => c.at(format_args!("consistentHash"), |c| {
                consistent_hash(h, c).map_or(LbPolicy::default(), LbPolicy::ConsistentHash)
            }),
            (None, None) => LbPolicy::default(),
        };
        let locality = lb
            .locality_lb_setting
            .as_ref()
            .map(|l| c.at(format_args!("localityLbSetting"), |c| locality(l, c)));
        (c.error_count() == before).then_some(LoadBalancer { policy, locality })
    })
}

fn consistent_hash(h: &m::ConsistentHashLb, c: &mut Collector<'_>) -> Option<ConsistentHash> {
    let before = c.error_count();
    let mut keys = Vec::new();
    if let Some(name) = &h.http_header_name {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => keys.push(HashKey::Header(n)),
            Err(_) => c.push_at("httpHeaderName", Problem::Header(name.clone())),
        }
    }
    if let Some(cookie) = &h.http_cookie {
        c.at(format_args!("httpCookie"), |c| {
            if cookie.name.is_empty() {
                c.push_at("name", Problem::Missing);
            }
            let ttl = duration(c, "ttl", cookie.ttl.as_deref(), Duration::ZERO);
            keys.push(HashKey::Cookie {
                name: cookie.name.clone(),
                path: cookie.path.clone(),
                ttl,
            });
        });
    }
    if h.use_source_ip == Some(true) {
        keys.push(HashKey::SourceIp);
    }
    if let Some(q) = &h.http_query_parameter_name {
        if q.is_empty() {
            c.push_at("httpQueryParameterName", Problem::Missing);
        }
        keys.push(HashKey::QueryParameter(q.clone()));
    }
    if keys.len() > 1 {
        c.push(Problem::Invalid(
            "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set"
                .into(),
        ));
    }
    let key = keys.into_iter().next();
    if key.is_none() && c.error_count() == before {
        c.push(Problem::Invalid(
            "one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required"
                .into(),
        ));
    }
    let table = match (&h.ring_hash, &h.maglev) {
        (Some(_), Some(_)) => {
            c.push(Problem::Conflict("ringHash", "maglev"));
            None
        }
        (_, Some(mg)) => {
            if h.minimum_ring_size.is_some() {
                c.push(Problem::Conflict("minimumRingSize", "maglev"));
            }
            let size = mg.table_size.map_or(Some(DEFAULT_MAGLEV_SIZE), |n| {
                let ok = u64::try_from(n)
                    .ok()
                    .filter(|n| is_prime(*n) && *n <= 5_000_011);
                if ok.is_none() {
                    c.push_at(
                        "maglev.tableSize",
                        Problem::Invalid(format!("{n} is not a prime number up to 5000011")),
                    );
                }
                ok
            });
            size.map(|table_size| HashTable::Maglev { table_size })
        }
        (ring, None) => {
            if ring.is_some() && h.minimum_ring_size.is_some() {
                c.push(Problem::Conflict("minimumRingSize", "ringHash"));
            }
            let (field, n) = match ring {
                Some(r) => ("ringHash.minimumRingSize", r.minimum_ring_size),
                None => ("minimumRingSize", h.minimum_ring_size),
            };
            let size = match n {
                None | Some(0) => Some(DEFAULT_RING_SIZE),
                Some(n) => {
                    let ok = u64::try_from(n).ok().filter(|n| *n <= MAX_RING_SIZE);
                    if ok.is_none() {
                        c.push_at(field, out_of_range(n, 0, MAX_RING_SIZE as i64));
                    }
                    ok
                }
            };
            size.map(|minimum_ring_size| HashTable::Ring { minimum_ring_size })
        }
    };
    Some(ConsistentHash {
        key: key?,
        table: table?,
    })
}

fn locality(l: &m::LocalityLbSetting, c: &mut Collector<'_>) -> LocalityLbSetting {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        c.push(Problem::Conflict("distribute", "failover"));
    }
    let mut distribute = Vec::new();
    for (i, d) in l.distribute.iter().enumerate() {
        c.at(format_args!("distribute[{i}]"), |c| {
            if d.from.is_empty() {
                c.push_at("from", Problem::Missing);
            }
            let mut sum = 0i64;
            let mut to = Vec::new();
            for (pattern, weight) in &d.to {
                if !(0..=100).contains(weight) {
                    c.push_at(&format!("to[{pattern}]"), out_of_range(*weight, 0, 100));
                } else {
                    sum += weight;
                    to.push((LocalityPattern::parse(pattern), *weight as u32));
                }
            }
            if sum != 100 && !d.to.is_empty() {
                c.push_at(
                    "to",
                    Problem::Invalid(format!("weights must sum to 100, got {sum}")),
                );
            }
            distribute.push(DistributeRule {
                from: LocalityPattern::parse(&d.from),
                to,
            });
        });
    }
    let mut failover = Vec::new();
    for (i, f) in l.failover.iter().enumerate() {
        c.at(format_args!("failover[{i}]"), |c| {
            if f.from.is_empty() || f.to.is_empty() {
                c.push(Problem::Invalid("from and to are required".into()));
            } else if f.from == f.to {
                c.push(Problem::Invalid("from and to must differ".into()));
            } else if f.from.contains('/') || f.to.contains('/') {
                c.push(Problem::Invalid(
                    "failover is between regions, not zones".into(),
                ));
            }
            failover.push((f.from.clone(), f.to.clone()));
        });
    }
    for (i, label) in l.failover_priority.iter().enumerate() {
        if label.is_empty() {
            c.push_at(&format!("failoverPriority[{i}]"), Problem::Missing);
        }
    }
    LocalityLbSetting {
        enabled: l.enabled.unwrap_or(true),
        distribute,
        failover,
        failover_priority: l.failover_priority.clone(),
    }
}

pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) fn duration(
    c: &mut Collector<'_>,
    field: &str,
    value: Option<&str>,
    min: Duration,
) -> Option<Duration> {
    let value = value?;
    match parse_duration(value) {
        Ok(d) if d >= min => Some(d),
        Ok(_) => {
            c.push_at(
                field,
                Problem::Duration {
                    value: value.to_string(),
                    reason: if min == MS {
                        "must be at least 1ms"
                    } else {
                        "must be at least 1s"
                    },
                },
            );
            None
        }
        Err(reason) => {
            c.push_at(
                field,
                Problem::Duration {
                    value: value.to_string(),
                    reason,
                },
            );
            None
        }
    }
}

pub(super) fn int32(c: &mut Collector<'_>, field: &str, value: Option<i64>) -> Option<u32> {
    let v = value?;
    if (0..=i64::from(i32::MAX)).contains(&v) {
        Some(v as u32)
    } else {
        c.push_at(field, out_of_range(v, 0, i64::from(i32::MAX)));
        None
    }
}

pub(super) fn out_of_range(value: i64, min: i64, max: i64) -> Problem {
    Problem::OutOfRange {
        value: value as f64,
        min: min as f64,
        max: max as f64,
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
