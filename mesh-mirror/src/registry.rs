//! The service registry abstraction: which endpoints a host and port currently have.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::endpoint::Endpoint;

/// The application protocol of a service port, as Istio derives it from the port's name or
/// `protocol` field. HTTP/2 and gRPC ports are reached with HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortProtocol {
    /// HTTP/1.1 (also the choice for unknown protocols).
    #[default]
    Http1,
    /// HTTP/2 (`http2`).
    Http2,
    /// gRPC, which runs over HTTP/2 (`grpc`).
    Grpc,
    /// gRPC-Web (`grpc-web`): browsers speak it over HTTP/1.1 or HTTP/2; Istio sends it to
    /// the upstream over HTTP/2.
    GrpcWeb,
}

impl PortProtocol {
    /// Istio's name prefixes: `http2-*`, `grpc-web-*`, `grpc-*`; anything else is HTTP/1.1
    /// here.
    pub fn from_port_name(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        let is = |p: &str| name == p || name.strip_prefix(p).is_some_and(|r| r.starts_with('-'));
        if is("grpc-web") {
            Self::GrpcWeb
        } else if is("grpc") {
            Self::Grpc
        } else if is("http2") {
            Self::Http2
        } else {
            Self::Http1
        }
    }

    /// Whether the port is spoken with HTTP/2 (Istio's `IsHTTP2`: HTTP2, GRPC, GRPC-Web).
    pub fn is_http2(self) -> bool {
        matches!(self, Self::Http2 | Self::Grpc | Self::GrpcWeb)
    }
}

/// What a registry knows about one service port at one moment: an immutable snapshot.
///
/// `version` changes whenever the endpoints do, so a consumer can keep state derived from a
/// snapshot (subset membership, hash rings) and rebuild it only when the version moves.
#[derive(Debug, Clone)]
pub struct ServiceEndpoints {
    /// Changes whenever `endpoints` or `protocol` change (a counter or a generation).
    pub version: u64,
    /// The port's protocol.
    pub protocol: PortProtocol,
    /// The endpoints, shared: a request never copies them.
    pub endpoints: Arc<[Endpoint]>,
}

/// A source of endpoints: the gateway's ServiceEntry registry implements it, and so can any
/// application that embeds the crate (Kubernetes watches, Consul, a static list).
///
/// Implementations are called once per request, so `endpoints` should be a cheap lookup of a
/// prepared snapshot (see [`StaticRegistry`]), not I/O.
pub trait ServiceRegistry: Send + Sync + 'static {
    /// The current endpoints of `host` (fully qualified, lowercase) on service port `port`
    /// (`None` when the destination named no port: the service's only port). `None` when the
    /// registry does not know the service.
    fn endpoints(&self, host: &str, port: Option<u16>) -> Option<ServiceEndpoints>;
}

impl<R: ServiceRegistry + ?Sized> ServiceRegistry for Arc<R> {
    fn endpoints(&self, host: &str, port: Option<u16>) -> Option<ServiceEndpoints> {
        (**self).endpoints(host, port)
    }
}

/// host -> port (`None`: the host's only port) -> snapshot; keyed by `String` so a lookup by
/// `&str` needs no allocation.
type Table = HashMap<String, HashMap<Option<u16>, ServiceEndpoints>>;

/// An in-memory registry whose contents can be replaced at any time: for tests, for embedding,
/// and for configs that list endpoints statically. Clones share the same contents.
///
/// Reads are lock-free (`arc-swap`); each update bumps the version of what it changes, so
/// upstreams pick up new endpoints on their next request without a restart.
///
/// ```
/// use mesh_mirror::{Endpoint, ServiceRegistry as _, StaticRegistry};
/// let registry = StaticRegistry::new();
/// registry.set("reviews.default.svc.cluster.local", 9080, vec![Endpoint::new(([10, 0, 0, 1], 9080).into())]);
/// let got = registry.endpoints("reviews.default.svc.cluster.local", Some(9080)).unwrap();
/// assert_eq!(got.endpoints.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticRegistry {
    table: Arc<ArcSwap<Table>>,
    generation: Arc<AtomicU64>,
}

impl StaticRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the endpoints of `host` on `port` (HTTP/1.1). They also answer lookups without a
    /// port when the host has just this one port.
    pub fn set(&self, host: &str, port: u16, endpoints: Vec<Endpoint>) {
        self.set_with_protocol(host, port, PortProtocol::Http1, endpoints);
    }

    /// Sets the endpoints and protocol of `host` on `port`.
    pub fn set_with_protocol(
        &self,
        host: &str,
        port: u16,
        protocol: PortProtocol,
        endpoints: Vec<Endpoint>,
    ) {
        let host = host.to_ascii_lowercase();
        let version = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = ServiceEndpoints {
            version,
            protocol,
            endpoints: endpoints.into(),
        };
        self.table.rcu(|table| {
            let mut table = Table::clone(table);
            let ports = table.entry(host.clone()).or_default();
            ports.insert(Some(port), entry.clone());
            ports.remove(&None);
            let mut numbered = ports.iter().filter(|(p, _)| p.is_some());
            if let (Some((_, only)), None) = (numbered.next(), numbered.next()) {
                let only = only.clone();
                ports.insert(None, only);
            }
            table
        });
    }

    /// Forgets every port of `host`.
    pub fn remove(&self, host: &str) {
        let host = host.to_ascii_lowercase();
        self.table.rcu(|table| {
            let mut table = Table::clone(table);
            table.remove(&host);
            table
        });
    }
}

impl ServiceRegistry for StaticRegistry {
    fn endpoints(&self, host: &str, port: Option<u16>) -> Option<ServiceEndpoints> {
        self.table.load().get(host)?.get(&port).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_bump_the_version_and_are_seen_by_clones() {
        let r = StaticRegistry::new();
        let reader = r.clone();
        r.set(
            "a.test",
            80,
            vec![Endpoint::new(([10, 0, 0, 1], 80).into())],
        );
        let v1 = reader.endpoints("a.test", Some(80)).unwrap().version;
        r.set("a.test", 80, vec![]);
        let now = reader.endpoints("a.test", Some(80)).unwrap();
        assert!(now.version > v1);
        assert!(now.endpoints.is_empty());
    }

    #[test]
    fn portless_lookup_works_only_for_a_single_port() {
        let r = StaticRegistry::new();
        r.set("a.test", 80, vec![]);
        assert!(r.endpoints("a.test", None).is_some());
        r.set("a.test", 81, vec![]);
        assert!(r.endpoints("a.test", None).is_none());
        r.remove("a.test");
        assert!(r.endpoints("a.test", Some(80)).is_none());
    }

    #[test]
    fn port_names_give_the_protocol() {
        assert_eq!(PortProtocol::from_port_name("grpc-api"), PortProtocol::Grpc);
        assert_eq!(PortProtocol::from_port_name("http2"), PortProtocol::Http2);
        assert_eq!(
            PortProtocol::from_port_name("http-web"),
            PortProtocol::Http1
        );
        assert!(!PortProtocol::from_port_name("tcp").is_http2());
    }
}
