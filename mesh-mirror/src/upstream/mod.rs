//! The upstream: a tower service that turns a chosen destination into an endpoint and sends
//! the request there over a pooled hyper-util client.

mod body;
mod cluster;
mod connector;
mod hash;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{HOST, HeaderValue, SET_COOKIE};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use mesh_routing::Destination;
use rand::rngs::SmallRng;
use tower_service::Service;

use crate::cluster::ClusterEndpoints;
use crate::destination_rule::{H2Upgrade, LbPolicy, SharedDestinationRules};
use crate::endpoint::EndpointAddress;
use crate::locality::ProxyLocation;
use crate::outlier::Outcome;
use crate::pool::PoolPermit;
use crate::registry::ServiceRegistry;
use crate::rng::RngSource;
use crate::weighted::SelectedDestination;
use cluster::{Cluster, UnknownSubset};

pub use body::UpstreamBody;
pub use connector::{ClusterInfo, MakeConnector, PlainConnector};
pub use hash::SourceAddr;

/// Body of the 503 answered when a cluster has no endpoint in service (Envoy's text).
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
/// Body of the 503 answered when the connection pool limits are reached (Envoy's text).
pub const OVERFLOW: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// Why the upstream could not produce a response. Local decisions (no endpoint, overflow)
/// are answered with 503 responses instead, so only these reach the caller as errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The request carries neither a [`SelectedDestination`] nor a
    /// [`Destination`](mesh_routing::Destination) extension: a composition bug.
    #[error("request has no destination; put Weighted or a Destination extension in front")]
    NoDestination,
    /// The endpoint address does not make a valid URI.
    #[error("invalid endpoint address {0}")]
    Address(String),
    /// Connecting or exchanging with the endpoint failed (counted by outlier detection).
    #[error("upstream request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
}

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
/// Requests go out over hyper-util's pooled client (keep-alive; HTTP/2 with prior knowledge
/// when the port is `http2`/`grpc` or `h2UpgradePolicy: UPGRADE`, else HTTP/1.1). The URI is
/// rewritten to the endpoint's address; the `Host` header is kept (set from the original
/// authority when missing).
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

fn local(status: StatusCode, text: &'static str) -> Response<UpstreamBody> {
    let mut resp = Response::new(UpstreamBody::local(text));
    *resp.status_mut() = status;
    resp
}

impl<B, M> Upstream<B, M>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    M: MakeConnector,
{
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
            Box::pin(async { Ok(local(StatusCode::SERVICE_UNAVAILABLE, NO_HEALTHY_UPSTREAM)) })
        };
        let Ok(cluster) = self.cluster(dest) else {
            return no_healthy();
        };
        if cluster.policy.load_balancer.policy == LbPolicy::Passthrough {
            return Box::pin(async {
                Ok(local(
                    StatusCode::SERVICE_UNAVAILABLE,
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
        let address = &endpoints.endpoints()[index].address;
        if let Err(e) = point_at(&mut req, address, endpoints.authority(index)) {
            return Box::pin(async { Err(e) });
        }
        // Nothing below reads the extensions: a RetryLayer in front may have them back.
        crate::retry::hand_back(&mut req);
        let http2 =
            cluster.policy.connection_pool.h2_upgrade == H2Upgrade::Upgrade || protocol.is_http2();
        Box::pin(async move {
            let Ok(permit) = cluster.limits.acquire(http2).await else {
                let mut resp = local(StatusCode::SERVICE_UNAVAILABLE, OVERFLOW);
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
            let client = if http2 {
                &cluster.http2
            } else {
                &cluster.http1
            };
            match client.request(req).await {
                Ok(resp) => {
                    endpoints.record(index, Outcome::Status(resp.status()), Instant::now());
                    let mut resp = resp.map(|body| UpstreamBody::remote(body, inflight));
                    if let Some(cookie) = set_cookie {
                        resp.headers_mut().append(SET_COOKIE, cookie);
                    }
                    Ok(resp)
                }
                Err(e) => {
                    endpoints.record(index, Outcome::Failure, Instant::now());
                    Err(UpstreamError::Request(e))
                }
            }
        })
    }
}

/// Rewrites the request's URI to the endpoint (`authority`, parsed when the endpoints were),
/// keeping the Host header.
fn point_at<B>(
    req: &mut Request<B>,
    address: &EndpointAddress,
    authority: Option<&Authority>,
) -> Result<(), UpstreamError> {
    if !req.headers().contains_key(HOST) {
        if let Some(authority) = req.uri().authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
    }
    let invalid = || UpstreamError::Address(address.to_string());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority.ok_or_else(invalid)?.clone());
    // Cheap clones: both share the bytes of the URI they came from.
    parts.path_and_query = Some(match req.uri().path_and_query() {
        Some(pq) => pq.clone(),
        None => http::uri::PathAndQuery::from_static("/"),
    });
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| invalid())?;
    Ok(())
}
