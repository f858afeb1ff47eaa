//! Gateway TLS ports: the ClientHello's SNI selects the server; SIMPLE/MUTUAL/ISTIO_MUTUAL
//! servers terminate TLS and serve the same HTTP stack as plain ports (scheme `https`, the
//! SNI checked against Host, 421 otherwise); PASSTHROUGH servers forward the untouched TLS
//! bytes by the Gateway's `tls:` routes; AUTO_PASSTHROUGH servers forward to the cluster the
//! SNI names (`outbound_.PORT_.SUBSET_.HOST`). An unknown SNI, or an SNI no route takes, closes
//! the connection.
//!
//! Passthrough connections are tunnels of the proxy's [`Tunnels`] (drained on shutdown).
//! Limits: passthrough bytes are not counted in metrics or access logs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use mesh_gateway::filters::TlsServerName;
use mesh_gateway::tls::{Accepted, PrefixedStream};
use mesh_gateway::{ClusterSni, GatewayServer, TlsMode, Tunnels};
use mesh_identity::{SpiffeId, client_cert_element};
use mesh_mirror::SourceAddr;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;
use tower_service::Service;

use super::gateway::{Generation, TlsGateway};
use super::route_stack::{HttpService, ProxyBody, boxed_request};
use super::serve::Connections;

/// A TLS Gateway port's listener.
pub(crate) struct TlsListener {
    pub(crate) port: u16,
    pub(crate) current: Arc<ArcSwap<Generation>>,
    pub(crate) svc: HttpService,
    pub(crate) tunnels: Tunnels,
    /// The proxy's SPIFFE ID (`By=` of x-forwarded-client-cert on ISTIO_MUTUAL servers).
    pub(crate) mesh_id: Option<SpiffeId>,
}

/// The verified client certificate of a terminated mTLS connection, as its
/// x-forwarded-client-cert element (the gateway's `forwardClientCertDetails` decides what
/// the upstream gets).
#[derive(Debug, Clone)]
pub(crate) struct ClientCert(pub(crate) HeaderValue);

impl TlsListener {
    /// Accepts until shutdown, then drains its connections.
    pub(crate) async fn serve(self, listener: TcpListener, conns: Connections, drain: Duration) {
        let port = self.port;
        while let Some((tcp, peer, slot)) = conns.accept(&listener).await {
            let generation = self.current.load_full();
            let Some(tls_port) = generation.tls_ports.get(&port).cloned() else {
                continue;
            };
            let (svc, conns, tunnels) = (self.svc.clone(), conns.clone(), self.tunnels.clone());
            let mesh_id = self.mesh_id.clone();
            let local = tcp.local_addr().ok().map(|a| a.ip());
            tokio::spawn(async move {
                match tls_port.accept(tcp).await {
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS connection not accepted"),
                    Ok(Accepted::Terminated {
                        stream,
                        gateway,
                        sni,
                        server,
                    }) => {
                        let istio = server
                            .tls
                            .as_ref()
                            .is_some_and(|t| t.mode == TlsMode::IstioMutual);
                        let by = mesh_id.as_ref().filter(|_| istio);
                        let cert = (stream.get_ref().1.peer_certificates())
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| client_cert_element(by, leaf))
                            .and_then(|e| HeaderValue::from_str(&e).ok())
                            .map(ClientCert);
                        let svc = terminated(svc, peer, gateway, sni, cert);
                        conns.serve(slot, stream, svc, peer).await;
                    }
                    Ok(Accepted::Passthrough {
                        stream,
                        hello,
                        server,
                        gateway,
                    }) => {
                        let _slot = slot;
                        let sni = hello.server_name.unwrap_or_default();
                        let on = Passthrough {
                            generation: &generation,
                            port,
                            peer,
                            local,
                            tunnels: &tunnels,
                        };
                        on.forward(stream, &sni, &server, &gateway).await;
                    }
                }
            });
        }
        drop(listener);
        conns.drain(drain).await;
    }
}

/// The per-connection HTTP service of a terminated connection.
fn terminated(
    svc: HttpService,
    peer: SocketAddr,
    gateway: String,
    sni: Option<String>,
    cert: Option<ClientCert>,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    svc.map_request(move |req: Request<Incoming>| {
        let mut req = boxed_request(req);
        let ext = req.extensions_mut();
        // One extension: mesh-gateway's RemoteAddr is mesh-mirror's SourceAddr.
        ext.insert(SourceAddr(peer));
        ext.insert(TlsGateway(gateway.clone()));
        if let Some(sni) = &sni {
            ext.insert(TlsServerName(sni.clone()));
        }
        if let Some(cert) = &cert {
            ext.insert(cert.clone());
        }
        req
    })
}

/// Where a passthrough connection arrived.
struct Passthrough<'a> {
    generation: &'a Generation,
    port: u16,
    peer: SocketAddr,
    /// The address the client connected to (`destinationSubnets`).
    local: Option<std::net::IpAddr>,
    tunnels: &'a Tunnels,
}

impl Passthrough<'_> {
    /// Forwards a passthrough connection by SNI; closes it when nothing takes the SNI. The
    /// bytes are TLS already: the DestinationRule's subsets, balancing and limits apply, its
    /// TLS origination does not (as Istio does for SNI-DNAT clusters).
    async fn forward(
        &self,
        stream: PrefixedStream<TcpStream>,
        sni: &str,
        server: &GatewayServer,
        gateway: &str,
    ) {
        let auto = server
            .tls
            .as_ref()
            .is_some_and(|t| t.mode == TlsMode::AutoPassthrough);
        let l4 = &self.generation.l4_passthrough;
        let (port, peer) = (self.port, Some(self.peer));
        let result = if auto {
            match sni.parse::<ClusterSni>() {
                Ok(cluster) => match l4.connect(&cluster.destination(), peer).await {
                    Ok(upstream) => (self.tunnels)
                        .run_with_idle_timeout(stream, upstream.stream, upstream.idle_timeout)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(format!("AUTO_PASSTHROUGH: {e:?}")),
            }
        } else {
            match (self.generation.tls_routes.get(gateway))
                .and_then(|t| t.route(port, sni, self.local))
            {
                Some(destinations) => (l4.forward(stream, peer, destinations, self.tunnels).await)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                None => Err("no tls route for the SNI".to_string()),
            }
        };
        if let Err(e) = result {
            tracing::debug!(%sni, gateway, port, error = %e, "passthrough connection closed");
        }
    }
}
