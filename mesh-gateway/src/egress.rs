//! The outbound traffic policy: what happens to traffic for hosts the mesh does not know.

use std::collections::HashSet;

use http::{Request, StatusCode};
use mesh_routing::{Collector, ConfigErrors, Document, MatchedRoute, Problem, ResourceRef};
use tower_layer::Layer;

use crate::filters::{CheckService, RequestCheck};
use crate::model::SidecarSpec;
use crate::server::host_match_rank;
use crate::service_entry::ServiceEntry;

/// Sidecar `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboundMode {
    /// Unknown hosts pass through to where the client was going (Istio's default).
    #[default]
    AllowAny,
    /// Unknown hosts are refused: HTTP gets 502, TLS and TCP connections are reset.
    RegistryOnly,
}

impl OutboundMode {
    /// Reads `spec.outboundTrafficPolicy.mode` of a `Sidecar` document.
    pub fn from_sidecar(doc: &Document) -> Result<Self, ConfigErrors> {
        doc.check_api_version(
            mesh_routing::NETWORKING_GROUP,
            mesh_routing::NETWORKING_VERSIONS,
        )?;
        let spec: SidecarSpec = doc.decode_spec()?;
        let resource: ResourceRef = doc.resource_ref();
        let mut c = Collector::new(&resource);
        let mode = match spec
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode.as_deref())
        {
            None | Some("ALLOW_ANY") => Self::AllowAny,
            Some("REGISTRY_ONLY") => Self::RegistryOnly,
            Some(other) => {
                let msg = format!("unknown variant {other:?}, expected ALLOW_ANY or REGISTRY_ONLY");
                c.push_at("outboundTrafficPolicy.mode", Problem::Decode(msg));
                Self::AllowAny
            }
        };
        c.finish(mode)
    }
}

/// The hosts the mesh knows, from ServiceEntries (and any others a caller adds).
///
/// ```
/// use mesh_gateway::KnownHosts;
/// let hosts = KnownHosts::from_hosts(["api.example.com", "*.internal"]);
/// assert!(hosts.contains("API.example.com:443"));
/// assert!(hosts.contains("db.internal"));
/// assert!(!hosts.contains("evil.example.org"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    exact: HashSet<String>,
    wildcards: Vec<String>,
}

impl KnownHosts {
    /// The hosts of these ServiceEntries.
    pub fn from_service_entries<'a>(entries: impl IntoIterator<Item = &'a ServiceEntry>) -> Self {
        Self::from_hosts(
            entries
                .into_iter()
                .flat_map(|e| e.hosts().iter().map(String::as_str)),
        )
    }

    /// These host patterns (exact names or `*.suffix` wildcards).
    pub fn from_hosts<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut known = Self::default();
        for h in hosts {
            let h = h.to_ascii_lowercase();
            if h.starts_with('*') {
                known.wildcards.push(h);
            } else {
                known.exact.insert(h);
            }
        }
        known
    }

    /// Whether `authority` (a Host header or SNI; any port is ignored) is known.
    pub fn contains(&self, authority: &str) -> bool {
        let host = authority
            .parse::<http::uri::Authority>()
            .map(|a| a.host().to_ascii_lowercase())
            .unwrap_or_else(|_| authority.to_ascii_lowercase());
        self.exact.contains(&host)
            || self
                .wildcards
                .iter()
                .any(|w| host_match_rank(w, &host).is_some())
    }
}

/// Applies the outbound policy to HTTP requests that no VirtualService route matched (put it
/// inside `mesh_routing::RouteLayer` configured with `UnknownHost::Forward`): under
/// REGISTRY_ONLY a request for an unknown host gets 502, as Istio's BlackHoleCluster answers.
///
/// ```
/// use mesh_gateway::{KnownHosts, OutboundMode, OutboundPolicyLayer};
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = OutboundPolicyLayer::new(OutboundMode::RegistryOnly, KnownHosts::from_hosts(["api.example.com"]));
/// let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// let req = http::Request::get("http://evil.example.org/").body(()).unwrap();
/// assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 502);
/// let req = http::Request::get("http://api.example.com/").body(()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; a refused request never reaches the inner service.
#[derive(Debug, Clone)]
pub struct OutboundPolicyLayer {
    mode: OutboundMode,
    known: std::sync::Arc<KnownHosts>,
}

impl OutboundPolicyLayer {
    /// A policy with its known hosts.
    pub fn new(mode: OutboundMode, known: KnownHosts) -> Self {
        Self {
            mode,
            known: std::sync::Arc::new(known),
        }
    }
}

impl<S> Layer<S> for OutboundPolicyLayer {
    type Service = CheckService<S, OutboundPolicyLayer>;
    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            check: self.clone(),
        }
    }
}

impl RequestCheck for OutboundPolicyLayer {
    fn check<B>(
        &self,
        req: &Request<B>,
    ) -> Option<http::Response<http_body_util::Full<bytes::Bytes>>> {
        if self.mode == OutboundMode::AllowAny || req.extensions().get::<MatchedRoute>().is_some() {
            return None;
        }
        let authority = mesh_routing::request_authority(req).unwrap_or("");
        (!self.known.contains(authority))
            .then(|| crate::filters::local(StatusCode::BAD_GATEWAY, ""))
    }
}
