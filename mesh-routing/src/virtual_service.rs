//! A validated, compiled VirtualService: the one place where Istio's rules are enforced.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::action::{Route, WeightedDestinations};
use crate::compile_http::compile_http_route;
use crate::compile_match::{Arm, compile_gateways, compile_l4_routes};
use crate::error::{Collector, ConfigErrors, Problem, ResourceRef};
use crate::host::{qualify_host, validate_host};
use crate::model::VirtualServiceSpec;
use crate::resource::{Document, LoadError, ObjectMeta, parse_documents};

/// Istio's default cluster domain suffix used to qualify short host names.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";
/// The reserved gateway name for sidecar (east-west inside the mesh) traffic.
pub const MESH_GATEWAY: &str = "mesh";
/// The networking API group and the versions accepted for it.
pub const NETWORKING_GROUP: &str = "networking.istio.io";
/// Versions of [`NETWORKING_GROUP`] accepted.
pub const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// A VirtualService that passed Istio's validation, with hosts qualified and match blocks
/// compiled. Build a [`crate::RouteTable`] from one or more of these.
///
/// ```
/// let vs = mesh_routing::VirtualService::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews, subset: v1}
///       weight: -5
/// "#);
/// assert_eq!(
///     vs.unwrap_err().to_string(),
///     "inline (document 1): VirtualService default/reviews: http[0].route[0].weight: weight must be >= 0, got -5"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct VirtualService {
    pub(crate) resource: ResourceRef,
    pub(crate) hosts: Vec<String>,
    pub(crate) gateways: Vec<String>,
    pub(crate) http: Vec<HttpRule>,
    pub(crate) tls: Vec<L4Route>,
    pub(crate) tcp: Vec<L4Route>,
    pub(crate) spec: VirtualServiceSpec,
}

/// One `http[i]`: its compiled route and its match blocks (ORed).
#[derive(Debug, Clone)]
pub(crate) struct HttpRule {
    pub(crate) route: Arc<Route>,
    pub(crate) arms: Vec<Arm>,
}

/// A compiled `tls[i]` or `tcp[i]` route, for gateways and TCP proxies.
#[derive(Debug, Clone)]
pub struct L4Route {
    /// The match blocks (ORed); empty means "any".
    pub matches: Vec<L4Match>,
    /// Where matching connections go.
    pub destinations: WeightedDestinations,
}

/// One match block of a TLS or TCP route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L4Match {
    /// SNI names (TLS only; wildcards allowed).
    pub sni_hosts: Vec<String>,
    /// Destination IPs or CIDRs (empty: any).
    pub destination_subnets: Vec<crate::Subnet>,
    /// Listener port.
    pub port: Option<u16>,
    /// Gateways this block applies to (overriding the VirtualService's), normalized.
    pub gateways: Option<Vec<String>>,
    /// Required labels of the source workload.
    pub source_labels: BTreeMap<String, String>,
}

impl VirtualService {
    /// Validates and compiles a VirtualService `spec`; every problem is reported.
    pub fn compile(metadata: &ObjectMeta, spec: &VirtualServiceSpec) -> Result<Self, ConfigErrors> {
        let resource = ResourceRef::new(
            "VirtualService",
            metadata.namespace.clone(),
            metadata.name.clone(),
        );
        let namespace = metadata.namespace.as_str();
        let mut c = Collector::new(&resource);

        let gateways = if spec.gateways.is_empty() {
            vec![MESH_GATEWAY.to_string()]
        } else {
            c.at(format_args!("gateways"), |c| {
                compile_gateways(&spec.gateways, namespace, c)
            })
        };
        if spec.hosts.is_empty() {
            c.push_at("hosts", Problem::Missing);
        }
        let mut hosts = Vec::with_capacity(spec.hosts.len());
        for (i, host) in spec.hosts.iter().enumerate() {
            c.at(format_args!("hosts[{i}]"), |c| {
                if let Err(reason) = validate_host(host) {
                    c.push(Problem::Host {
                        host: host.clone(),
                        reason,
                    });
                } else if host == "*" && gateways.iter().any(|g| g == MESH_GATEWAY) {
                    c.push(Problem::Host {
                        host: host.clone(),
                        reason: "`*` is not allowed for the mesh gateway",
                    });
                } else {
                    hosts.push(qualify_host(host, namespace, DEFAULT_DOMAIN_SUFFIX));
                }
            });
        }
        for (i, e) in spec.export_to.iter().enumerate() {
            if !(e == "." || e == "*" || validate_host(e).is_ok() && !e.contains('.')) {
                c.push_at(
                    &format!("exportTo[{i}]"),
                    Problem::Invalid(format!("{e:?} is not `.`, `*` or a namespace")),
                );
            }
        }
        if spec.http.is_empty() && spec.tls.is_empty() && spec.tcp.is_empty() {
            c.push(Problem::Invalid(
                "at least one of http, tls or tcp is required".into(),
            ));
        }
        let http = (spec.http.iter().enumerate())
            .filter_map(|(i, r)| {
                c.at(format_args!("http[{i}]"), |c| {
                    compile_http_route(&resource, i, r, namespace, c)
                })
            })
            .collect();
        let tls = compile_l4_routes("tls", &spec.tls_as_l4(), namespace, true, &mut c);
        let tcp = compile_l4_routes("tcp", &spec.tcp_as_l4(), namespace, false, &mut c);
        let vs = Self {
            resource: resource.clone(),
            hosts,
            gateways,
            http,
            tls,
            tcp,
            spec: spec.clone(),
        };
        c.finish(vs)
    }

