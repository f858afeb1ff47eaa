//! The upstream: a tower service that turns a chosen destination into an endpoint and sends
//! the request there over a pooled connection in the cluster's protocol.

mod body;
mod client;
mod cluster;
mod connection;
mod connector;
mod error;
mod hash;
mod protocol;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use mesh_routing::Destination;
use rand::rngs::SmallRng;
use tower_service::Service;

use crate::cluster::ClusterEndpoints;
use crate::destination_rule::{LbPolicy, SharedDestinationRules};
use crate::locality::ProxyLocation;
use crate::outlier::Outcome;
use crate::pool::PoolPermit;
use crate::registry::ServiceRegistry;
use crate::rng::RngSource;
use crate::weighted::SelectedDestination;
use cluster::{Cluster, UnknownSubset};
use protocol::Wire;

pub use body::UpstreamBody;
pub use connection::{ConnectorIo, UpstreamConnection};
pub use connector::{ClusterInfo, MakeConnector, PlainConnector};
pub use error::UpstreamError;
pub use hash::SourceAddr;

/// How long the tunnel of an upgraded connection (WebSocket) to this response's cluster may
/// stay without a byte either way: its DestinationRule's `connectionPool.tcp.idleTimeout`
/// (zero: never closed for it). [`Upstream`] puts it into the extensions of `101` responses
/// (and of the `200` it makes of one for an HTTP/2 extended CONNECT), next to hyper's
/// `OnUpgrade`, for whatever joins the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelIdleTimeout(pub std::time::Duration);

/// Body of the 503 answered when a cluster has no endpoint in service (Envoy's text).
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
/// Body of the 503 answered when the connection pool limits are reached (Envoy's text).
pub const OVERFLOW: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// Sends each request to an endpoint of its destination, as an Envoy cluster does.
///
/// Per request: the destination comes from the request's extensions
/// ([`SelectedDestination`], as [`Weighted`](crate::Weighted) inserts it, or a plain
/// [`Destination`]); the [`DestinationRules`](crate::DestinationRules) give the subset's
/// labels and the effective [`ClusterPolicy`](crate::ClusterPolicy); the [`ServiceRegistry`]
/// gives the current endpoints (re-read every request, state rebuilt only when its version
/// changes); the cluster's balancer picks an endpoint among those in service; the pool limits
/// admit the request or answer 503 at once; the response status (or failure) feeds outlier
/// detection.
///
/// An unknown host, an unknown subset, a subset without endpoints or a cluster whose
/// endpoints are all ejected answer 503 `no healthy upstream`.
///
/// Once an endpoint is chosen the request's extensions are no longer needed: they are handed
/// back to a [`RetryLayer`](crate::RetryLayer) in front through its
/// [`ExtensionsSlot`](crate::ExtensionsSlot) ([`hand_back`](crate::hand_back)), so a retry can
/// reuse them instead of the layer copying them before every first try.
///
/// # Readiness contract
/// The choice depends on the request (its destination and hash key), so it is made in
/// `call`: `poll_ready` is always `Ready(Ok)` and reserves nothing; back-pressure is the pool
/// limits' 503, never an unbounded queue. Clones share clusters, pools and outlier state;
/// each clone draws its own random stream.
///
/// # Protocols
/// Requests go out over the cluster's pooled connections to the chosen endpoint's address,
/// in the protocol Istio would pick whatever the client spoke: HTTP/2 (prior knowledge, or by
/// ALPN over TLS) for `http2`/`grpc`/`grpc-web` ports or `h2UpgradePolicy: UPGRADE`, the
/// client's own with `useClientProtocol`, else HTTP/1.1. The request keeps its authority
/// (`Host` on HTTP/1.1, `:authority` on HTTP/2, never the endpoint's address); HTTP/2 gets
/// none of the connection-specific headers it forbids, and `te: trailers` and trailers pass
/// both ways. HTTP/1.1 upgrades (WebSocket) always go over HTTP/1.1; an RFC 8441 extended
/// CONNECT from an HTTP/2 client is sent as one (`Upgrade`, and a `Sec-WebSocket-Key` for
/// WebSocket) and its `101` answered as `200`. The upstream's upgraded connection is left in
/// the response's extensions (hyper's `OnUpgrade`) for the listener to join with the
/// client's.
///
/// # Failures
/// An exchange that produces no response fails with an [`UpstreamError`] that says how
/// (connect failure, reset before or after the request was written, refused stream, or a
/// local failure such as the client's body ending in an error), for retries and the local
/// reply. Only the endpoint's own failures count for outlier detection.
pub struct Upstream<B, M: MakeConnector = PlainConnector> {
    shared: Arc<Shared<B, M>>,
    rng: SmallRng,
    rng_source: RngSource,
}

