//! The sidecar inbound listener (`--inbound` in front of `--inbound-target`): mTLS per
//! PeerAuthentication (STRICT refuses plaintext, PERMISSIVE takes both, DISABLE takes
//! plaintext only), the peer's SPIFFE ID into each request, AuthorizationPolicy (403
//! `RBAC: access denied`), then the local app in the protocol `--inbound-protocol` names:
//! HTTP/1.1 (`HTTP`), HTTP/2 (`HTTP2`, `GRPC`, `GRPC-WEB`), or the connection's bytes
//! (`TCP`, authorized per connection with Istio's TCP rules).
//!
//! As an Istio sidecar does, it accepts the ALPN values Envoy sidecars offer
//! (`istio-http/1.1`, `istio-h2`, `istio`, ...), and tells the app who called in
//! `x-forwarded-client-cert` (APPEND_FORWARD: the verified peer's element is appended on mTLS
//! connections; a client-supplied header on a plaintext connection is removed).
//!
//! The workload is `--namespace` with no labels (mesh-proxy has no flag for its own labels),
//! so PeerAuthentication and AuthorizationPolicy `selector`s never select it; namespace-wide
//! and mesh-wide (root namespace `istio-system`) policies apply. `portLevelMtls` and
//! AuthorizationPolicy `ports` are the `--inbound-target` port, the workload's own port as
//! Istio means it. Both are re-read on each configuration generation: the mode per new
//! connection, the policies per request (per connection for TCP).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use mesh_gateway::Tunnels;
use mesh_gateway::filters::{HopByHopLayer, UpstreamErrorLayer};
use mesh_identity::authz::{Authorizer, ConnectionInfo, DENIED_BODY, PolicySet, RequestAttrs};
use mesh_identity::{
    ClientAuth, Credentials, ForwardClientCert, IdMatcher, Inbound, MtlsMode,
    PeerAuthenticationSet, PeerIdentity, PeerIdentityLayer, TrustDomain, accept_inbound,
    client_cert_element,
};
use mesh_mirror::{
    DestinationRules, Endpoint, PortProtocol, SharedDestinationRules, StaticRegistry, Upstream,
};
use mesh_routing::{Destination, LocalReply};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};
use tower_service::Service;

use super::gateway::{local_workload, observed};
use super::metrics::Reporter;
use super::options::InboundProtocol;
use super::registry::ProxyMetrics;
use super::route_stack::{
    BoxError, HttpService, ProxyBody, RequestBody, boxed, boxed_request, http_service,
};
use super::runtime::{Proxy, StartError};
use super::serve::{ConnectionSlot, Connections};
use super::state::ProxyState;
use super::tags::RequestTags;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to the app may take (TCP).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry host of the app's one endpoint.
const APP_HOST: &str = "inbound.app";

/// What the inbound listener reads from each generation.
struct Policy {
    mode: MtlsMode,
    authorizer: Authorizer,
}

fn policy(proxy: &Proxy, state: &ProxyState, port: u16) -> Policy {
    let ns = &proxy.args.namespace;
    let labels = BTreeMap::new();
    let mode = PeerAuthenticationSet::new(state.bundle().peer_authentications.clone())
        .mode_for(ns, &labels, port);
    let mut authorizer =
        PolicySet::new(state.bundle().authorization_policies.clone()).for_workload(ns, &labels);
    if let Some(aliases) = state.mesh_config.as_ref().map(|m| &m.trust_domain_aliases) {
        let local: Result<TrustDomain, _> = proxy.args.trust_domain.parse();
        let aliases: Vec<TrustDomain> = aliases.iter().filter_map(|a| a.parse().ok()).collect();
        if let Ok(local) = local {
            authorizer = authorizer.with_trust_domain_aliases(local, aliases);
        }
    }
    Policy { mode, authorizer }
}

