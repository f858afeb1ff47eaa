//! Locality-aware balancing, as Istio configures Envoy: endpoints are ranked into priorities
//! by proximity to the proxy (or by `failoverPriority` labels), or re-weighted by
//! `distribute`. Pure functions over endpoint lists.

use std::collections::BTreeMap;

use crate::destination_rule::LocalityLbSetting;
use crate::endpoint::{Endpoint, Locality};

/// Where this proxy runs: the reference point for locality ranking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyLocation {
    /// The proxy's locality (`--locality R/Z/S`); empty disables locality ranking.
    pub locality: Locality,
    /// The proxy's own labels, compared with endpoints' for `failoverPriority`.
    pub labels: BTreeMap<String, String>,
}

const REGION_LABEL: &str = "topology.kubernetes.io/region";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// The priority of each endpoint (0 is the most preferred). [`priority_loads`] then decides
/// how much traffic each priority gets from how many of its endpoints are in service.
///
/// Istio ranks only when locality balancing is on, which needs outlier detection (without
/// it nothing would ever be unhealthy and failover could not trigger) and `enabled != false`,
/// and `distribute` is not used. Then, with `failoverPriority`, an endpoint's priority is the
/// number of those labels left after the longest leading run that equals the proxy's; the
/// topology labels are read from localities. Otherwise: 0 same subzone, 1 same zone, 2 same
/// region, 3 a `failover` target region of the proxy's region, 4 anything else (3 when the
/// proxy's region names no failover).
pub fn priorities(
    proxy: &ProxyLocation,
    endpoints: &[Endpoint],
    setting: Option<&LocalityLbSetting>,
    outlier_detection: bool,
) -> Vec<u32> {
    let enabled = outlier_detection
        && setting.is_none_or(|s| s.enabled && s.distribute.is_empty())
        && !proxy.locality.region.is_empty();
    if !enabled {
        return vec![0; endpoints.len()];
    }
    let setting = setting.cloned().unwrap_or_default();
    if !setting.failover_priority.is_empty() {
        let keys = &setting.failover_priority;
        return endpoints
            .iter()
            .map(|e| {
                let matched = keys
                    .iter()
                    .take_while(|k| {
                        let mine = label(&proxy.labels, &proxy.locality, k);
                        mine.is_some() && mine == label(&e.labels, &e.locality, k)
                    })
                    .count();
                (keys.len() - matched) as u32
            })
            .collect();
    }
    let mine = &proxy.locality;
    let failover_to: Vec<&str> = setting
        .failover
        .iter()
        .filter(|(from, _)| *from == mine.region)
        .map(|(_, to)| to.as_str())
        .collect();
    endpoints
        .iter()
        .map(|e| {
            let l = &e.locality;
            if l.region != mine.region {
                if failover_to.is_empty() || failover_to.contains(&l.region.as_str()) {
                    3
                } else {
                    4
                }
            } else if l.zone != mine.zone {
                2
            } else if l.subzone != mine.subzone {
                1
            } else {
                0
            }
        })
        .collect()
}

/// Envoy's overprovisioning factor: a priority counts as fully healthy while at least
/// 1/1.4 (about 71%) of its endpoints are in service.
const OVERPROVISIONING_PERCENT: usize = 140;

/// The share of traffic (percent, summing to 100) each priority level gets, from how many
/// of its endpoints are in service: `(in service, total)` per level, most preferred first.
///
/// Envoy's algorithm: a level's health is `min(100, 1.4 x in_service / total)` percent; levels
/// take traffic in order up to their health, so a partly ejected local level spills over
/// gradually to the next one instead of all at once. When the health of all levels adds up to
/// less than 100, shares are scaled up proportionally. All zeros when nothing is in service.
///
/// ```
/// use mesh_mirror::priority_loads;
/// assert_eq!(priority_loads(&[(2, 2), (1, 1)]), [100, 0]);
/// assert_eq!(priority_loads(&[(1, 2), (1, 1)]), [70, 30]);
/// assert_eq!(priority_loads(&[(0, 2), (1, 1)]), [0, 100]);
/// assert_eq!(priority_loads(&[(1, 4), (1, 4)]), [50, 50]);
/// ```
pub fn priority_loads(levels: &[(usize, usize)]) -> Vec<u32> {
    let health: Vec<usize> = levels
        .iter()
        .map(|&(up, total)| match total {
            0 => 0,
            _ => (OVERPROVISIONING_PERCENT * up / total).min(100),
        })
        .collect();
    let normalized = health.iter().sum::<usize>().min(100);
    if normalized == 0 {
        return vec![0; levels.len()];
    }
    let mut remaining = 100usize;
    let mut loads: Vec<u32> = health
        .iter()
        .map(|h| {
            let load = (h * 100 / normalized).min(remaining);
            remaining -= load;
            load as u32
        })
        .collect();
    // Rounding leftovers go to the first level that can take traffic.
    if let Some(first) = health.iter().position(|h| *h > 0) {
        loads[first] += remaining as u32;
    }
    loads
}

