//! The sidecar outbound listener (`--outbound`): plain HTTP routed by Host with the `mesh`
//! route table. A request no VirtualService route takes goes to its Host as a service: a
//! ServiceEntry host through the upstream (endpoints, DestinationRule, auto-mTLS), an
//! unknown host under ALLOW_ANY straight to the Host as given (passthrough), an unknown host
//! under REGISTRY_ONLY gets 502.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::{FutureExt as _, TryFutureExt as _};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mesh_gateway::filters::HopByHopLayer;
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::{
    KnownHosts, L4Forwarder, OutboundPolicyLayer, ServiceEntryRegistry, TcpRouteTable,
};
use mesh_identity::Credentials;
use mesh_mirror::{MirrorLayer, SelectedDestination};
use mesh_routing::{
    Destination, MESH_GATEWAY, RouteLayer, RouteTable, SharedRouteTable, TableOptions, UnknownHost,
};
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_service::Service;

use super::auto_mtls::AutoMtls;
use super::gateway::{local_workload, observed, per_peer, request_host};
use super::metrics::Reporter;
use super::route_stack::{
    BoxError, HttpService, MirrorSlot, MirrorTo, ProxyBody, RequestBody, UpstreamService, boxed,
    http_service, routed, upstream_service,
};
use super::runtime::{Proxy, StartError};
use super::serve::serve_http_per_peer;
use super::state::ProxyState;
use super::upstreams::{PrimaryBody, Upstreams};

struct Generation {
    route: HttpService,
    /// TCP connections through the same clusters (auto-mTLS included).
    l4: L4Forwarder,
    /// The `tcp:` routes of each bound TCP service.
    tcp_routes: BTreeMap<String, TcpRouteTable>,
    _upstreams: Upstreams<AutoMtls>,
}

impl super::outbound_tcp::TcpGeneration for Generation {
    fn l4(&self) -> &L4Forwarder {
        &self.l4
    }
    fn tcp_routes(&self, host: &str) -> Option<&TcpRouteTable> {
        self.tcp_routes.get(host)
    }
}

struct Builder {
    mirror: MirrorSlot<AutoMtls>,
    mirror_layer: MirrorLayer<MirrorTo<AutoMtls>>,
    origination: TlsOrigination,
    /// Auto-mTLS needs the proxy's own SVID.
    auto_mtls: bool,
    /// The `--outbound` IP (where TCP services without addresses are bound).
    outbound_ip: std::net::IpAddr,
    /// The TCP services bound at startup.
    tcp_services: BTreeMap<std::net::SocketAddr, super::outbound_tcp::TcpService>,
    passthrough: Client<HttpConnector, PrimaryBody>,
    passthrough_h2: Client<HttpConnector, PrimaryBody>,
}

impl Builder {
    fn generation(&self, proxy: &Proxy, state: &ProxyState) -> Generation {
        let args = &proxy.args;
        let upstreams = Upstreams::build(state, args, |registry| {
            AutoMtls::new(
                self.origination.clone(),
                self.auto_mtls,
                registry.clone(),
                state.destination_rules.clone(),
                args.trust_domain.clone(),
            )
        });
        self.mirror.set(upstreams.mirror.clone());
        let bundle = state.bundle();
        let table = match state.route_tables.get(MESH_GATEWAY) {
            Some(t) => RouteTable::clone(t),
            None => RouteTable::build(
                &bundle.virtual_services,
                &TableOptions {
                    gateway: MESH_GATEWAY.to_string(),
                    namespace: args.namespace.clone(),
                    ..TableOptions::default()
                },
            ),
        };
        let policy = OutboundPolicyLayer::new(
            state.outbound_mode,
            KnownHosts::from_service_entries(&bundle.service_entries),
        );
        let inner: UpstreamService = BoxCloneSyncService::new(ByHost {
            upstream: upstream_service(upstreams.primary.clone()),
            registry: upstreams.registry.clone(),
            passthrough: self.passthrough.clone(),
            passthrough_h2: self.passthrough_h2.clone(),
        });
        let route = routed(
            RouteLayer::new(SharedRouteTable::new(table)).unknown_host(UnknownHost::Forward),
            Some((policy, proxy.metrics.clone())),
            &self.mirror_layer,
            inner,
        );
        let tcp_routes = super::outbound_tcp::route_tables(state, &self.tcp_services);
        Generation {
            route,
            l4: L4Forwarder::new(upstreams.primary.clone()),
            tcp_routes,
            _upstreams: upstreams,
        }
    }
}

