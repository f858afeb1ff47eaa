//! Route tables: host -> virtual host -> ordered routes, compiled for one gateway (or `mesh`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Request;

use crate::action::Route;
use crate::conditions::Conditions;
use crate::host::HostMap;
use crate::index::ArmIndex;
use crate::request::{ListenerPort, RequestFacts};
use crate::rewrite::MatchedUri;
use crate::virtual_service::{DEFAULT_DOMAIN_SUFFIX, MESH_GATEWAY, VirtualService};

/// For whom a table is built: the gateway (`mesh` for a sidecar, else `namespace/name`), the
/// proxy's namespace (short-name aliases, `sourceNamespace`) and its workload labels
/// (`sourceLabels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// `mesh` or `namespace/name` of a Gateway.
    pub gateway: String,
    /// Namespace of the proxy.
    pub namespace: String,
    /// Labels of the proxy's workload.
    pub source_labels: BTreeMap<String, String>,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            gateway: MESH_GATEWAY.to_string(),
            namespace: "default".to_string(),
            source_labels: BTreeMap::new(),
        }
    }
}

impl TableOptions {
    /// Options for a gateway `namespace/name`.
    pub fn gateway(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            ..Self::default()
        }
    }
}

/// A compiled route table. Matching is indexed (exact paths in hash maps, prefixes in a trie,
/// exact header values in hash maps) and keeps Istio's first-match order.
///
/// ```
/// use mesh_routing::{RouteTable, TableOptions, VirtualService};
/// let vs = VirtualService::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match: [{headers: {end-user: {exact: jason}}}]
///     route: [{destination: {host: reviews, subset: v2}}]
///   - route: [{destination: {host: reviews, subset: v1}}]
/// "#).unwrap();
/// let table = RouteTable::build(&[vs], &TableOptions::default());
/// let req = http::Request::get("/").header("host", "reviews:9080").header("end-user", "jason").body(()).unwrap();
/// let route = table.route(&req).route().unwrap().clone();
/// assert_eq!(route.destinations().unwrap().iter().next().unwrap().destination.subset.as_deref(), Some("v2"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    hosts: HostMap<Arc<VirtualHost>>,
}

#[derive(Debug)]
pub(crate) struct VirtualHost {
    domain: String,
    conditions: Vec<Conditions>,
    targets: Vec<(Arc<Route>, MatchedUri)>,
    index: ArmIndex,
}

/// The outcome of looking a request up in a [`RouteTable`].
#[derive(Debug, Clone)]
pub enum RouteMatch {
    /// A route matched.
    Matched(MatchedRoute),
    /// The host has a virtual host but none of its routes matched: Istio answers 404.
    NoRoute,
    /// No virtual host for the request's host.
    NoVirtualHost,
}

impl RouteMatch {
    /// The matched route, if any.
    pub fn route(&self) -> Option<&Arc<Route>> {
        match self {
            Self::Matched(m) => Some(&m.route),
            _ => None,
        }
    }
}

/// A matched route plus how the uri condition matched (needed for prefix rewrites). The routing
/// layer inserts this into request extensions for inner layers.
#[derive(Debug, Clone)]
pub struct MatchedRoute {
    pub(crate) route: Arc<Route>,
    pub(crate) matched_uri: MatchedUri,
}

impl MatchedRoute {
    /// The route.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }
}