    /// Validates and compiles a `VirtualService` document (checking kind and apiVersion).
    pub fn from_document(doc: &Document) -> Result<Self, ConfigErrors> {
        if doc.kind != "VirtualService" {
            return Err(crate::error::ConfigError {
                resource: doc.resource_ref(),
                path: String::new(),
                problem: Problem::Invalid("expected kind VirtualService".into()),
            }
            .into());
        }
        doc.check_api_version(NETWORKING_GROUP, NETWORKING_VERSIONS)?;
        let spec: VirtualServiceSpec = doc.decode_spec()?;
        Self::compile(&doc.metadata, &spec)
    }

    /// Parses a single VirtualService from YAML (namespace `default` when unset).
    pub fn from_yaml(yaml: &str) -> Result<Self, LoadError> {
        let mut all = load_virtual_services(yaml, "inline", "default")?;
        match all.len() {
            1 => Ok(all.remove(0)),
            n => Err(LoadError::Envelope {
                origin: "inline".into(),
                message: format!("expected exactly one VirtualService, found {n}"),
            }),
        }
    }

    /// `VirtualService namespace/name`.
    pub fn resource(&self) -> &ResourceRef {
        &self.resource
    }
    /// Hosts, qualified (`reviews` -> `reviews.default.svc.cluster.local`).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
    /// Gateways, normalized to `namespace/name` or `mesh`; `[mesh]` when unset.
    pub fn gateways(&self) -> &[String] {
        &self.gateways
    }
    /// The compiled HTTP routes, in order.
    pub fn http_routes(&self) -> impl Iterator<Item = &Route> {
        self.http.iter().map(|r| &*r.route)
    }
    /// The compiled TLS routes.
    pub fn tls_routes(&self) -> &[L4Route] {
        &self.tls
    }
    /// The compiled TCP routes.
    pub fn tcp_routes(&self) -> &[L4Route] {
        &self.tcp
    }
    /// The spec as written (for config dumps).
    pub fn spec(&self) -> &VirtualServiceSpec {
        &self.spec
    }

    /// The same VirtualService answering for `hosts` instead (already qualified), as a gateway
    /// does with the intersection of its server hosts and these hosts.
    pub fn with_hosts(&self, hosts: Vec<String>) -> Self {
        Self {
            hosts,
            ..self.clone()
        }
    }
}

/// Loads every VirtualService in a multi-document YAML stream, ignoring other kinds.
/// The first invalid VirtualService fails the load with all of its problems.
pub fn load_virtual_services(
    yaml: &str,
    source: &str,
    default_namespace: &str,
) -> Result<Vec<VirtualService>, LoadError> {
    parse_documents(yaml, source, default_namespace)?
        .iter()
        .filter(|d| d.kind == "VirtualService")
        .map(|d| {
            VirtualService::from_document(d).map_err(|errors| LoadError::Invalid {
                origin: d.origin.to_string(),
                errors,
            })
        })
        .collect()
}

impl VirtualServiceSpec {
    fn tls_as_l4(
        &self,
    ) -> Vec<(
        Vec<crate::compile_match::L4MatchModel>,
        &[crate::model::RouteDestination],
    )> {
        self.tls
            .iter()
            .map(|r| {
                (
                    r.matches.iter().map(Into::into).collect(),
                    r.route.as_slice(),
                )
            })
            .collect()
    }
    fn tcp_as_l4(
        &self,
    ) -> Vec<(
        Vec<crate::compile_match::L4MatchModel>,
        &[crate::model::RouteDestination],
    )> {
        self.tcp
            .iter()
            .map(|r| {
                (
                    r.matches.iter().map(Into::into).collect(),
                    r.route.as_slice(),
                )
            })
            .collect()
    }
}