/// Binds `--outbound` (when given) and serves it, rebuilding its state per generation.
pub(crate) async fn start(
    proxy: &Proxy,
    origination: TlsOrigination,
    mesh: Option<&Credentials>,
) -> Result<(), StartError> {
    let Some(addr) = proxy.args.outbound else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what: "outbound",
            addr,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let mirror = MirrorSlot::default();
    let mirror_layer = mirror.layer();
    proxy
        .metrics
        .register_mirror("outbound", mirror_layer.counters());
    let builder = Builder {
        mirror,
        mirror_layer,
        origination,
        auto_mtls: mesh.is_some(),
        outbound_ip: addr.ip(),
        tcp_services: super::outbound_tcp::tcp_services(&proxy.current(), addr.ip()),
        passthrough: Client::builder(TokioExecutor::new()).build_http(),
        passthrough_h2: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http(),
    };
    let current = Arc::new(ArcSwap::from_pointee(
        builder.generation(proxy, &proxy.current()),
    ));
    let svc = observed(
        proxy,
        Reporter::Source,
        local_workload(proxy, mesh),
        http_service(
            ServiceBuilder::new()
                .layer(HopByHopLayer)
                .service(Current(current.clone())),
        ),
    );
    let (conns, drain) = (proxy.connections("outbound"), proxy.drain);
    proxy.listeners.spawn("outbound", addr, move |ready| {
        ready.set();
        serve_http_per_peer(
            listener,
            move |peer| per_peer(svc.clone(), peer),
            conns,
            drain,
        )
    });
    tracing::info!(%addr, "outbound listener up");
    super::outbound_tcp::start(proxy, addr.ip(), current.clone()).await?;
    tokio::spawn(refresh(proxy.clone(), builder, current));
    Ok(())
}

async fn refresh(proxy: Proxy, builder: Builder, current: Arc<ArcSwap<Generation>>) {
    let mut changes = proxy.changes();
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        let state = proxy.current();
        let wanted = super::outbound_tcp::tcp_services(&state, builder.outbound_ip);
        let unbound: Vec<_> = (wanted.keys())
            .filter(|a| !builder.tcp_services.contains_key(a))
            .collect();
        if !unbound.is_empty() {
            tracing::warn!(addresses = ?unbound, "new outbound TCP ports need a restart to be bound");
        }
        current.store(Arc::new(builder.generation(&proxy, &state)));
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Calls the current generation's stack; the generation lives until the response is there.
#[derive(Clone)]
struct Current(Arc<ArcSwap<Generation>>);

impl Service<Request<RequestBody>> for Current {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let generation = self.0.load_full();
        Box::pin(generation.route.clone().oneshot(req).map(move |resp| {
            drop(generation);
            resp
        }))
    }
}

/// Sends a request no route took to its Host: a registered service through the upstream,
/// anything else (the policy allowed it) straight to the Host as given.
#[derive(Clone)]
struct ByHost {
    upstream: UpstreamService,
    registry: ServiceEntryRegistry,
    passthrough: Client<HttpConnector, PrimaryBody>,
    passthrough_h2: Client<HttpConnector, PrimaryBody>,
}

impl Service<Request<PrimaryBody>> for ByHost {
    type Response = Response<ProxyBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ProxyBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<PrimaryBody>) -> Self::Future {
        let ext = req.extensions();
        if ext.get::<Destination>().is_some() || ext.get::<SelectedDestination>().is_some() {
            return Box::pin(self.upstream.clone().oneshot(req));
        }
        let host = request_host(&req).into_owned();
        let authority = authority(&req);
        let port = authority
            .as_ref()
            .and_then(|a| a.parse::<http::uri::Authority>().ok())
            .and_then(|a| a.port_u16());
        if let Some(entry) = self.registry.service_entry(&host) {
            // A Host without a port means port 80, when the service has it.
            let port = port.or_else(|| entry.ports().iter().any(|p| p.number == 80).then_some(80));
            req.extensions_mut().insert(Destination {
                host,
                subset: None,
                port,
            });
            return Box::pin(self.upstream.clone().oneshot(req));
        }
        // Passthrough (ALLOW_ANY): to the Host as the client gave it.
        let Some(authority) = authority else {
            return Box::pin(async { Err(BoxError::from("request without a host")) });
        };
        // The client's own protocol, as Istio's PassthroughCluster uses the downstream's.
        let http2 = req.version() == http::Version::HTTP_2;
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match Uri::try_from(format!("http://{authority}{pq}")) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return Box::pin(async move { Err(BoxError::from(e)) }),
        }
        if http2 {
            // `:authority` carries the host; a Host beside it would conflict.
            req.headers_mut().remove(http::header::HOST);
        } else {
            *req.version_mut() = http::Version::HTTP_11;
            if let Ok(host) = authority.parse() {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        // A RetryLayer in front takes the extensions back for a retry (the client ignores them).
        mesh_mirror::hand_back(&mut req);
        let client = if http2 {
            &self.passthrough_h2
        } else {
            &self.passthrough
        };
        Box::pin(client.request(req).map_ok(boxed).map_err(BoxError::from))
    }
}

/// The raw authority ([`mesh_routing::request_authority`]), owned.
fn authority<B>(req: &Request<B>) -> Option<String> {
    mesh_routing::request_authority(req).map(str::to_string)
}
