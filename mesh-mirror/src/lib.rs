//! Weighted dispatch, traffic mirroring, retries and timeouts as tower layers: the part of
//! Istio's route actions that decides where a request goes once a route matched; and
//! DestinationRule subsets, endpoint load balancing and upstream resilience: how it gets
//! there.
//!
//! - [`Weighted`]: canary and blue-green splits by integer weight, random (Envoy) or smooth
//!   round-robin (nginx), with tower's readiness contract for request-independent choice.
//! - [`MirrorLayer`]: fire-and-forget copies of sampled requests, with bounded bodies, a cap
//!   on copies in flight, a per-copy timeout and [`MirrorCounters`].
//! - [`RetryLayer`] and [`RouteTimeoutLayer`]: the route's `retries` (on tower's `Retry`, with
//!   a bounded replayable body; what the last try returned once the attempts ran out is
//!   marked for Envoy's `URX` flag, [`RetryLimitReached`]) and `timeout` (504 on expiry).
//!
//! # Composition
//! The layers read the route the routing layer matched from the request's extensions
//! ([`MatchedRoute`](mesh_routing::MatchedRoute)), so a proxy stacks them in this order:
//!
//! ```text
//! RouteLayer                          mesh-routing: picks the route, answers redirects etc.
//!  └ RouteTimeoutLayer::from_route()  `timeout`: 504 when the whole exchange takes too long
//!     └ MirrorLayer::from_route(..)   `mirror(s)`: one fire-and-forget copy per request
//!        └ Weighted::from_destinations(route.destinations(), ..)   `route[].weight`
//!           └ RetryLayer::from_route() per destination   `retries`: tries stay on it
//!              └ the destination's client
//! ```
//!
//! A [`Weighted`] belongs to one route (its choice is request-independent, made in
//! `poll_ready`); keeping one per route and dispatching to it by the matched route is the
//! composing proxy's job. `tests/stack.rs` builds this whole stack from a VirtualService.
//!
//! # Subsets, load balancing and the upstream
//! A route destination names a host, a subset and a port; [`Upstream`] turns that into an
//! endpoint and a pooled connection, as an Envoy cluster does:
//!
//! - [`DestinationRule`] (model in [`destination_rule_model`], validated by
//!   [`DestinationRule::compile`], errors with field paths) gives subsets by labels and a
//!   [`ClusterPolicy`] per (subset, port): subset and `portLevelSettings` overrides applied,
//!   Istio's defaults filled in. [`SharedDestinationRules`] swaps a whole set atomically.
//! - [`ServiceRegistry`] is where endpoints come from (the gateway's ServiceEntry registry,
//!   or the embedding application); [`StaticRegistry`] is an in-memory one. Snapshots carry a
//!   version, so changes are seen on the next request and derived state is rebuilt only then.
//! - [`lb`] holds the pure balancers: weighted round robin, weighted random, least request
//!   (power of two choices, the default), ring hash and maglev over xxHash64 keys taken from a
//!   header, cookie, query parameter or [`SourceAddr`]. [`ClusterEndpoints`] adds locality
//!   priorities ([`priorities`], [`distribute_weights`]) and [`OutlierDetector`] ejections.
//! - [`PoolLimits`] enforces `connectionPool` (overflow: 503 at once, never an unbounded
//!   queue); connections are the cluster's own pool on hyper's connection API (HTTP/1.1 per
//!   endpoint, one shared HTTP/2 connection per endpoint), in the protocol Istio picks
//!   (HTTP/2 for `http2`/`grpc`/`grpc-web` ports or `h2UpgradePolicy: UPGRADE`, the
//!   client's with `useClientProtocol`), the request keeping its own authority.
//! - TLS settings ([`ClientTls`]) are carried as data; TLS origination is a [`MakeConnector`]
//!   that the gateway or identity crate supplies.
//!
//! Carried but not enforced: `maxRetries` (retries run in [`RetryLayer`], which has no
//! cluster-wide budget yet). `maxConnections` is enforced as a cap on HTTP/1.1 requests in
//! flight (and TCP connections), which bounds the connections the pool needs;
//! `maxRequestsPerConnection` closes a connection after that many requests.
//! A request without its hash key is balanced at random, except that a missing `httpCookie`
//! with a `ttl` is generated as Envoy does (`Set-Cookie` on the response), so the client
//! sticks from its next request on.
//!
//! ```
//! use std::time::Instant;
//! use mesh_mirror::{ClusterEndpoints, DestinationRule, Endpoint, ProxyLocation, RngSource};
//!
//! let rule = DestinationRule::from_yaml(r#"
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews, namespace: bookinfo}
//! spec:
//!   host: reviews
//!   trafficPolicy:
//!     loadBalancer: {consistentHash: {httpHeaderName: x-user}}
//!   subsets:
//!   - name: v2
//!     labels: {version: v2}
//!     trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
//! "#).unwrap();
//! assert_eq!(rule.host(), "reviews.bookinfo.svc.cluster.local");
//!
//! // What a registry reports for the host: three endpoints, two of them v2.
//! let all: Vec<Endpoint> = (1..=3)
//!     .map(|i| Endpoint::new(([10, 0, 0, i], 9080).into())
//!         .label("version", if i == 1 { "v1" } else { "v2" }))
//!     .collect();
//! let subset = rule.subset("v2").unwrap();
//! let members: Vec<Endpoint> = all.into_iter().filter(|e| e.matches(&subset.labels)).collect();
//! let policy = rule.cluster_policy(Some("v2"), Some(9080)).unwrap();
//! let cluster = ClusterEndpoints::new(&policy, &ProxyLocation::default(), members, Instant::now());
//!
//! let mut rng = RngSource::seeded(1).stream();
//! let picks: Vec<String> = (0..4)
//!     .map(|_| cluster.pick(&mut rng, None, Instant::now()).unwrap())
//!     .map(|i| cluster.endpoints()[i].address.to_string())
//!     .collect();
//! assert_eq!(picks, ["10.0.0.2:9080", "10.0.0.3:9080", "10.0.0.2:9080", "10.0.0.3:9080"]);
//! ```
//!
//! Over sockets, [`Upstream`] does all of this per request, reading the destination that
//! [`Weighted`] (or the application) put into the request's extensions:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use mesh_mirror::{DestinationRules, SharedDestinationRules, StaticRegistry, Upstream};
//! # fn rules() -> Vec<mesh_mirror::DestinationRule> { Vec::new() }
//! let registry = StaticRegistry::new();
//! let upstream: Upstream<Full<Bytes>> = Upstream::new(
//!     SharedDestinationRules::new(DestinationRules::new(rules())),
//!     Arc::new(registry.clone()),
//! );
//! // registry.set(host, port, endpoints) at any time; `upstream` sees it on the next request.
//! ```
//!
//! # Dependency on `mesh-routing`
//! This crate depends on `mesh-routing` for the route-action types it executes
//! ([`WeightedDestinations`](mesh_routing::WeightedDestinations),
//! [`Mirror`](mesh_routing::Mirror), [`RetryPolicy`](mesh_routing::RetryPolicy),
//! [`MatchedRoute`](mesh_routing::MatchedRoute), [`Destination`](mesh_routing::Destination))
//! and for the config plumbing DestinationRule shares with VirtualService (document
//! envelopes, the field-path [`Collector`](mesh_routing::Collector), host qualification,
//! Go-style durations): they are the one definition of what the Istio YAML asks for. The edge
//! is one-way; `mesh-routing` knows nothing of this crate.
//!
//! # Example
//! A 90/10 canary split whose requests are also mirrored to a shadow deployment:
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt as _, Full};
//! use mesh_mirror::{MirrorBody, MirrorLayer, MirrorTarget, Mode, TeeBody, Weighted};
//! use tower::{Layer as _, ServiceExt as _, service_fn};
//!
//! type Primary = http::Request<TeeBody<Full<Bytes>>>;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let version = |v: &'static str| service_fn(move |req: Primary| async move {
//!     let _body = req.into_body().collect().await;
//!     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(v))))
//! });
//! let shadow = service_fn(|req: http::Request<MirrorBody>| async move {
//!     let body = req.into_body().collect().await;
//!     assert_eq!(body.unwrap().to_bytes(), "hi");
//!     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
//! });
//! let split = Weighted::new(vec![(version("v1"), 90), (version("v2"), 10)], Mode::RoundRobin)
//!     .unwrap();
//! let mirror = MirrorLayer::new(vec![MirrorTarget { service: shadow, percentage: 100.0 }]);
//! let counters = mirror.counters();
//! let service = mirror.layer(split);
//!
//! let req = http::Request::post("http://reviews/").body(Full::new(Bytes::from("hi"))).unwrap();
//! let resp = service.oneshot(req).await.unwrap();
//! assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v1");
//! assert_eq!(counters.snapshot().mirrored, 1);
//! # }
//! ```
#![forbid(unsafe_code)]