struct Shared<B, M: MakeConnector> {
    rules: SharedDestinationRules,
    registry: Arc<dyn ServiceRegistry>,
    make: M,
    proxy: ArcSwap<ProxyLocation>,
    clusters: Clusters<B, M::Connector>,
}

type Clusters<B, C> = Mutex<HashMap<Destination, Arc<Cluster<B, C>>>>;

/// What an admitted request holds until its response body ends: its pool slot and its
/// in-flight count on the endpoint.
#[derive(Debug)]
pub(crate) struct Inflight {
    endpoints: Arc<ClusterEndpoints>,
    index: usize,
    _permit: PoolPermit,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.endpoints.finish(self.index);
    }
}

impl<B, M: MakeConnector> Clone for Upstream<B, M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rng: self.rng_source.stream(),
            rng_source: self.rng_source.clone(),
        }
    }
}

impl<B, M: MakeConnector> std::fmt::Debug for Upstream<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("proxy", &self.shared.proxy.load())
            .finish_non_exhaustive()
    }
}

impl<B> Upstream<B, PlainConnector> {
    /// An upstream over plain TCP.
    pub fn new(rules: SharedDestinationRules, registry: Arc<dyn ServiceRegistry>) -> Self {
        Self::with_connector(rules, registry, PlainConnector)
    }
}

impl<B, M: MakeConnector> Upstream<B, M> {
    /// An upstream whose clusters connect with connectors from `make` (TLS origination).
    pub fn with_connector(
        rules: SharedDestinationRules,
        registry: Arc<dyn ServiceRegistry>,
        make: M,
    ) -> Self {
        let rng_source = RngSource::from_entropy();
        Self {
            shared: Arc::new(Shared {
                rules,
                registry,
                make,
                proxy: ArcSwap::from_pointee(ProxyLocation::default()),
                clusters: Mutex::new(HashMap::new()),
            }),
            rng: rng_source.stream(),
            rng_source,
        }
    }

    /// Where this proxy runs, for locality-aware balancing (builder style).
    pub fn with_proxy_location(self, proxy: ProxyLocation) -> Self {
        self.set_proxy_location(proxy);
        self
    }

