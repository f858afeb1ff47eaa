//! Istio `VirtualService` semantics for any Rust HTTP service: request matchers, host matching,
//! indexed route tables with first-match order, route actions as typed data, and a tower layer
//! that routes requests.
//!
//! ```
//! use mesh_routing::{RouteTable, TableOptions, load_virtual_services};
//!
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews, namespace: bookinfo}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - match:
//!     - headers: {end-user: {exact: jason}}
//!     route: [{destination: {host: reviews, subset: v2}}]
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//!       weight: 90
//!     - destination: {host: reviews, subset: v3}
//!       weight: 10
//! "#;
//! let vss = load_virtual_services(yaml, "reviews.yaml", "default").unwrap();
//! let options = TableOptions { namespace: "bookinfo".into(), ..TableOptions::default() };
//! let table = RouteTable::build(&vss, &options);
//! let req = http::Request::get("/productpage").header("host", "reviews").body(()).unwrap();
//! let route = table.route(&req).route().cloned().unwrap();
//! let weights: Vec<u32> = route.destinations().unwrap().effective_weights().collect();
//! assert_eq!(weights, vec![90, 10]);
//! ```
//!
//! The pure parts (matching, host lookup, validation) live apart from the one async module,
//! [`layer`](RouteLayer), so they can be tested, fuzzed and benchmarked on their own.
#![forbid(unsafe_code)]

mod action;
mod authority;
mod compile_http;
mod compile_local;
mod compile_match;
mod compile_policy;
mod conditions;
mod cors;
mod duration;
mod error;
mod host;
mod index;
mod layer;
mod local_reply;
pub mod model;
mod normalize;
mod path;
mod request;
mod resource;
mod retry;
mod rewrite;
mod string_match;
mod subnet;
mod table;
mod virtual_service;

pub use action::{
    AbortKind, Destination, DirectResponse, Fault, FaultAbort, FaultDelay, HeaderOps, Mirror,
    Redirect, RedirectPort, Route, RouteAction, WeightError, WeightedDestination,
    WeightedDestinations,
};
pub use authority::{authority_of, request_authority, set_request_authority};
pub use cors::CorsPolicy;
pub use duration::parse_duration;
pub use error::{Collector, ConfigError, ConfigErrors, Problem, ResourceRef};
pub use host::{qualify_host, request_host, validate_host};
pub use layer::{ResponseFuture, RouteBody, RouteLayer, Router, SharedRouteTable, UnknownHost};
pub use local_reply::{
    GrpcLocalReply, GrpcLocalReplyFuture, GrpcLocalReplyLayer, LocalReply, RefusedOr,
    grpc_local_reply, grpc_status_for, is_grpc,
};
pub use normalize::{NormalizeFuture, NormalizePath, PathNormalizationLayer};
pub use path::{PathError, PathNormalization, normalize_path};
pub use request::ListenerPort;
pub use resource::{Document, LoadError, ObjectMeta, Origin, parse_documents};
pub use retry::{ISTIO_DEFAULT_RETRY_ON, RetryCondition, RetryOn, RetryPolicy, UpstreamFailure};
pub use rewrite::{Rewrite, UriRewrite};
pub use subnet::Subnet;
pub use table::{MatchedRoute, RouteMatch, RouteTable, TableOptions};
pub use virtual_service::{
    DEFAULT_DOMAIN_SUFFIX, L4Match, L4Route, MESH_GATEWAY, NETWORKING_GROUP, NETWORKING_VERSIONS,
    VirtualService, load_virtual_services,
};
