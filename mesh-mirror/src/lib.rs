//! Weighted dispatch, traffic mirroring, retries and timeouts as tower layers: the part of
//! Istio's route actions that decides where a request goes once a route matched.
//!
//! - [`Weighted`]: canary and blue-green splits by integer weight, random (Envoy) or smooth
//!   round-robin (nginx), with tower's readiness contract for request-independent choice.
//! - [`MirrorLayer`]: fire-and-forget copies of sampled requests, with bounded bodies, a cap
//!   on copies in flight, a per-copy timeout and [`MirrorCounters`].
//! - [`RetryLayer`] and [`RouteTimeoutLayer`]: the route's `retries` (on tower's `Retry`, with
//!   a bounded replayable body) and `timeout` (504 on expiry).
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
//! # Dependency on `mesh-routing`
//! This crate depends on `mesh-routing` for the route-action types it executes
//! ([`WeightedDestinations`](mesh_routing::WeightedDestinations),
//! [`Mirror`](mesh_routing::Mirror), [`RetryPolicy`](mesh_routing::RetryPolicy),
//! [`MatchedRoute`](mesh_routing::MatchedRoute)): they are the one definition of what a
//! VirtualService asks for. The edge is one-way; `mesh-routing` knows nothing of this crate.
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
pub use endpoint::{Endpoint, EndpointAddress, Locality, TLS_MODE_LABEL};
pub use locality::{ProxyLocation, distribute_weights, priorities};
pub use mirror::{Mirror, MirrorConfig, MirrorLayer, MirrorTarget};
pub use outlier::{Outcome, OutlierDetector};
pub use pool::{Overflow, PoolLimits, PoolPermit};
pub use registry::{PortProtocol, ServiceEndpoints, ServiceRegistry, StaticRegistry};
pub use retry::{Attempts, RetryFuture, RetryLayer, RetryService, Tries};
pub use rng::RngSource;
pub use select::{Mode, Picker, Weights, WeightsError};
pub use shadow::{SHADOW_SUFFIX, shadow_authority};
pub use timeout::{
    PerTryFuture, PerTryTimeout, RouteTimeout, RouteTimeoutLayer, TimeoutBody, TimeoutFuture,
};
pub use upstream::{
    ClusterInfo, MakeConnector, NO_HEALTHY_UPSTREAM, OVERFLOW, PlainConnector, SourceAddr,
    Upstream, UpstreamBody, UpstreamError,
};
pub use weighted::{SelectedDestination, Weighted, WeightedFuture};
