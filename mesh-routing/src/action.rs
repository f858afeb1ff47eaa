//! Route actions as validated, typed data: what to do with a request once a route matched.
//!
//! The routing layer executes redirects, direct responses, rewrites, header operations, faults
//! and CORS itself. Destinations, mirrors, timeouts and retries are carried to the layers below
//! (weighted dispatch, mirroring, retries in `mesh-mirror`) in the [`Route`] that the layer puts
//! into the request's extensions.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::cors::CorsPolicy;
use crate::error::ResourceRef;
use crate::retry::RetryPolicy;
use crate::rewrite::Rewrite;

/// One compiled HTTP route (`http[i]` of a VirtualService).
///
/// ```
/// use mesh_routing::{RouteTable, TableOptions, VirtualService};
/// let vs = VirtualService::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: default}
/// spec:
///   hosts: [reviews]
///   http:
///   - timeout: 2s
///     route:
///     - destination: {host: reviews, subset: v1}
/// "#).unwrap();
/// let table = RouteTable::build(&[vs], &TableOptions::default());
/// let req = http::Request::get("http://reviews/").body(()).unwrap();
/// let route = table.route(&req).route().cloned().unwrap();
/// assert_eq!(route.timeout(), Some(std::time::Duration::from_secs(2)));
/// let dests = route.destinations().unwrap();
/// assert_eq!(dests.iter().next().unwrap().destination.host, "reviews.default.svc.cluster.local");
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) source: ResourceRef,
    pub(crate) index: usize,
    pub(crate) name: Option<String>,
    pub(crate) action: RouteAction,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) request_headers: HeaderOps,
    pub(crate) response_headers: HeaderOps,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: RetryPolicy,
    pub(crate) fault: Option<Fault>,
    pub(crate) cors: Option<CorsPolicy>,
    pub(crate) mirrors: Vec<Mirror>,
}

impl Route {
    /// The VirtualService this route came from.
    pub fn source(&self) -> &ResourceRef {
        &self.source
    }
    /// Position of the route in the VirtualService's `http` list.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The route's `name`, if set.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// What the route does.
    pub fn action(&self) -> &RouteAction {
        &self.action
    }
    /// The weighted destinations, when the action is `route`.
    pub fn destinations(&self) -> Option<&WeightedDestinations> {
        match &self.action {
            RouteAction::Forward(d) => Some(d),
            _ => None,
        }
    }
    /// The URI/authority rewrite applied before forwarding.
    pub fn rewrite(&self) -> Option<&Rewrite> {
        self.rewrite.as_ref()
    }
    /// Route-level request header operations (`headers.request`).
    pub fn request_headers(&self) -> &HeaderOps {
        &self.request_headers
    }
    /// Route-level response header operations (`headers.response`).
    pub fn response_headers(&self) -> &HeaderOps {
        &self.response_headers
    }
    /// Overall request timeout; `None` means no timeout (Istio's default).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Retry policy; Istio's default policy when `retries` is not set.
    pub fn retries(&self) -> &RetryPolicy {
        &self.retries
    }
    /// Fault injection.
    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }
    /// CORS policy.
    pub fn cors(&self) -> Option<&CorsPolicy> {
        self.cors.as_ref()
    }
    /// Mirror targets with their sampling percentages (empty when not mirroring).
    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }
}

/// Exactly one of Istio's `route`, `redirect` or `directResponse`.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Forward to one of several weighted destinations.
    Forward(WeightedDestinations),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed status and body.
    DirectResponse(DirectResponse),
}

/// A service to send traffic to: `host` (fully qualified), optional `subset` and `port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// Fully qualified host (`reviews.default.svc.cluster.local`) or as written when it has dots.
    pub host: String,
    /// DestinationRule subset name.
    pub subset: Option<String>,
    /// Service port.
    pub port: Option<u16>,
}

/// A destination with its weight and per-destination header operations.
#[derive(Debug, Clone)]
pub struct WeightedDestination {
    /// Where to send.
    pub destination: Destination,
    /// Integer weight; shares are `weight / sum(weights)`.
    pub weight: u32,
    /// `headers.request` of this destination.
    pub request_headers: HeaderOps,
    /// `headers.response` of this destination.
    pub response_headers: HeaderOps,
}

/// A non-empty list of destinations whose weights follow Istio's rules: a single destination
/// gets all traffic whatever its weight; with several, weights may not all be zero and
/// weight-0 destinations never receive traffic.
///
/// ```
/// use mesh_routing::{Destination, WeightedDestination, WeightedDestinations, HeaderOps};
/// let d = |host: &str, weight| WeightedDestination {
///     destination: Destination { host: host.into(), subset: None, port: None },
///     weight,
///     request_headers: HeaderOps::default(),
///     response_headers: HeaderOps::default(),
/// };
/// assert!(WeightedDestinations::new(vec![d("a", 0), d("b", 0)]).is_err());
/// let one = WeightedDestinations::new(vec![d("a", 0)]).unwrap();
/// assert_eq!(one.effective_weights().collect::<Vec<_>>(), vec![1]);
/// ```
#[derive(Debug, Clone)]
pub struct WeightedDestinations {
    destinations: Vec<WeightedDestination>,
}

