//! DestinationRule: what happens to traffic for a host after routing chose it: subsets by
//! labels, load balancing, connection limits, outlier detection and TLS settings.

mod compile;
mod compile_pool;
pub mod model;
mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use mesh_routing::{
    Collector, ConfigError, ConfigErrors, Document, LoadError, ObjectMeta, Problem, ResourceRef,
    parse_documents, qualify_host, validate_host,
};

pub use policy::{
    ClientTls, ClusterPolicy, ConnectionPool, ConsistentHash, DistributeRule, H2Upgrade, HashKey,
    HashTable, LbPolicy, LoadBalancer, LocalityLbSetting, LocalityPattern, OutlierDetection,
    TcpKeepalive, TlsMode, TrafficPolicy,
};

use model::DestinationRuleSpec;

/// The networking API group and its accepted versions (shared with VirtualService).
use mesh_routing::{DEFAULT_DOMAIN_SUFFIX, NETWORKING_GROUP, NETWORKING_VERSIONS};

/// A DestinationRule that passed Istio's validation, host qualified.
///
/// ```
/// let err = mesh_mirror::DestinationRule::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - name: v1
///     labels: {version: v1}
///   - name: v2
///     trafficPolicy:
///       loadBalancer:
///         consistentHash: {httpHeaderName: x-user, useSourceIp: true}
/// "#).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "inline (document 1): DestinationRule default/reviews: subsets[1].trafficPolicy.loadBalancer.consistentHash: \
///      only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set",
/// );
/// ```
#[derive(Debug, Clone)]
pub struct DestinationRule {
    resource: ResourceRef,
    host: String,
    policy: TrafficPolicy,
    subsets: Vec<Subset>,
}

/// A named subset: the endpoints whose labels match, with an optional policy override.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels` every selected endpoint must carry.
    pub labels: BTreeMap<String, String>,
    /// The subset's `trafficPolicy` (parts it sets override the rule's).
    pub policy: TrafficPolicy,
}

impl DestinationRule {
    /// Validates and compiles a DestinationRule `spec`; every problem is reported.
    pub fn compile(
        metadata: &ObjectMeta,
        spec: &DestinationRuleSpec,
    ) -> Result<Self, ConfigErrors> {
        let resource = ResourceRef::new(
            "DestinationRule",
            metadata.namespace.clone(),
            metadata.name.clone(),
        );
        let mut c = Collector::new(&resource);
        if spec.host.is_empty() {
            c.push_at("host", Problem::Missing);
        } else if let Err(reason) = validate_host(&spec.host) {
            c.push_at(
                "host",
                Problem::Host {
                    host: spec.host.clone(),
                    reason,
                },
            );
        }
        if spec.workload_selector.is_some() {
            c.push_at("workloadSelector", Problem::Unsupported("workloadSelector"));
        }
        let policy = spec
            .traffic_policy
            .as_ref()
            .map_or_else(TrafficPolicy::default, |p| {
                c.at(format_args!("trafficPolicy"), |c| {
                    compile::traffic_policy(p, c)
                })
            });
        let mut subsets: Vec<Subset> = Vec::with_capacity(spec.subsets.len());
        for (i, s) in spec.subsets.iter().enumerate() {
            c.at(format_args!("subsets[{i}]"), |c| {
                if s.name.is_empty() {
                    c.push_at("name", Problem::Missing);
                } else if subsets.iter().any(|other| other.name == s.name) {
                    c.push_at(
                        "name",
                        Problem::Invalid(format!("duplicate subset name {:?}", s.name)),
                    );
                }
                let policy = s
                    .traffic_policy
                    .as_ref()
                    .map_or_else(TrafficPolicy::default, |p| {
                        c.at(format_args!("trafficPolicy"), |c| {
                            compile::traffic_policy(p, c)
                        })
                    });
                subsets.push(Subset {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    policy,
                });
            });
        }
        let host = qualify_host(&spec.host, &metadata.namespace, DEFAULT_DOMAIN_SUFFIX);
        c.finish(Self {
            resource: resource.clone(),
            host,
            policy,
            subsets,
        })
    }

    /// Validates and compiles a `DestinationRule` document (checking kind and apiVersion).
    pub fn from_document(doc: &Document) -> Result<Self, ConfigErrors> {
        if doc.kind != "DestinationRule" {
            return Err(ConfigError {
                resource: doc.resource_ref(),
                path: String::new(),
                problem: Problem::Invalid("expected kind DestinationRule".into()),
            }
            .into());
        }
        doc.check_api_version(NETWORKING_GROUP, NETWORKING_VERSIONS)?;
        let spec: DestinationRuleSpec = doc.decode_spec()?;
        Self::compile(&doc.metadata, &spec)
    }