    /// Changes where this proxy runs, for this upstream and every clone of it; clusters are
    /// rebuilt (and their outlier state reset) on their next request.
    pub fn set_proxy_location(&self, proxy: ProxyLocation) {
        self.shared.proxy.store(Arc::new(proxy));
        self.shared
            .clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Draws random numbers from `source` (deterministic tests).
    pub fn with_rng(mut self, source: &RngSource) -> Self {
        self.rng = source.stream();
        self.rng_source = source.clone();
        self
    }
}

/// A local reply, marked with its Envoy response flag.
fn local(status: StatusCode, flag: &'static str, text: &'static str) -> Response<UpstreamBody> {
    let mut resp = Response::new(UpstreamBody::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    mesh_routing::LocalReply::new(flag, text).mark(resp)
}

impl<B, M: MakeConnector> Upstream<B, M> {
    fn cluster(&self, dest: &Destination) -> Result<Arc<Cluster<B, M::Connector>>, UnknownSubset> {
        let rules = self.shared.rules.current();
        let mut clusters = self
            .shared
            .clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match clusters.get(dest) {
            Some(c) if Arc::ptr_eq(&c.rules, &rules) => return Ok(c.clone()),
            // The rules were reloaded: forget every cluster built from older ones, so
            // destinations that are gone do not stay cached.
            Some(_) => clusters.retain(|_, c| Arc::ptr_eq(&c.rules, &rules)),
            None => {}
        }
        let cluster = Arc::new(Cluster::build(dest, rules, &self.shared.make)?);
        clusters.insert(dest.clone(), cluster.clone());
        Ok(cluster)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<B, M> Service<Request<B>> for Upstream<B, M>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    M: MakeConnector,
{
    type Response = Response<UpstreamBody>;
    type Error = UpstreamError;
    type Future = BoxFuture<Result<Response<UpstreamBody>, UpstreamError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ext = req.extensions();
        let dest = match ext.get::<SelectedDestination>() {
            Some(s) => &s.destination.destination,
            None => match ext.get::<Destination>() {
                Some(d) => d,
                None => return Box::pin(async { Err(UpstreamError::NoDestination) }),
            },
        };
        let no_healthy = || -> Self::Future {
            Box::pin(async {
                Ok(local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UH",
                    NO_HEALTHY_UPSTREAM,
                ))
            })
        };
        let Ok(cluster) = self.cluster(dest) else {
            return no_healthy();
        };
        if cluster.policy.load_balancer.policy == LbPolicy::Passthrough {
            return Box::pin(async {
                Ok(local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "",
                    "PASSTHROUGH load balancing is not supported",
                ))
            });
        }
        let Some(snapshot) = self.shared.registry.endpoints(&dest.host, dest.port) else {
            return no_healthy();
        };
        let (protocol, endpoints) = cluster.endpoints(snapshot, &self.shared.proxy.load());
        let (hash, set_cookie) = match &cluster.policy.load_balancer.policy {
            LbPolicy::ConsistentHash(ch) => match hash::request_hash(&ch.key, &req) {
                Some(h) => (Some(h), None),
                None => match hash::generated_cookie(&ch.key, &req, &mut self.rng) {
                    Some((h, cookie)) => (Some(h), Some(cookie)),
                    None => (None, None),
                },
            },
            _ => (None, None),
        };
        let Some(index) = endpoints.pick(&mut self.rng, hash, Instant::now()) else {
            return no_healthy();
        };
        let Some(target) = endpoints.authority(index).cloned() else {
            let address = endpoints.endpoints()[index].address.to_string();
            return Box::pin(async { Err(UpstreamError::Address(address)) });
        };
        let translated = protocol::extended_connect_to_upgrade(&mut req);
        let upgrade = translated || protocol::is_upgrade(&req);
        let wire = cluster.wire(protocol, req.version());
        // Nothing below reads the extensions: a RetryLayer in front may have them back.
        crate::retry::hand_back(&mut req);
        Box::pin(async move {
            let Ok(permit) = cluster
                .limits
                .acquire(wire == Wire::Http2 && !upgrade)
                .await
            else {
                let mut resp = local(StatusCode::SERVICE_UNAVAILABLE, "UO", OVERFLOW);
                resp.headers_mut()
                    .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
                return Ok(resp);
            };
            endpoints.start(index);
            let inflight = Inflight {
                endpoints: endpoints.clone(),
                index,
                _permit: permit,
            };
            match cluster.pool.send(&target, wire, upgrade, req).await {
                Ok((resp, checkin)) => {
                    endpoints.record(index, Outcome::Status(resp.status()), Instant::now());
                    let mut resp = resp.map(|body| UpstreamBody::remote(body, inflight, checkin));
                    *resp.version_mut() = Version::HTTP_11;
                    if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        let idle = cluster.policy.connection_pool.tcp_idle_timeout;
                        resp.extensions_mut().insert(TunnelIdleTimeout(idle));
                    }
                    if translated {
                        protocol::upgrade_response_to_connect(&mut resp);
                    }
                    if let Some(cookie) = set_cookie {
                        resp.headers_mut().append(SET_COOKIE, cookie);
                    }
                    Ok(resp)
                }
                Err(e) => {
                    if e.counts_against_endpoint() {
                        endpoints.record(index, Outcome::Failure, Instant::now());
                    }
                    Err(e)
                }
            }
        })
    }
}
