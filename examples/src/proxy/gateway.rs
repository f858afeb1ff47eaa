//! Gateway servers on `--bind`: one listener per plain-HTTP port of the loaded Gateways,
//! routing each request with the route table of the server its Host selects.
//!
//! Per request: request id -> access log -> metrics -> header limits, internal-header
//! stripping, hop-by-hop removal, `x-forwarded-*` -> server selection by Host (unknown host:
//! 404; `tls.httpsRedirect`: 301) -> the generation's routed stack
//! ([`routed`](super::routed)) built for that port.
//!
//! The route tables, DestinationRules and ServiceEntry registry are rebuilt per generation
//! and swapped whole; a request keeps the generation it started on. The set of bound ports is
//! fixed at startup: a reload that adds a port logs a warning and does not bind it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use mesh_gateway::filters::{
    AuthorityCheckLayer, HeaderLimitLayer, HopByHopLayer, HttpsRedirectLayer, RequestCheck as _,
    SniHostCheckLayer, StripInternalHeadersLayer, UpgradeLayer, request_id_layer,
};
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::tls::{CredentialDir, TlsPort};
use mesh_gateway::{L4Forwarder, ServerTable, TcpRouteTable, TlsRouteTable, gateway_route_tables};
use mesh_identity::{Credentials, ForwardClientCert};
use mesh_mirror::{MirrorLayer, SourceAddr};
use mesh_routing::{GrpcLocalReplyLayer, RouteLayer, SharedRouteTable};
use tokio::net::TcpListener;
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};
use tower_service::Service;

use super::access_log::AccessLogLayer;
use super::metrics::{LocalWorkload, MetricsLayer, Reporter};
use super::route_stack::{
    BoxError, HttpService, MirrorSlot, MirrorTo, ProxyBody, RequestBody, boxed, boxed_request,
    http_service, routed, upstream_stage,
};
use super::runtime::{Proxy, StartError};
use super::serve::serve_http_per_peer;
use super::state::ProxyState;
use super::upstreams::Upstreams;

/// One generation of the gateway side.
pub(crate) struct Generation {
    pub(crate) servers: Arc<ServerTable>,
    /// The routed stack per (Gateway binding, port).
    /// Gateway binding -> port -> routed stack.
    routes: BTreeMap<String, BTreeMap<u16, HttpService>>,
    /// TLS ports: SNI selection, termination or passthrough.
    pub(crate) tls_ports: BTreeMap<u16, TlsPort>,
    /// `tls:` routes per Gateway binding (PASSTHROUGH servers).
    pub(crate) tls_routes: BTreeMap<String, TlsRouteTable>,
    /// `tcp:` routes per Gateway binding (TCP servers).
    pub(crate) tcp_routes: BTreeMap<String, TcpRouteTable>,
    /// Connects TCP routes to ServiceEntry endpoints, with the DestinationRule's TLS.
    pub(crate) l4: L4Forwarder,
    /// Connects passthrough traffic (TLS already) to ServiceEntry endpoints.
    pub(crate) l4_passthrough: L4Forwarder,
    /// MeshConfig `gatewayTopology.forwardClientCertDetails`.
    forward_client_cert: ForwardClientCert,
    /// Keeps the DNS refresh running while the generation serves.
    _upstreams: Upstreams<TlsOrigination>,
}

/// The gateway listeners' shared, swappable state.
struct Plane {
    current: Arc<ArcSwap<Generation>>,
    builder: Builder,
}

/// What each generation is built with.
struct Builder {
    mirror: MirrorSlot<TlsOrigination>,
    mirror_layer: MirrorLayer<MirrorTo<TlsOrigination>>,
    make: TlsOrigination,
    /// The proxy's SVID, for ISTIO_MUTUAL servers.
    mesh: Option<Credentials>,
    /// Where `credentialName`s are looked up.
    credentials: CredentialDir,
}