mod body;
mod cluster;
mod counters;
mod destination_rule;
mod dispatch;
mod endpoint;
pub mod lb;
mod locality;
mod mirror;
mod outlier;
mod pool;
mod registry;
mod retry;
mod retry_on;
mod rng;
mod select;
mod shadow;
mod timeout;
mod upstream;
mod weighted;

pub use body::replay::ReplayBody;
pub use body::tee::{MirrorBody, MirrorBodyError, TeeBody};
pub use cluster::ClusterEndpoints;
pub use counters::{MirrorCounters, MirrorStats};
pub use destination_rule::{
    ClientTls, ClusterPolicy, ConnectionPool, ConsistentHash, DestinationRule, DestinationRules,
    DistributeRule, H2Upgrade, HashKey, HashTable, LbPolicy, LoadBalancer, LocalityLbSetting,
    LocalityPattern, OutlierDetection, SharedDestinationRules, Subset, TcpKeepalive, TlsMode,
    TrafficPolicy, load_destination_rules, model as destination_rule_model,
};
pub use dispatch::{DispatchFuture, RouteDispatch, RouteDispatchLayer};
pub use endpoint::{Endpoint, EndpointAddress, Locality, TLS_MODE_LABEL};
pub use locality::{ProxyLocation, distribute_weights, priorities, priority_loads};
pub use mirror::{Mirror, MirrorConfig, MirrorLayer, MirrorTarget};
pub use outlier::{Outcome, OutlierDetector};
pub use pool::{Overflow, PoolLimits, PoolPermit};
pub use registry::{PortProtocol, ServiceEndpoints, ServiceRegistry, StaticRegistry};
pub use retry::{
    Attempts, ExtensionsSlot, RetryFuture, RetryLayer, RetryLimitReached, RetryService, Tries,
    hand_back,
};
pub use rng::RngSource;
pub use select::{Mode, Picker, Weights, WeightsError};
pub use shadow::{SHADOW_SUFFIX, shadow_authority};
pub use timeout::{
    PerTryFuture, PerTryTimeout, RouteTimeout, RouteTimeoutLayer, TimeoutBody, TimeoutFuture,
};
pub use upstream::{
    ClusterInfo, ConnectorIo, MakeConnector, NO_HEALTHY_UPSTREAM, OVERFLOW, PlainConnector,
    SourceAddr, TunnelIdleTimeout, Upstream, UpstreamBody, UpstreamConnection, UpstreamError,
};
pub use weighted::{SelectedDestination, Weighted, WeightedFuture};
