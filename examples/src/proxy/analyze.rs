//! Offline analysis of a valid configuration, like `istioctl analyze`: things that load fine
//! but probably do not do what the author meant. Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use mesh_gateway::KnownHosts;
use mesh_mirror::DestinationRules;
use mesh_routing::model::HttpMatchRequest;
use mesh_routing::{DEFAULT_DOMAIN_SUFFIX, Destination, MESH_GATEWAY, ResourceRef};

use super::config::LoadedConfig;

/// Something suspicious in a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `file (document N)` of the resource, when known.
    pub origin: Option<String>,
    /// The resource.
    pub resource: ResourceRef,
    /// The field path (empty for the whole resource).
    pub field: String,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        write!(f, "{}: ", self.resource)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every warning for `config`, in load order per check: ignored kinds, shadowed routes,
/// unknown gateways, unknown hosts, unknown subsets.
pub fn analyze(config: &LoadedConfig) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut warn = |resource: &ResourceRef, field: String, message: String| {
        out.push(Warning {
            origin: config.origin(resource).map(str::to_string),
            resource: resource.clone(),
            field,
            message,
        });
    };
    for (_, r) in &config.bundle.ignored {
        let message = format!(
            "kind {} is not supported by mesh-proxy and is ignored",
            r.kind
        );
        warn(r, String::new(), message);
    }
    shadowed_routes(config, &mut warn);
    unknown_gateways(config, &mut warn);
    unknown_destinations(config, &mut warn);
    out
}

type Warn<'a> = dyn FnMut(&ResourceRef, String, String) + 'a;

/// A route after a catch-all route for the same host and gateway never matches: within one
/// VirtualService and across VirtualServices (their routes are concatenated in load order).
fn shadowed_routes(config: &LoadedConfig, warn: &mut Warn<'_>) {
    let mut catch_all: HashMap<(String, String), String> = HashMap::new();
    for vs in &config.bundle.virtual_services {
        for (i, route) in vs.spec().http.iter().enumerate() {
            let mut by: BTreeSet<&str> = BTreeSet::new();
            for gateway in vs.gateways() {
                for host in vs.hosts() {
                    if let Some(first) = catch_all.get(&(gateway.clone(), host.clone())) {
                        by.insert(first);
                    }
                }
            }
            if !by.is_empty() {
                let by: Vec<&str> = by.into_iter().collect();
                let message = format!(
                    "route never matches: an earlier catch-all route ({}) takes every request \
                     for the same host",
                    by.join(", ")
                );
                warn(vs.resource(), format!("http[{i}]"), message);
            }
            if route.matches.is_empty() || route.matches.iter().any(is_catch_all) {
                let name = format!(
                    "{}/{} http[{i}]",
                    vs.resource().namespace,
                    vs.resource().name
                );
                for gateway in vs.gateways() {
                    for host in vs.hosts() {
                        (catch_all)
                            .entry((gateway.clone(), host.clone()))
                            .or_insert_with(|| name.clone());
                    }
                }
            }
        }
    }
}

/// A match block with no conditions (its `name` and `statPrefix` do not restrict it).
fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let conditions = HttpMatchRequest {
        name: None,
        stat_prefix: None,
        ..m.clone()
    };
    conditions == HttpMatchRequest::default()
}

/// `gateways:` (of the VirtualService and of its match blocks) that name no loaded Gateway.
fn unknown_gateways(config: &LoadedConfig, warn: &mut Warn<'_>) {
    let known: BTreeSet<String> = (config.bundle.gateways.iter())
        .map(|g| g.binding_name())
        .collect();
    let missing = |name: &str| name != MESH_GATEWAY && !known.contains(name);
    for vs in &config.bundle.virtual_services {
        let ns = &vs.resource().namespace;
        for (i, g) in vs.gateways().iter().enumerate() {
            if missing(g) {
                warn(vs.resource(), format!("gateways[{i}]"), not_loaded(g));
            }
        }
        for (i, route) in vs.spec().http.iter().enumerate() {
            for (j, m) in route.matches.iter().enumerate() {
                for (k, g) in m.gateways.iter().enumerate() {
                    let g = if g.contains('/') || g == MESH_GATEWAY {
                        g.clone()
                    } else {
                        format!("{ns}/{g}")
                    };
                    if missing(&g) {
                        let field = format!("http[{i}].match[{j}].gateways[{k}]");
                        warn(vs.resource(), field, not_loaded(&g));
                    }
                }
            }
        }
    }
}

fn not_loaded(gateway: &str) -> String {
    format!("Gateway {gateway} is not in the loaded configuration; this binding serves nothing")
}

/// Route and mirror destinations whose host nothing defines, and subsets no DestinationRule
/// defines.
fn unknown_destinations(config: &LoadedConfig, warn: &mut Warn<'_>) {
    let mut hosts: Vec<&str> = Vec::new();
    for se in &config.bundle.service_entries {
        hosts.extend(se.hosts().iter().map(String::as_str));
    }
    for vs in &config.bundle.virtual_services {
        hosts.extend(vs.hosts().iter().map(String::as_str));
    }
    let known = KnownHosts::from_hosts(hosts);
    let cluster_suffix = format!(".svc.{DEFAULT_DOMAIN_SUFFIX}");
    let rules = DestinationRules::new(config.bundle.destination_rules.iter().cloned());
    for vs in &config.bundle.virtual_services {
        let mut targets: Vec<(String, &Destination)> = Vec::new();
        for route in vs.http_routes() {
            let i = route.index();
            if let Some(ds) = route.destinations() {
                for (j, d) in ds.iter().enumerate() {
                    targets.push((format!("http[{i}].route[{j}].destination"), &d.destination));
                }
            }
            let singular = vs.spec().http.get(i).is_some_and(|s| s.mirror.is_some());
            for (j, m) in route.mirrors().iter().enumerate() {
                let field = if singular {
                    format!("http[{i}].mirror")
                } else {
                    format!("http[{i}].mirrors[{j}].destination")
                };
                targets.push((field, &m.destination));
            }
        }
        for (kind, routes) in [("tls", vs.tls_routes()), ("tcp", vs.tcp_routes())] {
            for (i, route) in routes.iter().enumerate() {
                for (j, d) in route.destinations.iter().enumerate() {
                    targets.push((
                        format!("{kind}[{i}].route[{j}].destination"),
                        &d.destination,
                    ));
                }
            }
        }
        for (field, d) in targets {
            if !known.contains(&d.host) && !d.host.ends_with(&cluster_suffix) {
                let message = format!(
                    "unknown host {:?}: no ServiceEntry or VirtualService defines it and it \
                         is not a *{cluster_suffix} name",
                    d.host
                );
                warn(vs.resource(), format!("{field}.host"), message);
            }
            let Some(subset) = &d.subset else { continue };
            let message = match rules.for_host(&d.host) {
                None => format!(
                    "unknown subset {subset:?}: no DestinationRule for host {:?}",
                    d.host
                ),
                Some(dr) if dr.subset(subset).is_none() => format!(
                    "unknown subset {subset:?}: {} defines no such subset",
                    dr.resource()
                ),
                Some(_) => continue,
            };
            warn(vs.resource(), format!("{field}.subset"), message);
        }
    }
}