impl Builder {
    /// Builds a generation; fails when a TLS server's certificate material does not load.
    fn generation(&self, proxy: &Proxy, state: &ProxyState) -> Result<Generation, String> {
        let servers = Arc::new(ServerTable::new(&state.bundle().gateways));
        let mut tls_ports = BTreeMap::new();
        for port in ports(state).tls {
            let tls_port =
                TlsPort::new(servers.clone(), port, &self.credentials, self.mesh.as_ref())
                    .map_err(|e| format!("Gateway port {port}: {e}"))?;
            tls_ports.insert(port, tls_port);
        }
        let upstreams = Upstreams::build(state, &proxy.args, |_| self.make.clone());
        self.mirror.set(upstreams.mirror.clone());
        let bundle = state.bundle();
        let mut routes = BTreeMap::new();
        for gw in &bundle.gateways {
            for (port, table) in gateway_route_tables(gw, &bundle.virtual_services) {
                // Built per port: the layer knows the listener port for `port` matches.
                let route = RouteLayer::new(SharedRouteTable::new(table)).listener_port(port);
                let svc = routed(
                    route,
                    None,
                    &self.mirror_layer,
                    upstream_stage(upstreams.primary.clone()),
                );
                (routes
                    .entry(gw.binding_name())
                    .or_insert_with(BTreeMap::new))
                .insert(port, svc);
            }
        }
        let tls_routes = (bundle.gateways.iter())
            .map(|gw| {
                let binding = gw.binding_name();
                let table = TlsRouteTable::build(&bundle.virtual_services, &binding);
                (binding, table)
            })
            .collect();
        let tcp_routes = (bundle.gateways.iter())
            .map(|gw| {
                let binding = gw.binding_name();
                let table = TcpRouteTable::build(&bundle.virtual_services, &binding);
                (binding, table)
            })
            .collect();
        // TCP and TLS routes go through the same clusters as HTTP: DestinationRule subsets,
        // balancing, limits, timeouts and TLS origination apply to them too.
        let l4 = L4Forwarder::new(upstreams.primary.clone());
        let l4_passthrough = L4Forwarder::new(upstreams.plain.clone());
        Ok(Generation {
            servers,
            routes,
            tls_ports,
            tls_routes,
            tcp_routes,
            l4,
            l4_passthrough,
            forward_client_cert: (state.mesh_config.as_ref())
                .map_or(ForwardClientCert::default(), |m| m.forward_client_cert),
            _upstreams: upstreams,
        })
    }
}

/// The Gateway ports of `state` by what serves them.
pub(crate) struct GatewayPorts {
    /// Every server on the port is HTTP without TLS.
    pub(crate) http: Vec<u16>,
    /// Every server is HTTPS or TLS.
    pub(crate) tls: Vec<u16>,
    /// Every server is TCP (or MONGO): connections follow `tcp:` routes.
    pub(crate) tcp: Vec<u16>,
    /// Plain and TLS servers mixed on one port: not served.
    pub(crate) other: Vec<u16>,
}

/// Sorts the Gateway ports of `state` by protocol.
pub(crate) fn ports(state: &ProxyState) -> GatewayPorts {
    let servers = ServerTable::new(&state.bundle().gateways);
    let mut out = GatewayPorts {
        http: Vec::new(),
        tls: Vec::new(),
        tcp: Vec::new(),
        other: Vec::new(),
    };
    for p in servers.ports() {
        let protocols: Vec<_> = servers.servers(p).map(|s| s.server.protocol).collect();
        if protocols.iter().all(|p| p.is_http() && !p.is_tls()) {
            out.http.push(p);
        } else if protocols.iter().all(|p| p.is_tls()) {
            out.tls.push(p);
        } else if protocols.iter().all(|p| !p.is_http() && !p.is_tls()) {
            out.tcp.push(p);
        } else {
            out.other.push(p);
        }
    }
    out
}