/// Binds `--inbound` (when given) and serves it.
pub(crate) async fn start(
    proxy: &Proxy,
    credentials: Option<&Credentials>,
) -> Result<(), StartError> {
    let (Some(addr), Some(target)) = (proxy.args.inbound, proxy.args.inbound_target) else {
        return Ok(());
    };
    let Some(credentials) = credentials.filter(|_| !proxy.args.trust_bundles.is_empty()) else {
        return Err(StartError::Identity(
            "--inbound needs --cert, --key and --trust-bundle".into(),
        ));
    };
    let acceptor = |auth| {
        let mut config = credentials
            .server_config(auth)
            .map_err(|e| StartError::Identity(format!("inbound TLS: {e}")))?;
        config.alpn_protocols = mesh_identity::alpn_protocols(mesh_identity::ISTIO_SERVER_ALPN);
        Ok::<_, StartError>(TlsAcceptor::from(Arc::new(config)))
    };
    let strict = acceptor(ClientAuth::Required(IdMatcher::Any))?;
    let permissive = acceptor(ClientAuth::Optional(IdMatcher::Any))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what: "inbound",
            addr,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let current = Arc::new(ArcSwap::from_pointee(policy(
        proxy,
        &proxy.current(),
        target.port(),
    )));
    tokio::spawn(refresh(proxy.clone(), current.clone(), target.port()));
    let protocol = proxy.args.inbound_protocol;
    let app = http_service(
        ServiceBuilder::new()
            .layer(HopByHopLayer)
            .layer(AuthorizeLayer {
                current: current.clone(),
                metrics: proxy.metrics.clone(),
            })
            .map_response(boxed)
            .layer(UpstreamErrorLayer)
            .service(app_upstream(target, protocol)),
    );
    let svc = observed(
        proxy,
        Reporter::Destination,
        local_workload(proxy, Some(credentials)),
        app,
    );
    let server = Server {
        listener,
        local: SocketAddr::new(addr.ip(), target.port()),
        target,
        protocol,
        strict,
        permissive,
        current,
        svc,
        credentials: credentials.clone(),
        metrics: proxy.metrics.clone(),
        tunnels: proxy.tunnels.clone(),
    };
    let (conns, drain) = (proxy.connections("inbound"), proxy.drain);
    proxy.listeners.spawn("inbound", addr, move |ready| {
        ready.set();
        server.serve(conns, drain)
    });
    tracing::info!(%addr, %target, ?protocol, "inbound listener up");
    Ok(())
}

/// The app as mesh-mirror's upstream: one endpoint, spoken to in the port's protocol (pooled
/// connections, any client version translated, upgrades passed).
fn app_upstream(
    target: SocketAddr,
    protocol: InboundProtocol,
) -> impl Service<
    Request<RequestBody>,
    Response = Response<ProxyBody>,
    Error = BoxError,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let registry = StaticRegistry::new();
    let port_protocol = match protocol {
        InboundProtocol::Http | InboundProtocol::Tcp => PortProtocol::Http1,
        InboundProtocol::Http2 => PortProtocol::Http2,
        InboundProtocol::Grpc => PortProtocol::Grpc,
        InboundProtocol::GrpcWeb => PortProtocol::GrpcWeb,
    };
    registry.set_with_protocol(
        APP_HOST,
        target.port(),
        port_protocol,
        vec![Endpoint::new(target)],
    );
    let upstream: Upstream<RequestBody> = Upstream::new(
        SharedDestinationRules::new(DestinationRules::new(Vec::new())),
        Arc::new(registry),
    );
    let destination = Destination {
        host: APP_HOST.to_string(),
        subset: None,
        port: Some(target.port()),
    };
    upstream
        .map_request(move |mut req: Request<RequestBody>| {
            req.extensions_mut().insert(destination.clone());
            req
        })
        .map_response(boxed)
        .map_err(BoxError::from)
}

async fn refresh(proxy: Proxy, current: Arc<ArcSwap<Policy>>, port: u16) {
    let mut changes = proxy.changes();
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        current.store(Arc::new(policy(&proxy, &proxy.current(), port)));
    }
}

struct Server {
    listener: TcpListener,
    /// The address requests are for: the listener's IP and the app's port.
    local: SocketAddr,
    target: SocketAddr,
    protocol: InboundProtocol,
    strict: TlsAcceptor,
    permissive: TlsAcceptor,
    current: Arc<ArcSwap<Policy>>,
    svc: HttpService,
    credentials: Credentials,
    metrics: ProxyMetrics,
    tunnels: Tunnels,
}

/// What one accepted connection needs.
#[derive(Clone)]
struct Conn {
    local: SocketAddr,
    target: SocketAddr,
    current: Arc<ArcSwap<Policy>>,
    svc: HttpService,
    credentials: Credentials,
    metrics: ProxyMetrics,
    tunnels: Tunnels,
}

impl Server {
    /// Accepts until shutdown, then drains as `serve_http` does.
    async fn serve(self, conns: Connections, drain: Duration) {
        let conn = Conn {
            local: self.local,
            target: self.target,
            current: self.current.clone(),
            svc: self.svc.clone(),
            credentials: self.credentials.clone(),
            metrics: self.metrics.clone(),
            tunnels: self.tunnels.clone(),
        };
        while let Some((tcp, peer, slot)) = conns.accept(&self.listener).await {
            let mode = self.current.load().mode;
            let acceptor = match mode {
                MtlsMode::Strict => self.strict.clone(),
                _ => self.permissive.clone(),
            };
            let (conn, conns, tcp_mode) = (
                conn.clone(),
                conns.clone(),
                self.protocol == InboundProtocol::Tcp,
            );
            tokio::spawn(async move {
                let accepted =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_inbound(tcp, &acceptor, mode))
                        .await;
                let inbound = match accepted {
                    Ok(Ok(inbound)) => inbound,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, ?mode, "inbound connection refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "inbound TLS handshake timed out");
                        return;
                    }
                };
                if tcp_mode {
                    conn.tcp(inbound, peer).await;
                    drop(slot);
                } else {
                    conn.http(inbound, peer, &conns, slot).await;
                }
            });
        }
        drop(self.listener);
        conns.drain(drain).await;
    }
}