impl RouteTable {
    /// Builds the table for one proxy from VirtualServices in priority order (earlier wins
    /// when several define routes for the same host: their routes are concatenated in order).
    pub fn build(virtual_services: &[VirtualService], options: &TableOptions) -> Self {
        let mut order: Vec<String> = Vec::new();
        let mut arms_by_host: HashMap<String, Vec<(Conditions, Arc<Route>, MatchedUri)>> =
            HashMap::new();
        for vs in virtual_services {
            let vs_applies = vs.gateways.contains(&options.gateway);
            let mut arms = Vec::new();
            for rule in &vs.http {
                for arm in &rule.arms {
                    let gateways = arm.gateways.as_ref().unwrap_or(&vs.gateways);
                    let source_ok = arm
                        .source_labels
                        .iter()
                        .all(|(k, v)| options.source_labels.get(k) == Some(v))
                        && arm
                            .source_namespace
                            .as_ref()
                            .is_none_or(|ns| *ns == options.namespace);
                    if gateways.contains(&options.gateway) && source_ok {
                        arms.push((arm.conditions.clone(), rule.route.clone(), arm.matched_uri));
                    }
                }
            }
            if !vs_applies && arms.is_empty() {
                continue;
            }
            for host in &vs.hosts {
                let entry = arms_by_host.entry(host.clone()).or_insert_with(|| {
                    order.push(host.clone());
                    Vec::new()
                });
                entry.extend(arms.iter().cloned());
            }
        }
        let mut hosts = HostMap::default();
        for domain in &order {
            let arms = arms_by_host.remove(domain).unwrap_or_default();
            let (conditions, targets): (Vec<_>, Vec<_>) =
                arms.into_iter().map(|(c, r, m)| (c, (r, m))).unzip();
            let index = ArmIndex::build(conditions.iter());
            let vh = Arc::new(VirtualHost {
                domain: domain.clone(),
                conditions,
                targets,
                index,
            });
            hosts.entry(domain, || vh);
        }
        if options.gateway == MESH_GATEWAY {
            add_short_name_aliases(&mut hosts, &order, &options.namespace);
        }
        Self { hosts }
    }

    /// Looks a request up. The port for `port` matches comes from a [`ListenerPort`] extension,
    /// else the authority, else the scheme's default.
    pub fn route<B>(&self, req: &Request<B>) -> RouteMatch {
        let facts = RequestFacts::new(
            req.method(),
            req.uri(),
            req.headers(),
            req.extensions().get::<ListenerPort>().copied(),
        );
        self.route_facts(&facts)
    }

    pub(crate) fn route_facts(&self, req: &RequestFacts<'_>) -> RouteMatch {
        let host = req.host();
        let Some(vh) = self.hosts.get(&host) else {
            return RouteMatch::NoVirtualHost;
        };
        match vh.index.first_match(&vh.conditions, req) {
            Some(id) => {
                let (route, matched_uri) = &vh.targets[id as usize];
                RouteMatch::Matched(MatchedRoute {
                    route: route.clone(),
                    matched_uri: *matched_uri,
                })
            }
            None => RouteMatch::NoRoute,
        }
    }

    /// Domains of the virtual hosts (including short-name aliases), for config dumps.
    pub fn domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.hosts.iter().map(|(k, _)| k).collect();
        v.sort();
        v
    }

    /// Per domain, the routes in match order as `namespace/name http[i]`: for config dumps.
    pub fn describe(&self) -> BTreeMap<String, Vec<String>> {
        (self.hosts.iter())
            .map(|(domain, vh)| {
                let routes = vh
                    .targets
                    .iter()
                    .map(|(r, _)| {
                        format!("{}/{} http[{}]", r.source.namespace, r.source.name, r.index)
                    })
                    .collect();
                (format!("{domain} -> {}", vh.domain), routes)
            })
            .collect()
    }

    /// Number of virtual hosts (not counting aliases).
    pub fn len(&self) -> usize {
        let mut seen: Vec<*const VirtualHost> = self.hosts.values().map(Arc::as_ptr).collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }

    /// True when the table has no virtual hosts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sidecars also answer to short forms of in-cluster names, as Istio generates them:
/// `name.ns`, `name.ns.svc` everywhere, and bare `name` within the proxy's own namespace.
fn add_short_name_aliases(
    hosts: &mut HostMap<Arc<VirtualHost>>,
    domains: &[String],
    namespace: &str,
) {
    let suffix = format!(".svc.{DEFAULT_DOMAIN_SUFFIX}");
    for domain in domains {
        let Some(short) = domain.strip_suffix(&suffix) else {
            continue;
        };
        let Some((name, ns)) = short.split_once('.') else {
            continue;
        };
        if ns.contains('.') || name.starts_with('*') {
            continue;
        }
        let Some(vh) = hosts.get(domain).cloned() else {
            continue;
        };
        let mut aliases = vec![format!("{name}.{ns}"), format!("{name}.{ns}.svc")];
        if ns == namespace {
            aliases.push(name.to_string());
        }
        for alias in aliases {
            if !hosts.contains_exact(&alias) {
                hosts.entry(&alias, || vh.clone());
            }
        }
    }
}