/// Binds and spawns a listener for every plain-HTTP and TLS Gateway port, plus the task
/// that rebuilds their state on each new generation.
pub(crate) async fn start(
    proxy: &Proxy,
    make: TlsOrigination,
    mesh: Option<Credentials>,
) -> Result<(), StartError> {
    let state = proxy.current();
    let GatewayPorts {
        http,
        tls,
        tcp,
        other,
    } = ports(&state);
    if !other.is_empty() {
        tracing::warn!(ports = ?other, bind = %proxy.args.bind,
            "Gateway ports mixing plain and TLS servers are not supported; not listening");
    }
    if http.is_empty() && tls.is_empty() && tcp.is_empty() {
        return Ok(());
    }
    let mirror = MirrorSlot::default();
    let mirror_layer = mirror.layer();
    proxy
        .metrics
        .register_mirror("gateway", mirror_layer.counters());
    let local = local_workload(proxy, mesh.as_ref());
    // `By=` of x-forwarded-client-cert on ISTIO_MUTUAL servers.
    let mesh_id = mesh.as_ref().map(|c| c.svid().id().clone());
    let builder = Builder {
        mirror,
        mirror_layer,
        make,
        mesh,
        credentials: credential_dir(&proxy.args.config),
    };
    let first = builder
        .generation(proxy, &state)
        .map_err(StartError::GatewayTls)?;
    let plane = Plane {
        current: Arc::new(ArcSwap::from_pointee(first)),
        builder,
    };
    let mut bound = Vec::new();
    for port in http.iter().chain(&tls).chain(&tcp) {
        let addr = SocketAddr::new(proxy.args.bind, *port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "gateway",
                addr,
                source,
            })?;
        bound.push((*port, listener));
    }
    for (port, listener) in bound {
        let addr = listener
            .local_addr()
            .unwrap_or(SocketAddr::new(proxy.args.bind, port));
        let drain = proxy.drain;
        let tunnels = proxy.tunnels.clone();
        if tcp.contains(&port) {
            let current = plane.current.clone();
            let name = format!("gateway-tcp:{port}");
            let conns = proxy.connections(&name);
            proxy.listeners.spawn(name, addr, move |ready| {
                ready.set();
                super::gateway_tcp::serve(listener, port, current, tunnels, conns)
            });
        } else if tls.contains(&port) {
            let svc = listener_service(proxy, port, &plane, "https", local.clone());
            let current = plane.current.clone();
            let name = format!("gateway-tls:{port}");
            let conns = proxy.connections(&name);
            let on = super::gateway_tls::TlsListener {
                port,
                current,
                svc,
                tunnels,
                mesh_id: mesh_id.clone(),
            };
            proxy.listeners.spawn(name, addr, move |ready| {
                ready.set();
                on.serve(listener, conns, drain)
            });
        } else {
            let svc = listener_service(proxy, port, &plane, "http", local.clone());
            let name = format!("gateway:{port}");
            let conns = proxy.connections(&name);
            proxy.listeners.spawn(name, addr, move |ready| {
                ready.set();
                serve_http_per_peer(
                    listener,
                    move |peer| per_peer(svc.clone(), peer),
                    conns,
                    drain,
                )
            });
        }
        tracing::info!(%addr, "gateway listener up");
    }
    let bound: Vec<u16> = http.into_iter().chain(tls).chain(tcp).collect();
    tokio::spawn(refresh(proxy.clone(), plane, bound));
    Ok(())
}

/// Where `credentialName: NAME` is read: `DIR/NAME/tls.crt`, `tls.key` (and `ca.crt`), DIR
/// being the first `--config` path if it is a directory, else the directory of that file.
fn credential_dir(config: &[std::path::PathBuf]) -> CredentialDir {
    let first = config.first().cloned().unwrap_or_default();
    let dir = if first.is_dir() {
        first
    } else {
        first
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    };
    CredentialDir(dir)
}