impl Conn {
    fn info(&self, peer: SocketAddr, sni: Option<String>) -> ConnectionInfo {
        ConnectionInfo {
            remote: peer,
            local: self.local,
            original_client: None,
            sni,
        }
    }

    async fn http(
        self,
        inbound: Inbound,
        peer: SocketAddr,
        conns: &Connections,
        slot: ConnectionSlot,
    ) {
        match inbound {
            Inbound::Tls(tls, identity) => {
                let session = &tls.get_ref().1;
                let sni = session.server_name().map(str::to_string);
                let xfcc = identity.as_ref().and_then(|_| {
                    let leaf = session.peer_certificates()?.first()?;
                    let element = client_cert_element(Some(self.credentials.svid().id()), leaf)?;
                    HeaderValue::from_str(&element).ok()
                });
                let svc = connection(self.svc.clone(), identity, self.info(peer, sni), xfcc);
                conns.serve(slot, tls, svc, peer).await;
            }
            Inbound::Plaintext(tcp) => {
                let svc = connection(self.svc.clone(), None, self.info(peer, None), None);
                conns.serve(slot, tcp, svc, peer).await;
            }
        }
    }

    /// `--inbound-protocol TCP`: authorize the connection, then copy its bytes to the app.
    async fn tcp(self, inbound: Inbound, peer: SocketAddr) {
        let (principal, sni) = match &inbound {
            Inbound::Tls(tls, identity) => (
                identity.as_ref().map(|PeerIdentity(id)| id.clone()),
                tls.get_ref().1.server_name().map(str::to_string),
            ),
            Inbound::Plaintext(_) => (None, None),
        };
        let attrs = RequestAttrs::for_connection(&self.info(peer, sni), principal);
        let decision = self.current.load().authorizer.evaluate(&attrs);
        if !decision.is_allowed() {
            tracing::debug!(%peer, ?decision, "inbound TCP connection denied");
            self.metrics.record_denial("authorization");
            return;
        }
        let app = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.target)).await
        {
            Ok(Ok(app)) => app,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connecting to the app"),
            Err(_) => return tracing::debug!(%peer, "connecting to the app timed out"),
        };
        let _ = app.set_nodelay(true);
        let result = match inbound {
            Inbound::Tls(tls, _) => self.tunnels.run(tls, app).await,
            Inbound::Plaintext(tcp) => self.tunnels.run(tcp, app).await,
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "inbound TCP connection ended");
        }
    }
}

/// The per-connection service: the connection's facts and the peer's identity in each
/// request (a client cannot smuggle in either), `x-forwarded-client-cert` as Istio's sidecar
/// sets it (the verified peer's element appended; removed on plaintext), the body boxed.
fn connection(
    svc: HttpService,
    identity: Option<PeerIdentity>,
    info: ConnectionInfo,
    xfcc: Option<HeaderValue>,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let svc = svc.map_request(move |mut req: Request<RequestBody>| {
        req.extensions_mut().insert(info.clone());
        ForwardClientCert::AppendForward.apply(req.headers_mut(), xfcc.as_ref());
        req
    });
    PeerIdentityLayer::new(identity)
        .layer(svc)
        .map_request(boxed_request::<Incoming>)
}

/// Enforces the current generation's AuthorizationPolicies: a denied request gets 403
/// `RBAC: access denied` (flag `RBAC`; gRPC callers get PERMISSION_DENIED) and is counted in
/// `mesh_policy_denials_total{policy="authorization"}`. (mesh-identity's `AuthorizationLayer`
/// gives no hook to count its denials, so this calls its `Authorizer` directly.) Readiness:
/// the inner service's.
#[derive(Clone)]
struct AuthorizeLayer {
    current: Arc<ArcSwap<Policy>>,
    metrics: ProxyMetrics,
}

impl<S> tower_layer::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Authorize<S> {
    inner: S,
    layer: AuthorizeLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<RequestBody>> for Authorize<S>
where
    S: Service<Request<RequestBody>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        if let (Some(tags), Some(PeerIdentity(id))) = (
            req.extensions().get::<RequestTags>(),
            req.extensions().get::<PeerIdentity>(),
        ) {
            tags.update(|t| t.peer_principal = Some(id.to_string()));
        }
        let attrs = RequestAttrs::from_request(&req);
        let decision = self.layer.current.load().authorizer.evaluate(&attrs);
        if decision.is_allowed() {
            return Box::pin(self.inner.call(req));
        }
        tracing::debug!(?decision, path = %attrs.path, "request denied");
        self.layer.metrics.record_denial("authorization");
        let resp = boxed(LocalReply::new("RBAC", DENIED_BODY).response(StatusCode::FORBIDDEN));
        Box::pin(async { Ok(resp) })
    }
}
