//! Per-route weighted dispatch in front of one upstream: the proxy's form of Envoy's weighted
//! clusters, where every route of a table shares a single upstream service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use mesh_routing::{MatchedRoute, Route};
use rand::Rng as _;
use rand::rngs::SmallRng;
use tower_layer::Layer;
use tower_service::Service;

use crate::rng::RngSource;

/// Chooses each request's destination from its [`MatchedRoute`] by weight, applies that
/// destination's request header operations, puts the [`mesh_routing::Destination`] into the
/// request's extensions for the upstream, and applies its response header operations.
///
/// Use it between `mesh_routing::RouteLayer` and [`Upstream`](crate::Upstream), which resolves
/// any destination; [`Weighted`](crate::Weighted) is the alternative when each destination has
/// its own service. The draw is weighted random per request (Envoy's behaviour); weight-0
/// destinations are never chosen. Requests without a matched route pass through untouched.
///
/// ```
/// use std::convert::Infallible;
/// use mesh_mirror::RouteDispatchLayer;
/// use mesh_routing::{Destination, RouteLayer, RouteTable, SharedRouteTable, TableOptions, load_virtual_services};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let vss = load_virtual_services(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http: [{route: [{destination: {host: reviews, subset: v1}, weight: 0}, {destination: {host: reviews, subset: v2}, weight: 1}]}]
/// "#, "vs.yaml", "default").unwrap();
/// let table = SharedRouteTable::new(RouteTable::build(&vss, &TableOptions::default()));
/// let svc = ServiceBuilder::new()
///     .layer(RouteLayer::new(table))
///     .layer(RouteDispatchLayer::new())
///     .service(service_fn(|req: http::Request<()>| async move {
///         let subset = req.extensions().get::<Destination>().unwrap().subset.clone().unwrap();
///         Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(subset))))
///     }));
/// let resp = svc.oneshot(http::Request::get("http://reviews/").body(()).unwrap()).await.unwrap();
/// assert_eq!(http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes(), "v2");
/// # }
/// ```
///
/// # Readiness
/// The choice depends on the request, so it is made in `call`; `poll_ready` is the inner
/// service's, which must therefore serve every destination (as `Upstream` does).
#[derive(Debug, Clone)]
pub struct RouteDispatchLayer {
    rng: RngSource,
}

impl RouteDispatchLayer {
    /// Draws from the operating system's entropy.
    pub fn new() -> Self {
        Self {
            rng: RngSource::from_entropy(),
        }
    }
    /// Draws from `rng` (seed it for reproducible tests).
    pub fn with_rng(rng: RngSource) -> Self {
        Self { rng }
    }
}

impl Default for RouteDispatchLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RouteDispatchLayer {
    type Service = RouteDispatch<S>;
    fn layer(&self, inner: S) -> RouteDispatch<S> {
        RouteDispatch {
            inner,
            source: self.rng.clone(),
            rng: self.rng.stream(),
        }
    }
}

/// The service of [`RouteDispatchLayer`].
#[derive(Debug)]
pub struct RouteDispatch<S> {
    inner: S,
    source: RngSource,
    rng: SmallRng,
}

impl<S: Clone> Clone for RouteDispatch<S> {
    fn clone(&self) -> Self {
        // Each clone draws its own stream, so clones never repeat each other's choices.
        Self {
            inner: self.inner.clone(),
            source: self.source.clone(),
            rng: self.source.stream(),
        }
    }
}

/// Index of the destination drawn by weight (a lone destination always wins).
fn draw(route: &Route, rng: &mut SmallRng) -> Option<usize> {
    let dests = route.destinations()?;
    let total: u64 = dests.effective_weights().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    dests.effective_weights().position(|w| {
        if ticket < u64::from(w) {
            true
        } else {
            ticket -= u64::from(w);
            false
        }
    })
}

impl<S, B, RB> Service<Request<B>> for RouteDispatch<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = DispatchFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedRoute>()
            .map(|m| m.route().clone());
        let chosen = route.and_then(|route| draw(&route, &mut self.rng).map(|i| (route, i)));
        if let Some((route, index)) = &chosen {
            if let Some(target) = route.destinations().and_then(|d| d.iter().nth(*index)) {
                target.request_headers.apply(req.headers_mut());
                req.extensions_mut().insert(target.destination.clone());
            }
        }
        DispatchFuture {
            inner: self.inner.call(req),
            chosen,
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RouteDispatch`]: applies the chosen destination's response headers.
    pub struct DispatchFuture<F> {
        #[pin]
        inner: F,
        chosen: Option<(Arc<Route>, usize)>,
    }
}

impl<F, RB, E> Future for DispatchFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.inner.poll(cx))?;
        if let Some((route, index)) = this.chosen.take() {
            if let Some(target) = route.destinations().and_then(|d| d.iter().nth(index)) {
                target.response_headers.apply(resp.headers_mut());
            }
        }
        Poll::Ready(Ok(resp))
    }
}