/// Rebuilds the gateway state on each new generation until shutdown.
async fn refresh(proxy: Proxy, plane: Plane, bound: Vec<u16>) {
    let mut changes = proxy.changes();
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        let state = proxy.current();
        let GatewayPorts { http, tls, tcp, .. } = ports(&state);
        let unbound: Vec<u16> = (http.into_iter().chain(tls).chain(tcp))
            .filter(|p| !bound.contains(p))
            .collect();
        if !unbound.is_empty() {
            tracing::warn!(ports = ?unbound, "new Gateway ports need a restart to be bound");
        }
        match plane.builder.generation(&proxy, &state) {
            Ok(g) => plane.current.store(Arc::new(g)),
            Err(e) => {
                tracing::error!(error = %e, generation = state.generation,
                    "Gateway TLS setup failed; the gateways keep their previous configuration");
                continue;
            }
        }
        tracing::debug!(generation = state.generation, "gateway routes swapped");
    }
}

/// The peer's address in every request of one connection.
pub(crate) fn per_peer(
    svc: HttpService,
    peer: SocketAddr,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    svc.map_request(move |req: Request<Incoming>| {
        let mut req = boxed_request(req);
        // One extension: mesh-gateway's RemoteAddr is mesh-mirror's SourceAddr.
        req.extensions_mut().insert(SourceAddr(peer));
        req
    })
}

/// The full per-listener stack in front of the port's dispatch.
fn listener_service(
    proxy: &Proxy,
    port: u16,
    plane: &Plane,
    scheme: &'static str,
    local: LocalWorkload,
) -> HttpService {
    let dispatch = PortDispatch {
        port,
        current: plane.current.clone(),
    };
    observed(
        proxy,
        Reporter::Source,
        local,
        ServiceBuilder::new()
            .layer(StripInternalHeadersLayer::default())
            .layer(HopByHopLayer)
            .layer(proxy.forwarded.clone().proto(scheme))
            .layer(SniHostCheckLayer)
            .service(dispatch),
    )
}

/// This proxy's workload for metrics: `--namespace` and the SVID's SPIFFE ID (the workload
/// name is not known: mesh-proxy has no flag for it).
pub(crate) fn local_workload(proxy: &Proxy, mesh: Option<&Credentials>) -> LocalWorkload {
    LocalWorkload {
        namespace: proxy.args.namespace.clone(),
        principal: mesh.map_or_else(
            || LocalWorkload::default().principal,
            |c| c.svid().id().to_string(),
        ),
        ..LocalWorkload::default()
    }
}

/// Request id -> access log (when on) -> metrics -> WebSocket upgrades (joined into
/// [`Proxy::tunnels`]; other upgrades refused) -> gRPC local replies (trailers-only
/// `grpc-status` for gRPC callers) -> path normalization (MeshConfig `pathNormalization`,
/// before routing and authorization) -> one authority (400 for two `Host`s or none on
/// HTTP/1.1; an absolute-form target replaces `Host`) -> header limits (431 past 100 headers
/// or 60 KiB with the target, as Envoy counts), around `inner`, boxed once: every box is a clone and an
/// allocation per request.
pub(crate) fn observed<S, B>(
    proxy: &Proxy,
    reporter: Reporter,
    local: LocalWorkload,
    inner: S,
) -> HttpService
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let metered = ServiceBuilder::new()
        .layer(MetricsLayer::new(proxy.metrics.clone(), reporter, local))
        .map_request(boxed_request)
        .layer(UpgradeLayer::new(proxy.tunnels.clone()))
        .layer(GrpcLocalReplyLayer)
        .layer(proxy.path_normalization.clone())
        .layer(AuthorityCheckLayer)
        .map_response(boxed)
        .layer(HeaderLimitLayer::default())
        .service(inner);
    match &proxy.access_log {
        Some(log) => http_service(
            ServiceBuilder::new()
                .layer(request_id_layer())
                .layer(AccessLogLayer::new(log.clone()))
                .map_request(boxed_request)
                .service(metered),
        ),
        None => http_service(request_id_layer().layer(metered)),
    }
}

