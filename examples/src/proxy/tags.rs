//! What inner layers learned about a request (the matched route, the chosen destination, the
//! peer), carried back out to the observing layers (metrics, access log) that wrap them.
//!
//! An outer layer cannot see the extensions an inner layer adds to the request it passes on,
//! so the observing layer puts a shared [`RequestTags`] slot into the request and
//! [`TagLayer`], placed where the routing decisions are visible (inside
//! `mesh_routing::RouteLayer` and `mesh_mirror::Weighted`), fills it in.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::Request;
use mesh_mirror::SelectedDestination;
use mesh_routing::MatchedRoute;
use tower_layer::Layer;
use tower_service::Service;

/// Facts about one request, learned by inner layers.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    /// The destination host (`reviews.default.svc.cluster.local`).
    pub destination_host: Option<String>,
    /// The matched route (shared with the route table; see [`Tags::route_name`]).
    pub route: Option<MatchedRoute>,
    /// The upstream address actually used (`%UPSTREAM_HOST%`).
    pub upstream_host: Option<String>,
    /// Envoy response flags (`UF`, `NR`, `URX`, ...), when an inner layer knows them.
    pub response_flags: Option<String>,
    /// The peer's SPIFFE ID, on the server side of an mTLS connection.
    pub peer_principal: Option<String>,
}

/// A shared slot of [`Tags`] in a request's extensions. Clones share.
#[derive(Debug, Clone, Default)]
pub struct RequestTags(Arc<Mutex<Tags>>);

impl Tags {
    /// The matched route as `namespace/name http[i]`.
    pub fn route_name(&self) -> Option<String> {
        let r = self.route.as_ref()?.route();
        let src = r.source();
        Some(format!(
            "{}/{} http[{}]",
            src.namespace,
            src.name,
            r.index()
        ))
    }
}

impl RequestTags {
    /// Changes the tags.
    pub fn update(&self, f: impl FnOnce(&mut Tags)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Reads the tags in place (no copy).
    pub fn with<R>(&self, f: impl FnOnce(&Tags) -> R) -> R {
        f(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Fills in what the request's own extensions say (the matched route, the chosen
    /// destination), keeping anything already known.
    pub fn learn<B>(&self, req: &Request<B>) {
        let matched = req.extensions().get::<MatchedRoute>();
        let selected = req.extensions().get::<SelectedDestination>();
        // `RouteDispatch` (one upstream for every route) puts the chosen destination here.
        let dispatched = req.extensions().get::<mesh_routing::Destination>();
        if matched.is_none() && selected.is_none() && dispatched.is_none() {
            return;
        }
        self.update(|t| {
            if let Some(m) = matched {
                let r = m.route();
                t.route.get_or_insert_with(|| m.clone());
                if t.destination_host.is_none() && dispatched.is_none() && selected.is_none() {
                    // A single destination is the destination; a split is decided later.
                    if let Some(ds) = r.destinations().filter(|d| d.len() == 1) {
                        if let Some(d) = ds.iter().next() {
                            t.destination_host = Some(d.destination.host.clone());
                        }
                    }
                }
            }
            let chosen = selected
                .map(|s| &s.destination().host)
                .or(dispatched.map(|d| &d.host));
            if let Some(host) = chosen {
                if t.destination_host.as_ref() != Some(host) {
                    t.destination_host = Some(host.clone());
                }
            }
        });
    }
}

/// Copies the matched route and chosen destination of each request into its
/// [`RequestTags`] (when an observing layer put one there). Always ready when the inner
/// service is: `poll_ready` is the inner service's.
#[derive(Debug, Clone, Copy, Default)]
pub struct TagLayer;

impl<S> Layer<S> for TagLayer {
    type Service = TagService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TagService { inner }
    }
}

/// The service of [`TagLayer`].
#[derive(Debug, Clone)]
pub struct TagService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for TagService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(tags) = req.extensions().get::<RequestTags>() {
            tags.learn(&req);
        }
        self.inner.call(req)
    }
}
