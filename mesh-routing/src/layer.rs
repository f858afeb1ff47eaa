//! The routing layer: selects a route per request and executes what routing owns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use rand::Rng as _;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use crate::action::{Route, RouteAction};
use crate::cors::CorsDecision;
use crate::local_reply::{LocalReply, abort_response, redirect_response, status, with_headers};
use crate::request::{ListenerPort, RequestFacts};
use crate::table::{MatchedRoute, RouteMatch, RouteTable};

/// Response body of the routing layer: the inner service's body, or a local answer.
pub type RouteBody<B> = Either<B, Full<Bytes>>;

/// A route table that can be swapped atomically while requests are served. Each request sees
/// one whole table; requests in flight keep the table (and route) they started with.
///
/// ```
/// use mesh_routing::{RouteTable, SharedRouteTable};
/// let shared = SharedRouteTable::new(RouteTable::default());
/// shared.store(RouteTable::default()); // e.g. after a config reload
/// ```
#[derive(Debug, Clone)]
pub struct SharedRouteTable(Arc<ArcSwap<RouteTable>>);

impl SharedRouteTable {
    /// Wraps a table.
    pub fn new(table: RouteTable) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(table)))
    }
    /// Replaces the table; new requests use it at once.
    pub fn store(&self, table: RouteTable) {
        self.0.store(Arc::new(table));
    }
    /// The current table.
    pub fn load(&self) -> Arc<RouteTable> {
        self.0.load_full()
    }
}

/// What to do with a request whose host has no virtual host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownHost {
    /// Answer 404, as a gateway does.
    #[default]
    NotFound,
    /// Forward without a [`MatchedRoute`] extension, as a sidecar does for services that
    /// have no VirtualService (inner layers apply the default route and outbound policy).
    Forward,
}

/// Routes requests with a [`SharedRouteTable`] in front of any `Service<http::Request<B>>`.
///
/// For each request it finds the route (first match wins), then: answers CORS preflights,
/// fault aborts, redirects, direct responses and unmatched requests (404) itself; otherwise
/// applies the uri/authority rewrite and request header operations, waits out a fault delay,
/// inserts the [`MatchedRoute`] into the request extensions and calls the inner service; on the
/// way back it applies response header operations and CORS headers. Destinations, mirrors,
/// timeouts and retries are left to inner layers, which read them from the [`MatchedRoute`].
///
/// ```
/// use std::convert::Infallible;
/// use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, VirtualService};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let vs = VirtualService::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: web}
/// spec:
///   hosts: [web.example.com]
///   gateways: [mesh]
///   http:
///   - match: [{uri: {prefix: /old}}]
///     redirect: {uri: /new}
///   - route: [{destination: {host: web}}]
/// "#).unwrap();
/// let table = SharedRouteTable::new(RouteTable::build(&[vs], &TableOptions::default()));
/// let svc = ServiceBuilder::new().layer(RouteLayer::new(table)).service(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// let req = http::Request::get("http://web.example.com/old").body(()).unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// assert_eq!(resp.status(), 301);
/// assert_eq!(resp.headers()["location"], "http://web.example.com/new");
/// # }
/// ```
///
/// # Readiness
/// `poll_ready` is always ready: the inner service is cloned per request and driven with
/// `oneshot`, so readiness is only requested from it once a request is actually forwarded.
/// `call` may be used without a prior `poll_ready` on the router itself.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    table: SharedRouteTable,
    unknown_host: UnknownHost,
    scheme: Option<&'static str>,
    port: Option<ListenerPort>,
}

impl RouteLayer {
    /// A layer routing with `table`; unknown hosts get 404.
    pub fn new(table: SharedRouteTable) -> Self {
        Self {
            table,
            unknown_host: UnknownHost::NotFound,
            scheme: None,
            port: None,
        }
    }
    /// Sets what happens to hosts without a virtual host.
    pub fn unknown_host(mut self, behaviour: UnknownHost) -> Self {
        self.unknown_host = behaviour;
        self
    }
    /// Declares the scheme of requests whose URI has none (`"https"` on a TLS listener).
    pub fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = Some(scheme);
        self
    }
    /// Declares the port of the listener this layer serves, for `port` matches on requests
    /// that carry no [`ListenerPort`] extension (a layer built per listener port saves every
    /// request that extension).
    pub fn listener_port(mut self, port: u16) -> Self {
        self.port = Some(ListenerPort(port));
        self
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            config: self.clone(),
        }
    }
}

/// The service produced by [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
    config: RouteLayer,
}

