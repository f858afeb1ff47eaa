//! The sidecar's outbound TCP listeners (with `--outbound`): one per TCP port of each
//! ServiceEntry (protocol TCP, MONGO, MYSQL, REDIS), as Istio's per-service outbound
//! listeners are. Without iptables there is no original destination to read, so each listener
//! is bound where a client connects for that service: on each of the ServiceEntry's
//! `addresses` that is an IP (`VIP:port`, as Istio binds them), else on the `--outbound` IP
//! at the service port.
//!
//! A connection follows the VirtualService `tcp:` routes bound to `mesh` for the service
//! (`port` and `destinationSubnets` matched against the listener's address; weights per
//! connection), else goes to the service itself; the route's DestinationRule applies
//! (subsets, balancing, limits, connect and idle timeouts, TLS origination) and auto-mTLS for
//! endpoints labelled `security.istio.io/tlsMode: istio`, as for HTTP. The set of bound ports
//! is fixed at startup; a reload that adds one logs a warning.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_gateway::{L4Forwarder, TcpRouteTable, Tunnels};
use mesh_routing::{Destination, MESH_GATEWAY};
use tokio::net::{TcpListener, TcpStream};

use super::runtime::{Proxy, StartError};
use super::serve::Connections;
use super::state::ProxyState;

/// A service's TCP port as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TcpService {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Where each TCP service port is bound: `addr -> service`. A second service claiming an
/// address is warned about and not bound (Istio reports the same conflict).
pub(crate) fn tcp_services(
    state: &ProxyState,
    outbound_ip: IpAddr,
) -> BTreeMap<SocketAddr, TcpService> {
    let mut out: BTreeMap<SocketAddr, TcpService> = BTreeMap::new();
    for se in &state.bundle().service_entries {
        let Some(host) = se.hosts().first() else {
            continue;
        };
        let ips: Vec<IpAddr> = se
            .addresses()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let ips = if ips.is_empty() {
            vec![outbound_ip]
        } else {
            ips
        };
        for port in se.ports().iter().filter(|p| p.protocol.is_tcp()) {
            for ip in &ips {
                let addr = SocketAddr::new(*ip, port.number);
                let service = TcpService {
                    host: host.clone(),
                    port: port.number,
                };
                match out.get(&addr) {
                    Some(other) if other != &service => tracing::warn!(%addr, host = %service.host,
                        bound = %other.host, "two ServiceEntries claim one outbound TCP address; the first is kept"),
                    _ => {
                        out.insert(addr, service);
                    }
                }
            }
        }
    }
    out
}

/// The TCP routes of every bound service, for one generation.
pub(crate) fn route_tables(
    state: &ProxyState,
    services: &BTreeMap<SocketAddr, TcpService>,
) -> BTreeMap<String, TcpRouteTable> {
    let vss = &state.bundle().virtual_services;
    (services.values())
        .map(|s| {
            let table = TcpRouteTable::build_for_host(vss, MESH_GATEWAY, &s.host);
            (s.host.clone(), table)
        })
        .collect()
}

/// What a connection needs from the current generation.
pub(crate) trait TcpGeneration: Send + Sync + 'static {
    /// The forwarder through the generation's clusters.
    fn l4(&self) -> &L4Forwarder;
    /// The `tcp:` routes of `host`.
    fn tcp_routes(&self, host: &str) -> Option<&TcpRouteTable>;
}

/// Binds every TCP service port (see the module docs) and serves them until shutdown.
pub(crate) async fn start<G: TcpGeneration>(
    proxy: &Proxy,
    outbound_ip: IpAddr,
    current: Arc<ArcSwap<G>>,
) -> Result<Vec<SocketAddr>, StartError> {
    let services = tcp_services(&proxy.current(), outbound_ip);
    let mut bound = Vec::new();
    for (addr, service) in services {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "outbound TCP",
                addr,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(addr);
        bound.push(addr);
        let (current, tunnels) = (current.clone(), proxy.tunnels.clone());
        let name = format!("outbound-tcp:{}:{}", service.host, service.port);
        let conns = proxy.connections(&name);
        proxy.listeners.spawn(name, addr, move |ready| {
            ready.set();
            serve(listener, service, current, tunnels, conns)
        });
        tracing::info!(%addr, "outbound TCP listener up");
    }
    Ok(bound)
}

async fn serve<G: TcpGeneration>(
    listener: TcpListener,
    service: TcpService,
    current: Arc<ArcSwap<G>>,
    tunnels: Tunnels,
    conns: Connections,
) {
    let service = Arc::new(service);
    while let Some((tcp, peer, slot)) = conns.accept(&listener).await {
        let (generation, tunnels, service) =
            (current.load_full(), tunnels.clone(), service.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = forward(&*generation, &service, tcp, peer, &tunnels).await {
                tracing::debug!(%peer, host = %service.host, port = service.port, error = %e,
                    "outbound TCP connection not forwarded");
            }
        });
    }
}

async fn forward<G: TcpGeneration>(
    generation: &G,
    service: &TcpService,
    tcp: TcpStream,
    peer: SocketAddr,
    tunnels: &Tunnels,
) -> Result<(), mesh_gateway::ForwardError> {
    let local = tcp.local_addr().ok().map(|a| a.ip());
    let routes = generation.tcp_routes(&service.host);
    if let Some(destinations) = routes.and_then(|t| t.route(service.port, local)) {
        generation
            .l4()
            .forward(tcp, Some(peer), destinations, tunnels)
            .await?;
        return Ok(());
    }
    let destination = Destination {
        host: service.host.clone(),
        subset: None,
        port: Some(service.port),
    };
    let upstream = generation.l4().connect(&destination, Some(peer)).await?;
    tunnels
        .run_with_idle_timeout(tcp, upstream.stream, upstream.idle_timeout)
        .await
        .map_err(|source| mesh_gateway::ForwardError::Tunnel {
            host: service.host.clone(),
            source,
        })?;
    Ok(())
}