/// Why a destination list breaks Istio's weight rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    /// No destinations at all.
    #[error("at least one destination is required")]
    Empty,
    /// Several destinations, all with weight 0.
    #[error("weights of {0} destinations are all 0; at least one must be positive")]
    AllZero(usize),
}

impl WeightedDestinations {
    /// Validates the list against Istio's weight rules.
    pub fn new(destinations: Vec<WeightedDestination>) -> Result<Self, WeightError> {
        match destinations.len() {
            0 => Err(WeightError::Empty),
            1 => Ok(Self { destinations }),
            n if destinations.iter().all(|d| d.weight == 0) => Err(WeightError::AllZero(n)),
            _ => Ok(Self { destinations }),
        }
    }
    /// The destinations in configuration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &WeightedDestination> {
        self.destinations.iter()
    }
    /// Number of destinations.
    pub fn len(&self) -> usize {
        self.destinations.len()
    }
    /// Always false: the list is validated non-empty.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Weights to split traffic by, in order: the configured weights, except that a single
    /// destination always gets weight 1 (Istio sends it everything, even when written as 0).
    pub fn effective_weights(&self) -> impl Iterator<Item = u32> + '_ {
        let single = self.destinations.len() == 1;
        self.destinations
            .iter()
            .map(move |d| if single { 1 } else { d.weight })
    }
}

/// A mirror target and the share of requests copied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Where copies go.
    pub destination: Destination,
    /// Percentage of requests mirrored, 0.0..=100.0 (missing in YAML = 100, explicit 0 = off).
    pub percentage: f64,
}

/// `redirect`: the response the routing layer answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Replaces the whole path (the query string is kept unless `uri` has one).
    pub uri: Option<String>,
    /// Replaces the authority (host).
    pub authority: Option<String>,
    /// Replaces the scheme.
    pub scheme: Option<String>,
    /// What happens to the port.
    pub port: RedirectPort,
    /// 301 unless configured.
    pub code: StatusCode,
}

/// The port of a redirect's `Location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// Keep the request's authority as is (Istio's default).
    Keep,
    /// Use this port.
    Fixed(u16),
    /// `derivePort: FROM_PROTOCOL_DEFAULT`: 80 for http, 443 for https (omitted from Location).
    FromProtocolDefault,
    /// `derivePort: FROM_REQUEST_PORT`: the port the request came in on.
    FromRequestPort,
}

/// `directResponse`: a fixed status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// 200-599.
    pub status: StatusCode,
    /// Body bytes (may be empty).
    pub body: Bytes,
}

/// `headers.request` / `headers.response`: set, add and remove, applied remove-first as Envoy does.
///
/// ```
/// use http::HeaderMap;
/// use mesh_routing::HeaderOps;
/// let ops = HeaderOps {
///     set: vec![("x-a".parse().unwrap(), "1".parse().unwrap())],
///     add: vec![("x-b".parse().unwrap(), "2".parse().unwrap())],
///     remove: vec!["x-c".parse().unwrap()],
/// };
/// let mut h = HeaderMap::new();
/// h.insert("x-a", "0".parse().unwrap());
/// h.insert("x-b", "1".parse().unwrap());
/// h.insert("x-c", "gone".parse().unwrap());
/// ops.apply(&mut h);
/// assert_eq!(h.get_all("x-a").iter().count(), 1);
/// assert_eq!(h.get_all("x-b").iter().count(), 2);
/// assert!(h.get("x-c").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Overwrite (or add when absent).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append, keeping existing values.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove all values.
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the operations: remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// `fault`: delays and aborts applied to a share of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Delay before forwarding.
    pub delay: Option<FaultDelay>,
    /// Answer locally instead of forwarding.
    pub abort: Option<FaultAbort>,
}

/// A fixed delay applied to `percentage` % of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultDelay {
    /// How long to wait.
    pub delay: Duration,
    /// Share of requests delayed, 0.0..=100.0 (missing = 0).
    pub percentage: f64,
}

/// An abort applied to `percentage` % of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultAbort {
    /// What to answer with.
    pub kind: AbortKind,
    /// Share of requests aborted, 0.0..=100.0 (missing = 0).
    pub percentage: f64,
}

/// The local answer of an abort fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// `httpStatus`.
    Http(StatusCode),
    /// `grpcStatus`: HTTP 200 with this `grpc-status` code.
    Grpc(u8),
}