impl<S, B, ResBody> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<RouteBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<B>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let table = self.config.table.0.load();
        let port = (req.extensions().get::<ListenerPort>().copied()).or(self.config.port);
        let mut facts = RequestFacts::new(req.method(), req.uri(), req.headers(), port);
        if let (Some(scheme), None) = (self.config.scheme, req.uri().scheme()) {
            facts = facts.with_scheme(scheme);
        }
        let matched = match table.route_facts(&facts) {
            RouteMatch::Matched(m) => m,
            RouteMatch::NoRoute => return ResponseFuture::local(no_route()),
            RouteMatch::NoVirtualHost => {
                return match self.config.unknown_host {
                    UnknownHost::NotFound => ResponseFuture::local(no_route()),
                    UnknownHost::Forward => ResponseFuture::forward(self.inner.clone(), req, None),
                };
            }
        };
        let route = matched.route.clone();

        let cors = match route
            .cors
            .as_ref()
            .map(|c| c.decide(req.method(), req.headers()))
        {
            Some(CorsDecision::Preflight(headers)) => {
                return ResponseFuture::local(with_headers(status(StatusCode::OK), headers));
            }
            Some(CorsDecision::Decorate(headers)) => Some(headers),
            _ => None,
        };
        let mut delay = None;
        if let Some(fault) = &route.fault {
            if let Some(abort) = fault.abort.as_ref().filter(|a| sample(a.percentage)) {
                return ResponseFuture::local(abort_response(abort.kind));
            }
            delay = fault
                .delay
                .as_ref()
                .filter(|d| sample(d.percentage))
                .map(|d| d.delay);
        }
        match &route.action {
            RouteAction::Redirect(r) => {
                let mut resp =
                    redirect_response(r, facts.scheme, req.uri(), req.headers(), facts.port);
                route.response_headers.apply(resp.headers_mut());
                ResponseFuture::local(resp)
            }
            RouteAction::DirectResponse(d) => {
                let mut resp = Response::new(Full::new(d.body.clone()));
                *resp.status_mut() = d.status;
                if !d.body.is_empty() {
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                }
                route.response_headers.apply(resp.headers_mut());
                // gRPC callers get the body as `grpc-message`, as from Envoy.
                let text = String::from_utf8_lossy(&d.body).into_owned();
                ResponseFuture::local(LocalReply::new("", text).mark(resp))
            }
            RouteAction::Forward(_) => {
                apply_rewrite(&route, &matched, &mut req);
                route.request_headers.apply(req.headers_mut());
                req.extensions_mut().insert(matched);
                let post = Some(Post { ops: route, cors });
                match delay {
                    Some(d) => ResponseFuture::delayed(d, self.inner.clone(), req, post),
                    None => ResponseFuture::forward(self.inner.clone(), req, post),
                }
            }
        }
    }
}

/// Envoy's 404 for a request no route takes (response flag `NR`, no body).
fn no_route() -> Response<Full<Bytes>> {
    LocalReply::new("NR", "").response(StatusCode::NOT_FOUND)
}

/// Draws against a percentage (0..=100) with per-million resolution, as Envoy's fractional percent.
fn sample(percentage: f64) -> bool {
    if percentage <= 0.0 {
        return false;
    }
    if percentage >= 100.0 {
        return true;
    }
    rand::rng().random_range(0..1_000_000u32) < (percentage * 10_000.0) as u32
}

fn apply_rewrite<B>(route: &Route, matched: &MatchedRoute, req: &mut Request<B>) {
    let Some(rw) = &route.rewrite else { return };
    let uri = req.uri();
    let new_pq = rw.rewrite_path(uri.path(), uri.query(), matched.matched_uri);
    if let Some(pq) = new_pq.and_then(|p| p.parse().ok()) {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    if let Some(authority) = rw.authority() {
        crate::authority::set_request_authority(req, authority.clone());
    }
}

/// Work left for the response: route response headers and CORS decoration.
struct Post {
    ops: Arc<Route>,
    cors: Option<HeaderMap>,
}

impl Post {
    /// Route-level response headers, then CORS. (Per-destination response headers are the
    /// weighted dispatcher's, which knows the destination.)
    fn apply<B>(self, resp: &mut Response<B>) {
        self.ops.response_headers.apply(resp.headers_mut());
        if let Some(h) = self.cors {
            resp.headers_mut().extend(h);
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Router`].
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        post: Option<Post>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Local { response: Option<Response<Full<Bytes>>> },
        Delay { #[pin] sleep: tokio::time::Sleep, next: Option<(S, Req)> },
        Inner { #[pin] fut: Oneshot<S, Req> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    fn local(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Local {
                response: Some(response),
            },
            post: None,
        }
    }
    fn forward(svc: S, req: Req, post: Option<Post>) -> Self {
        Self {
            state: State::Inner {
                fut: Oneshot::new(svc, req),
            },
            post,
        }
    }
    fn delayed(d: std::time::Duration, svc: S, req: Req, post: Option<Post>) -> Self {
        Self {
            state: State::Delay {
                sleep: tokio::time::sleep(d),
                next: Some((svc, req)),
            },
            post,
        }
    }
}

impl<S, Req, ResBody> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<ResBody>>,
{
    type Output = Result<Response<RouteBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Local { response } => {
                    let resp = response.take().map(|r| r.map(Either::Right));
                    // Polled again after completion: answer an empty 500 rather than panic.
                    return Poll::Ready(Ok(resp.unwrap_or_else(|| {
                        status(StatusCode::INTERNAL_SERVER_ERROR).map(Either::Right)
                    })));
                }
                StateProj::Delay { sleep, next } => {
                    ready!(sleep.poll(cx));
                    let Some((svc, req)) = next.take() else {
                        return Poll::Ready(Ok(
                            status(StatusCode::INTERNAL_SERVER_ERROR).map(Either::Right)
                        ));
                    };
                    this.state.set(State::Inner {
                        fut: Oneshot::new(svc, req),
                    });
                }
                StateProj::Inner { fut } => {
                    let mut resp = ready!(fut.poll(cx))?;
                    if let Some(post) = this.post.take() {
                        post.apply(&mut resp);
                    }
                    return Poll::Ready(Ok(resp.map(Either::Left)));
                }
            }
        }
    }
}
