//! Gateway TCP ports: each connection follows the first VirtualService `tcp:` route of the
//! port's Gateway to a ServiceEntry endpoint; a connection no route takes is closed.
//!
//! The route's DestinationRule applies (subsets, balancing, limits, connect and idle timeouts,
//! TLS origination); connections are tunnels of the proxy's [`Tunnels`], drained on shutdown.
//! Limits: their bytes are not counted in metrics or access logs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_gateway::Tunnels;
use tokio::net::TcpListener;

use super::gateway::Generation;
use super::serve::Connections;

/// Accepts on a TCP Gateway port until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    port: u16,
    current: Arc<ArcSwap<Generation>>,
    tunnels: Tunnels,
    conns: Connections,
) {
    while let Some((tcp, peer, slot)) = conns.accept(&listener).await {
        let generation = current.load_full();
        let tunnels = tunnels.clone();
        let local = tcp.local_addr().ok().map(|a| a.ip());
        tokio::spawn(async move {
            let _slot = slot;
            // A TCP port has no SNI or Host: the port's (first) Gateway decides.
            let Some(gateway) = generation
                .servers
                .servers(port)
                .next()
                .map(|s| s.gateway.to_string())
            else {
                return;
            };
            let Some(destinations) = generation
                .tcp_routes
                .get(&gateway)
                .and_then(|t| t.route(port, local))
            else {
                tracing::debug!(%peer, port, %gateway, "no tcp route for the port; closing");
                return;
            };
            if let Err(e) = (generation.l4)
                .forward(tcp, Some(peer), destinations, &tunnels)
                .await
            {
                tracing::debug!(%peer, port, error = %e, "tcp connection not forwarded");
            }
        });
    }
}
