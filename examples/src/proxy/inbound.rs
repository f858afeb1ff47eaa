//! The sidecar inbound listener (`--inbound` in front of `--inbound-target`): mTLS per
//! PeerAuthentication (STRICT refuses plaintext, PERMISSIVE takes both, DISABLE takes
//! plaintext only), the peer's SPIFFE ID into each request, AuthorizationPolicy (403
//! `RBAC: access denied`), then the local app over a pooled plain HTTP client.
//!
//! The workload is `--namespace` with no labels (mesh-proxy has no flag for its own labels),
//! so PeerAuthentication and AuthorizationPolicy `selector`s never select it; namespace-wide
//! and mesh-wide (root namespace `istio-system`) policies apply. `portLevelMtls` is looked
//! up with the `--inbound-target` port, the workload's own port as Istio means it. Both are
//! re-read on each configuration generation: the mode per new connection, the policies per
//! request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::TryFutureExt as _;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mesh_gateway::filters::{HopByHopLayer, UpstreamErrorLayer};
use mesh_identity::authz::{Authorizer, ConnectionInfo, DENIED_BODY, PolicySet, RequestAttrs};
use mesh_identity::{
    ClientAuth, Credentials, IdMatcher, Inbound, MtlsMode, PeerAuthenticationSet, PeerIdentity,
    PeerIdentityLayer, TrustDomain, accept_inbound,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};
use tower_service::Service;

use super::gateway::{local_workload, observed};
use super::metrics::Reporter;
use super::registry::ProxyMetrics;
use super::route_stack::{
    BoxError, HttpService, ProxyBody, RequestBody, boxed, boxed_request, http_service,
};
use super::runtime::{Proxy, StartError};
use super::state::ProxyState;
use super::tags::RequestTags;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
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
    let forward = Forward {
        target,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let app = http_service(
        ServiceBuilder::new()
            .layer(HopByHopLayer)
            .layer(AuthorizeLayer {
                current: current.clone(),
                metrics: proxy.metrics.clone(),
            })
            .map_response(boxed)
            .layer(UpstreamErrorLayer)
            .service(forward),
    );
    let svc = observed(
        proxy,
        Reporter::Destination,
        local_workload(proxy, Some(credentials)),
        app,
    );
    let server = Server {
        listener,
        local: addr,
        strict,
        permissive,
        current,
        svc,
    };
    let (shutdown, drain) = (proxy.shutdown.clone(), proxy.drain);
    proxy.listeners.spawn("inbound", addr, move |ready| {
        ready.set();
        server.serve(shutdown, drain)
    });
    tracing::info!(%addr, %target, "inbound listener up");
    Ok(())
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
    local: SocketAddr,
    strict: TlsAcceptor,
    permissive: TlsAcceptor,
    current: Arc<ArcSwap<Policy>>,
    svc: HttpService,
}

impl Server {
    /// Accepts until shutdown, then drains as `serve_http` does.
    async fn serve(self, mut shutdown: super::serve::Shutdown, drain: Duration) {
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => break,
            };
            let _ = tcp.set_nodelay(true);
            let mode = self.current.load().mode;
            let acceptor = match mode {
                MtlsMode::Strict => self.strict.clone(),
                _ => self.permissive.clone(),
            };
            let (svc, local, watcher) = (self.svc.clone(), self.local, graceful.watcher());
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
                let builder = auto::Builder::new(TokioExecutor::new());
                let info = |sni| ConnectionInfo {
                    remote: peer,
                    local,
                    original_client: None,
                    sni,
                };
                let result = match inbound {
                    Inbound::Tls(tls, identity) => {
                        let sni = tls.get_ref().1.server_name().map(str::to_string);
                        let svc = connection(svc, identity, info(sni));
                        let conn = builder
                            .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                            .into_owned();
                        watcher.watch(conn).await
                    }
                    Inbound::Plaintext(tcp) => {
                        let svc = connection(svc, None, info(None));
                        let conn = builder
                            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
                            .into_owned();
                        watcher.watch(conn).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "inbound connection ended with an error");
                }
            });
        }
        drop(self.listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(?drain, "drain time over; closing the remaining connections");
        }
    }
}

/// The per-connection service: the connection's facts and the peer's identity in each
/// request (a client cannot smuggle in either), the body boxed.
fn connection(
    svc: HttpService,
    identity: Option<PeerIdentity>,
    info: ConnectionInfo,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let svc = svc.map_request(move |mut req: Request<RequestBody>| {
        req.extensions_mut().insert(info.clone());
        req
    });
    PeerIdentityLayer::new(identity)
        .layer(svc)
        .map_request(boxed_request::<Incoming>)
}

/// Enforces the current generation's AuthorizationPolicies: a denied request gets 403
/// `RBAC: access denied` and is counted in `mesh_policy_denials_total{policy="authorization"}`.
/// (mesh-identity's `AuthorizationLayer` gives no hook to count its denials, so this calls
/// its `Authorizer` directly.) Readiness: the inner service's.
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
        let mut resp = boxed(Response::new(Full::new(Bytes::from_static(
            DENIED_BODY.as_bytes(),
        ))));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Box::pin(async { Ok(resp) })
    }
}

/// The local app: a pooled plain HTTP client to `--inbound-target`, Host kept.
#[derive(Clone)]
struct Forward {
    target: SocketAddr,
    client: Client<HttpConnector, RequestBody>,
}

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ProxyBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RequestBody>) -> Self::Future {
        // The client speaks HTTP/1.1 here whatever the downstream used (h2 over TLS).
        *req.version_mut() = http::Version::HTTP_11;
        // An h2 request carries its host in the URI only; keep it as the Host header.
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(host) = (req.uri().authority()).and_then(|a| a.as_str().parse().ok()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match Uri::try_from(format!("http://{}{pq}", self.target)) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return Box::pin(async move { Err(BoxError::from(e)) }),
        }
        Box::pin(
            self.client
                .request(req)
                .map_ok(|r| r.map(|b| b.map_err(BoxError::from).boxed_unsync()))
                .map_err(BoxError::from),
        )
    }
}