/// The Gateway (`namespace/name`) whose server terminated a TLS connection, by SNI.
#[derive(Debug, Clone)]
pub(crate) struct TlsGateway(pub(crate) String);

/// Selects the server by Host (or takes the one TLS selected by SNI) and calls its routed
/// stack on the current generation.
#[derive(Clone)]
struct PortDispatch {
    port: u16,
    current: Arc<ArcSwap<Generation>>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

/// A local answer with no body.
pub(crate) fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut resp = boxed(Response::new(Empty::<Bytes>::new().map_err(|e| match e {})));
    *resp.status_mut() = code;
    resp
}

/// Envoy's 404 for a host no server or route takes (flag `NR`).
fn no_route() -> Response<ProxyBody> {
    mesh_routing::LocalReply::new("NR", "").mark(status(StatusCode::NOT_FOUND))
}

/// The request's host, lowercase, without the port (borrowed unless it had capitals): of
/// [`mesh_routing::request_authority`], normalized as host matching does.
pub(crate) fn request_host<B>(req: &Request<B>) -> std::borrow::Cow<'_, str> {
    mesh_routing::request_host(mesh_routing::request_authority(req).unwrap_or(""))
}

impl Service<Request<RequestBody>> for PortDispatch {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> BoxFuture {
        let generation = self.current.load_full();
        let peer = (req.extensions().get::<super::gateway_tls::ClientCert>()).map(|c| c.0.clone());
        (generation.forward_client_cert).apply(req.headers_mut(), peer.as_ref());
        let port = self.port;
        let routed = |gateway: &str| (generation.routes.get(gateway)?.get(&port)).cloned();
        let svc = match req.extensions().get::<TlsGateway>() {
            // A terminated TLS connection: the server was chosen by SNI.
            Some(TlsGateway(gateway)) => routed(gateway),
            None => {
                let host = request_host(&req);
                let Some(selected) = generation.servers.select_http(self.port, &host) else {
                    return Box::pin(async { Ok(no_route()) });
                };
                if (selected.server.tls.as_ref()).is_some_and(|t| t.https_redirect) {
                    let resp = HttpsRedirectLayer.check(&req).map(boxed);
                    return Box::pin(async move {
                        Ok(resp.unwrap_or_else(|| status(StatusCode::MOVED_PERMANENTLY)))
                    });
                }
                routed(selected.gateway)
            }
        };
        let Some(svc) = svc else {
            return Box::pin(async { Ok(no_route()) });
        };
        // The generation stays alive until the response is produced.
        Box::pin(svc.oneshot(req).map(move |resp| {
            drop(generation);
            resp
        }))
    }
}

#[cfg(test)]
mod request_host_tests {
    use super::request_host;
    use http::Request;

    fn host_of(uri: &str, host: Option<&str>) -> String {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        request_host(&b.body(()).unwrap()).into_owned()
    }

    #[test]
    fn lowercase_host_without_port_from_authority_or_host_header() {
        assert_eq!(
            host_of("http://Web.Example.com:8080/x", None),
            "web.example.com"
        );
        assert_eq!(
            host_of("/x", Some("web.example.com:18100")),
            "web.example.com"
        );
        assert_eq!(host_of("/x", Some("WEB.example.com")), "web.example.com");
        assert_eq!(host_of("/x", Some("[::1]:8080")), "[::1]");
        assert_eq!(host_of("/x", Some("[::1]")), "[::1]");
        assert_eq!(host_of("/x", Some("host:notaport")), "host:notaport");
        assert_eq!(host_of("/x", None), "");
        // The URI's authority wins over the Host header (HTTP/2 :authority).
        assert_eq!(host_of("http://a.example/", Some("b.example")), "a.example");
    }
}
