//! Evaluating AuthorizationPolicies in Istio's order: CUSTOM, then DENY, then ALLOW.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::ip_block::IpBlock;
use super::policy::{
    Action, AuthorizationPolicy, Condition, Field, IpKey, Operation, Rule, Source, StringKey,
};
use super::request::RequestAttrs;
use super::string_match::StringMatch;
use crate::id::TrustDomain;

/// Istio's default root namespace: policies there apply to the whole mesh.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The outcome of authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed. `audited` names AUDIT policies that matched.
    Allow {
        /// `namespace/name` of matching AUDIT policies.
        audited: Vec<String>,
    },
    /// The request is refused (403 `RBAC: access denied` over HTTP).
    Deny {
        /// Why: `namespace/name` of the deciding policy, or a note that no ALLOW matched.
        reason: String,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// The check behind CUSTOM policies (Istio's ext-authz). Returns `true` to let the request
/// continue to DENY and ALLOW evaluation, `false` to deny it.
pub trait CustomAuthorizer: Send + Sync {
    /// Checks a request that matched a CUSTOM policy naming `provider`.
    fn check(&self, provider: &str, request: &RequestAttrs) -> bool;
}

/// All AuthorizationPolicies of the mesh; pick the ones of a workload with
/// [`PolicySet::for_workload`].
#[derive(Debug, Clone)]
pub struct PolicySet {
    policies: Vec<Arc<AuthorizationPolicy>>,
    root_namespace: String,
}

impl PolicySet {
    /// A set with Istio's default root namespace (`istio-system`).
    pub fn new(policies: Vec<AuthorizationPolicy>) -> Self {
        Self {
            policies: policies.into_iter().map(Arc::new).collect(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
        }
    }

    /// Sets the mesh root namespace (MeshConfig `rootNamespace`).
    pub fn with_root_namespace(mut self, ns: impl Into<String>) -> Self {
        self.root_namespace = ns.into();
        self
    }

    /// The policies that apply to a workload: those of its namespace and of the root
    /// namespace whose selector (if any) matches its labels.
    pub fn for_workload(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Authorizer {
        let policies = self
            .policies
            .iter()
            .filter(|p| p.namespace == namespace || p.namespace == self.root_namespace)
            .filter(|p| p.selects(labels))
            .cloned()
            .collect();
        Authorizer {
            policies,
            custom: None,
            aliases: None,
        }
    }
}

/// The policies of one workload, ready to decide requests.
#[derive(Clone, Default)]
pub struct Authorizer {
    policies: Vec<Arc<AuthorizationPolicy>>,
    custom: Option<Arc<dyn CustomAuthorizer>>,
    aliases: Option<(TrustDomain, Vec<TrustDomain>)>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policies", &self.policies)
            .field("custom", &self.custom.is_some())
            .field("aliases", &self.aliases)
            .finish()
    }
}

impl Authorizer {
    /// An authorizer over exactly these policies (no namespace or selector filtering).
    pub fn new(policies: Vec<AuthorizationPolicy>) -> Self {
        Self {
            policies: policies.into_iter().map(Arc::new).collect(),
            custom: None,
            aliases: None,
        }
    }

    /// Sets the check for CUSTOM policies. Without one, a request matching a CUSTOM policy is
    /// denied (fail closed).
    pub fn with_custom(mut self, custom: Arc<dyn CustomAuthorizer>) -> Self {
        self.custom = Some(custom);
        self
    }

    /// Applies Istio `trustDomainAliases`: policy principals written with an alias (or the
    /// local domain) match peers of the local domain and of every alias.
    pub fn with_trust_domain_aliases(
        mut self,
        local: TrustDomain,
        aliases: Vec<TrustDomain>,
    ) -> Self {
        self.aliases = Some((local, aliases));
        self
    }

    /// Decides a request: a matching CUSTOM policy whose check fails denies; then any
    /// matching DENY denies; then, if any ALLOW policy applies, one must match.
    pub fn evaluate(&self, req: &RequestAttrs) -> Decision {
        let canonical;
        let req = match (&self.aliases, &req.principal) {
            (Some((local, aliases)), Some(p)) if aliases.contains(p.trust_domain()) => {
                canonical = RequestAttrs {
                    principal: Some(p.with_trust_domain(local.clone())),
                    ..req.clone()
                };
                &canonical
            }
            _ => req,
        };
        let m = |p: &AuthorizationPolicy| {
            p.rules.iter().any(|r| match (req.tcp, &p.action) {
                (false, _) => self.rule_matches(r, req),
                // Istio on TCP: a DENY rule's HTTP-only conditions are dropped (so it denies
                // more); any other rule with HTTP-only conditions never matches.
                (true, Action::Deny) => self.rule_matches(&r.without_http_conditions(), req),
                (true, _) => !r.has_http_conditions() && self.rule_matches(r, req),
            })
        };
        for p in &self.policies {
            if let Action::Custom { provider } = &p.action
                && m(p)
            {
                let allowed = self.custom.as_ref().is_some_and(|c| c.check(provider, req));
                if !allowed {
                    return deny(p, "CUSTOM");
                }
            }
        }
        if let Some(p) = self
            .policies
            .iter()
            .find(|p| p.action == Action::Deny && m(p))
        {
            return deny(p, "DENY");
        }
        let mut allows = self
            .policies
            .iter()
            .filter(|p| p.action == Action::Allow)
            .peekable();
        if allows.peek().is_some() && !allows.any(|p| m(p)) {
            return Decision::Deny {
                reason: "no ALLOW policy matched".into(),
            };
        }
        let audited = self
            .policies
            .iter()
            .filter(|p| p.action == Action::Audit && m(p))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        Decision::Allow { audited }
    }

    fn rule_matches(&self, rule: &Rule, req: &RequestAttrs) -> bool {
        (rule.from.is_empty() || rule.from.iter().any(|s| self.source_matches(s, req)))
            && (rule.to.is_empty() || rule.to.iter().any(|o| operation_matches(o, req)))
            && rule.when.iter().all(|c| self.condition_matches(c, req))
    }

    fn source_matches(&self, s: &Source, req: &RequestAttrs) -> bool {
        self.principals(&s.principals, req)
            && strings(&s.namespaces, req.source_namespace())
            && ips(&s.ip_blocks, req.source_ip)
            && ips(&s.remote_ip_blocks, req.remote_ip)
    }

    /// Matches the request principal, honouring trust domain aliases in the patterns.
    fn principals(&self, f: &Field<StringMatch>, req: &RequestAttrs) -> bool {
        let principal = req.principal.as_ref().map(|p| p.principal());
        field_matches(f, principal.as_deref(), |m, value| {
            m.matches(value) || self.alias_variants(m).iter().any(|v| v.matches(value))
        })
    }

    fn condition_matches(&self, c: &Condition, req: &RequestAttrs) -> bool {
        match c {
            Condition::Strings(StringKey::SourcePrincipal, f) => self.principals(f, req),
            other => condition_matches(other, req),
        }
    }

    /// A principal pattern written with an alias or local trust domain, rewritten to the local
    /// domain (the request side is already canonical).
    fn alias_variants(&self, m: &StringMatch) -> Vec<StringMatch> {
        let Some((local, aliases)) = &self.aliases else {
            return Vec::new();
        };
        aliases
            .iter()
            .filter_map(|a| m.replace_leading_domain(a.as_str(), local.as_str()))
            .collect()
    }
}

fn deny(p: &AuthorizationPolicy, what: &str) -> Decision {
    Decision::Deny {
        reason: format!("{what} policy {}/{}", p.namespace, p.name),
    }
}

/// Field semantics: the positive list (if any) must match and the negative list must not.
/// A missing value matches no pattern, so it fails a positive list and passes a negative one.
fn field_matches<T, V: Copy>(f: &Field<T>, value: Option<V>, hit: impl Fn(&T, V) -> bool) -> bool {
    let any = |list: &[T]| value.is_some_and(|v| list.iter().any(|m| hit(m, v)));
    f.any_of.as_deref().is_none_or(any) && !any(&f.none_of)
}

fn strings(f: &Field<StringMatch>, value: Option<&str>) -> bool {
    field_matches(f, value, |m, v| m.matches(v))
}

fn ips(f: &Field<IpBlock>, value: Option<IpAddr>) -> bool {
    field_matches(f, value, |b, ip| b.contains(ip))
}

fn ports(f: &Field<u16>, value: Option<u16>) -> bool {
    field_matches(f, value, |p, v| *p == v)
}

fn operation_matches(o: &Operation, req: &RequestAttrs) -> bool {
    let host = req.host.to_ascii_lowercase();
    let host_no_port = strip_port(&host);
    let host_ok = field_matches(&o.hosts, Some(()), |m, ()| {
        m.matches(&host) || m.matches(host_no_port)
    });
    host_ok
        && ports(&o.ports, req.destination_port)
        && strings(&o.methods, Some(&req.method))
        && strings(&o.paths, Some(&req.path))
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    }
}

fn condition_matches(c: &Condition, req: &RequestAttrs) -> bool {
    match c {
        Condition::Strings(key, f) => match key {
            StringKey::Header(name) => strings(f, req.header(name).as_deref()),
            StringKey::SourceNamespace => strings(f, req.source_namespace()),
            // Handled by `Authorizer::condition_matches`, which knows the aliases.
            StringKey::SourcePrincipal => {
                strings(f, req.principal.as_ref().map(|p| p.principal()).as_deref())
            }
            StringKey::Sni => strings(f, req.sni.as_deref()),
        },
        Condition::Ips(key, f) => ips(
            f,
            match key {
                IpKey::Source => req.source_ip,
                IpKey::Remote => req.remote_ip,
                IpKey::Destination => req.destination_ip,
            },
        ),
        Condition::Port(f) => ports(f, req.destination_port),
    }
}
