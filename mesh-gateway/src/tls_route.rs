//! Routing of TLS connections that are not terminated (PASSTHROUGH): VirtualService `tls`
//! routes matched by SNI, port and gateway, in order; the first match wins.

use std::net::IpAddr;

use mesh_routing::{L4Match, L4Route, VirtualService, WeightedDestinations};

use crate::server::host_match_rank;

/// Whether a match block's `port` and `destinationSubnets` admit a connection to
/// `destination` on `port` (subnets need the address: without it they never match).
fn admits(m: &L4Match, port: u16, destination: Option<IpAddr>) -> bool {
    m.port.is_none_or(|p| p == port)
        && (m.destination_subnets.is_empty()
            || destination.is_some_and(|ip| m.destination_subnets.iter().any(|s| s.contains(ip))))
}

/// The `tls` routes that apply to one gateway (or `mesh`), in priority order.
///
/// ```
/// use mesh_gateway::TlsRouteTable;
/// let vss = mesh_routing::load_virtual_services(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: db, namespace: edge}
/// spec:
///   hosts: [db.example.com]
///   gateways: [gw]
///   tls:
///   - match: [{sniHosts: [db.example.com], port: 443}]
///     route: [{destination: {host: db.internal, port: {number: 5432}}}]
/// "#, "vs.yaml", "default").unwrap();
/// let table = TlsRouteTable::build(&vss, "edge/gw");
/// let dest = table.route(443, "db.example.com", None).unwrap().iter().next().unwrap();
/// assert_eq!(dest.destination.host, "db.internal");
/// assert!(table.route(8443, "db.example.com", None).is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsRouteTable {
    routes: Vec<L4Route>,
}

impl TlsRouteTable {
    /// The `tls` routes of `virtual_services` bound to `gateway` (`namespace/name` or `mesh`),
    /// either through the VirtualService's `gateways` or a match block's own `gateways`.
    pub fn build(virtual_services: &[VirtualService], gateway: &str) -> Self {
        let mut routes = Vec::new();
        for vs in virtual_services {
            for route in vs.tls_routes() {
                let matches: Vec<_> = (route.matches.iter())
                    .filter(|m| {
                        m.gateways
                            .as_deref()
                            .unwrap_or(vs.gateways())
                            .iter()
                            .any(|g| g == gateway)
                    })
                    .cloned()
                    .collect();
                if !matches.is_empty() {
                    routes.push(L4Route {
                        matches,
                        destinations: route.destinations.clone(),
                    });
                }
            }
        }
        Self { routes }
    }

    /// The destinations of the first route with a match block for this port, SNI and
    /// destination address (`destinationSubnets`).
    pub fn route(
        &self,
        port: u16,
        sni: &str,
        destination: Option<IpAddr>,
    ) -> Option<&WeightedDestinations> {
        let sni = sni.to_ascii_lowercase();
        (self.routes.iter())
            .find(|r| {
                r.matches.iter().any(|m| {
                    admits(m, port, destination)
                        && m.sni_hosts
                            .iter()
                            .any(|h| host_match_rank(h, &sni).is_some())
                })
            })
            .map(|r| &r.destinations)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no route applies to the gateway.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The `tcp` routes that apply to one gateway (or `mesh`), in priority order: a TCP
/// connection takes the first route with a match block for its port (or with no match block).
///
/// ```
/// use mesh_gateway::TcpRouteTable;
/// let vss = mesh_routing::load_virtual_services(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: db, namespace: edge}
/// spec:
///   hosts: ['*']
///   gateways: [gw]
///   tcp:
///   - match: [{port: 5432}]
///     route: [{destination: {host: db.internal, port: {number: 5432}}}]
/// "#, "vs.yaml", "default").unwrap();
/// let table = TcpRouteTable::build(&vss, "edge/gw");
/// assert_eq!(table.route(5432, None).unwrap().iter().next().unwrap().destination.host, "db.internal");
/// assert!(table.route(3306, None).is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TcpRouteTable {
    routes: Vec<L4Route>,
}

impl TcpRouteTable {
    /// The `tcp` routes of `virtual_services` bound to `gateway` (`namespace/name` or `mesh`).
    pub fn build(virtual_services: &[VirtualService], gateway: &str) -> Self {
        Self::build_from(virtual_services.iter(), gateway)
    }

    /// The `tcp` routes bound to `gateway` of the VirtualServices whose `hosts` take `host`:
    /// what a sidecar applies to the connections of one service (`mesh`).
    pub fn build_for_host(virtual_services: &[VirtualService], gateway: &str, host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        let for_host = (virtual_services.iter()).filter(|vs| {
            vs.hosts()
                .iter()
                .any(|h| host_match_rank(h, &host).is_some())
        });
        Self::build_from(for_host, gateway)
    }

    fn build_from<'a>(
        virtual_services: impl Iterator<Item = &'a VirtualService>,
        gateway: &str,
    ) -> Self {
        let mut routes = Vec::new();
        for vs in virtual_services {
            for route in vs.tcp_routes() {
                let bound = |gateways: Option<&Vec<String>>| {
                    gateways
                        .map_or(vs.gateways(), Vec::as_slice)
                        .iter()
                        .any(|g| g == gateway)
                };
                if route.matches.is_empty() {
                    if bound(None) {
                        routes.push(route.clone());
                    }
                    continue;
                }
                let matches: Vec<_> = route
                    .matches
                    .iter()
                    .filter(|m| bound(m.gateways.as_ref()))
                    .cloned()
                    .collect();
                if !matches.is_empty() {
                    routes.push(L4Route {
                        matches,
                        destinations: route.destinations.clone(),
                    });
                }
            }
        }
        Self { routes }
    }

    /// The destinations of the first route for `port` and the connection's destination
    /// address (`destinationSubnets`; without an address such blocks never match).
    pub fn route(&self, port: u16, destination: Option<IpAddr>) -> Option<&WeightedDestinations> {
        (self.routes.iter())
            .find(|r| {
                r.matches.is_empty() || r.matches.iter().any(|m| admits(m, port, destination))
            })
            .map(|r| &r.destinations)
    }

    /// True when no route applies.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