fn label<'a>(labels: &'a BTreeMap<String, String>, l: &'a Locality, key: &str) -> Option<&'a str> {
    let from_locality = match key {
        REGION_LABEL => Some(&l.region),
        ZONE_LABEL => Some(&l.zone),
        SUBZONE_LABEL => Some(&l.subzone),
        _ => None,
    };
    match from_locality {
        Some(v) if !v.is_empty() => Some(v.as_str()),
        _ => labels.get(key).map(String::as_str),
    }
}

/// Effective endpoint weights under `distribute`: for the first rule whose `from` matches the
/// proxy, each `to` pattern gets its percentage of the traffic, split among the endpoints it
/// matches (first matching pattern wins) by their own weights. Endpoints matched by no
/// pattern get 0. `None` when no rule applies (weights stay as they are).
pub fn distribute_weights(
    proxy: &ProxyLocation,
    endpoints: &[Endpoint],
    setting: Option<&LocalityLbSetting>,
) -> Option<Vec<u32>> {
    let setting = setting.filter(|s| s.enabled)?;
    let rule = setting
        .distribute
        .iter()
        .find(|d| d.from.matches(&proxy.locality))?;
    let group_of = |e: &Endpoint| rule.to.iter().position(|(p, _)| p.matches(&e.locality));
    let mut group_weight = vec![0u64; rule.to.len()];
    for e in endpoints {
        if let Some(g) = group_of(e) {
            group_weight[g] += u64::from(e.effective_weight());
        }
    }
    // Percent x 10_000 keeps four digits of precision within u32.
    const SCALE: u64 = 10_000;
    Some(
        endpoints
            .iter()
            .map(|e| match group_of(e) {
                Some(g) if rule.to[g].1 > 0 => {
                    let share = u64::from(rule.to[g].1) * SCALE * u64::from(e.effective_weight());
                    (share / group_weight[g]).max(1) as u32
                }
                _ => 0,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination_rule::{DistributeRule, LocalityPattern};

    fn ep(locality: &str) -> Endpoint {
        Endpoint::new(([127, 0, 0, 1], 1).into()).locality(locality)
    }

    fn proxy(l: &str) -> ProxyLocation {
        ProxyLocation {
            locality: Locality::parse(l),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn proximity_orders_subzone_zone_region_other() {
        let eps = [
            ep("r1/z1/s1"),
            ep("r1/z1/s2"),
            ep("r1/z2/s1"),
            ep("r2/z1/s1"),
        ];
        assert_eq!(
            priorities(&proxy("r1/z1/s1"), &eps, None, true),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn no_ranking_without_outlier_detection_or_when_disabled() {
        let eps = [ep("r1/z1/s1"), ep("r2/z1/s1")];
        assert_eq!(priorities(&proxy("r1/z1/s1"), &eps, None, false), [0, 0]);
        let off = LocalityLbSetting {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(
            priorities(&proxy("r1/z1/s1"), &eps, Some(&off), true),
            [0, 0]
        );
    }

    #[test]
    fn failover_region_comes_before_other_regions() {
        let eps = [ep("r2/z/s"), ep("r3/z/s")];
        let s = LocalityLbSetting {
            enabled: true,
            failover: vec![("r1".into(), "r3".into())],
            ..Default::default()
        };
        assert_eq!(priorities(&proxy("r1/z1/s1"), &eps, Some(&s), true), [4, 3]);
    }

    #[test]
    fn failover_priority_ranks_by_leading_matching_labels() {
        let mut p = proxy("r1/z1/s1");
        p.labels.insert("net".into(), "a".into());
        let eps = [
            ep("r1/z9/s1").label("net", "a"),
            ep("r2/z1/s1").label("net", "a"),
            ep("r1/z1/s1").label("net", "b"),
        ];
        let s = LocalityLbSetting {
            enabled: true,
            failover_priority: vec!["net".into(), REGION_LABEL.into()],
            ..Default::default()
        };
        assert_eq!(priorities(&p, &eps, Some(&s), true), [0, 1, 2]);
    }

    #[test]
    fn distribute_splits_by_percentage_then_endpoint_weight() {
        let eps = [
            ep("r1/z1/a"),
            ep("r1/z1/b").weight(3),
            ep("r1/z2/a"),
            ep("r9/z/s"),
        ];
        let s = LocalityLbSetting {
            enabled: true,
            distribute: vec![DistributeRule {
                from: LocalityPattern::parse("r1/z1/*"),
                to: vec![
                    (LocalityPattern::parse("r1/z1/*"), 80),
                    (LocalityPattern::parse("r1/z2/*"), 20),
                ],
            }],
            ..Default::default()
        };
        let w = distribute_weights(&proxy("r1/z1/a"), &eps, Some(&s)).unwrap();
        assert_eq!(w, [200_000, 600_000, 200_000, 0]);
        assert!(distribute_weights(&proxy("r2/z/s"), &eps, Some(&s)).is_none());
        assert!(LocalityPattern::parse("r1/*").matches(&Locality::parse("r1/z1/s")));
    }
}