    /// Parses a single DestinationRule from YAML (namespace `default` when unset).
    pub fn from_yaml(yaml: &str) -> Result<Self, LoadError> {
        let mut all = load_destination_rules(yaml, "inline", "default")?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(LoadError::Envelope {
                origin: "inline".into(),
                message: format!("expected exactly one DestinationRule, found {n}"),
            }),
        }
    }

    /// `DestinationRule namespace/name`.
    pub fn resource(&self) -> &ResourceRef {
        &self.resource
    }

    /// The host, qualified (`reviews` -> `reviews.default.svc.cluster.local`); may be a
    /// wildcard (`*.example.com`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The top-level `trafficPolicy`.
    pub fn traffic_policy(&self) -> &TrafficPolicy {
        &self.policy
    }

    /// The subsets, in order.
    pub fn subsets(&self) -> &[Subset] {
        &self.subsets
    }

    /// The subset called `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The effective policy for a cluster: the top level (or its `portLevelSettings` entry
    /// for `port`, which replaces all four parts), then the parts the subset's policy sets
    /// (or the subset's `portLevelSettings` entry for `port`, again replacing all four). `None` when `subset` names no subset of this rule.
    pub fn cluster_policy(&self, subset: Option<&str>, port: Option<u16>) -> Option<ClusterPolicy> {
        let mut policy = match self.policy.port_entry(port) {
            Some(entry) => entry.clone(),
            None => TrafficPolicy {
                port_level: Vec::new(),
                ..self.policy.clone()
            },
        };
        if let Some(name) = subset {
            let s = self.subset(name)?;
            policy = match s.policy.port_entry(port) {
                Some(entry) => entry.clone(),
                None => policy.overridden_by(&s.policy),
            };
        }
        Some(ClusterPolicy {
            load_balancer: policy.load_balancer.unwrap_or_default(),
            connection_pool: policy.connection_pool.unwrap_or_default(),
            outlier_detection: policy.outlier_detection,
            tls: policy.tls,
        })
    }
}

/// Loads every `DestinationRule` in a multi-document YAML stream; other kinds are skipped.
/// Every invalid rule is reported (the first failing document's problems, all of them).
pub fn load_destination_rules(
    yaml: &str,
    source: &str,
    default_namespace: &str,
) -> Result<Vec<DestinationRule>, LoadError> {
    let docs = parse_documents(yaml, source, default_namespace)?;
    let mut out = Vec::new();
    for doc in docs.iter().filter(|d| d.kind == "DestinationRule") {
        match DestinationRule::from_document(doc) {
            Ok(dr) => out.push(dr),
            Err(errors) => {
                return Err(LoadError::Invalid {
                    origin: doc.origin.to_string(),
                    errors,
                });
            }
        }
    }
    Ok(out)
}

/// The DestinationRules in force, looked up by host: exact first, then the longest wildcard
/// suffix (`*.example.com`), then `*`, as Istio resolves them.
///
/// Several rules for one host are merged as Istio merges them: the first rule (in the order
/// given) is the base; later rules add the subsets whose names it does not have yet, and give
/// the top-level `trafficPolicy` only when no earlier rule had one.
#[derive(Debug, Clone, Default)]
pub struct DestinationRules {
    rules: Vec<Arc<DestinationRule>>,
}

impl DestinationRules {
    /// A set of rules, merged per host.
    pub fn new(rules: impl IntoIterator<Item = DestinationRule>) -> Self {
        let mut merged: Vec<DestinationRule> = Vec::new();
        for rule in rules {
            match merged.iter_mut().find(|m| m.host == rule.host) {
                None => merged.push(rule),
                Some(base) => {
                    if base.policy == TrafficPolicy::default() {
                        base.policy = rule.policy;
                    }
                    for subset in rule.subsets {
                        if base.subset(&subset.name).is_none() {
                            base.subsets.push(subset);
                        }
                    }
                }
            }
        }
        Self {
            rules: merged.into_iter().map(Arc::new).collect(),
        }
    }

    /// The rule that applies to `host` (fully qualified, lowercase).
    pub fn for_host(&self, host: &str) -> Option<&Arc<DestinationRule>> {
        if let Some(exact) = self.rules.iter().find(|r| r.host == host) {
            return Some(exact);
        }
        self.rules
            .iter()
            .filter(|r| match r.host.strip_prefix('*') {
                Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
                None => false,
            })
            .max_by_key(|r| r.host.len())
    }

    /// Every rule, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<DestinationRule>> {
        self.rules.iter()
    }
}

/// The DestinationRules in force, swapped atomically on reload: a request sees one whole set,
/// and clusters built from an older set are rebuilt on their next request. Clones share.
#[derive(Debug, Clone, Default)]
pub struct SharedDestinationRules(Arc<ArcSwap<DestinationRules>>);

impl SharedDestinationRules {
    /// Starts with `rules`.
    pub fn new(rules: DestinationRules) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(rules)))
    }

    /// Replaces the rules.
    pub fn store(&self, rules: DestinationRules) {
        self.0.store(Arc::new(rules));
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<DestinationRules> {
        self.0.load_full()
    }
}

#[cfg(test)]
mod tests;
