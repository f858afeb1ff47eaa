//! The routing half of a data-plane listener, built per configuration generation:
//! `RouteLayer` -> route timeout -> mirrors -> weighted dispatch -> retries -> the upstream,
//! in the order mesh-mirror documents, boxed behind one service type so a listener can swap
//! whole generations.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use mesh_gateway::filters::UpstreamErrorLayer;
use mesh_gateway::{KnownHosts, OutboundMode, OutboundPolicyLayer};
use mesh_mirror::{
    MakeConnector, MirrorBody, MirrorLayer, RetryLayer, RouteDispatchLayer, RouteTimeoutLayer,
    Upstream, UpstreamBody, UpstreamError,
};
use mesh_routing::{Destination, RouteLayer};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_service::Service;

use super::registry::ProxyMetrics;
use super::tags::TagLayer;
use super::upstreams::PrimaryBody;

/// Errors inside the stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body every data-plane service answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// The request body inside the data plane: boxed once at the listener, so the layers that
/// wrap it (metrics, access log) do not change the stack's types.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
/// A data-plane HTTP service: never fails (upstream failures are answered with 503).
pub type HttpService = BoxCloneSyncService<Request<RequestBody>, Response<ProxyBody>, Infallible>;
/// The innermost service: one request, already teed and replayable, to its destination.
pub type UpstreamService = BoxCloneSyncService<Request<PrimaryBody>, Response<ProxyBody>, BoxError>;

/// Boxes any response body into [`ProxyBody`]; a body that already is one is passed on as it
/// is (the stack's layers box at several levels, and each box is an allocation per request).
pub fn boxed<B>(resp: Response<B>) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    resp.map(box_body)
}

fn box_body<B>(body: B) -> UnsyncBoxBody<Bytes, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    if let Some(already) = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<UnsyncBoxBody<Bytes, BoxError>>>()
        .and_then(Option::take)
    {
        return already;
    }
    match slot {
        Some(body) => body.map_err(Into::into).boxed_unsync(),
        None => UnsyncBoxBody::default(),
    }
}

/// Where a listener's mirror copies go: the mirror upstream of the newest generation. The
/// [`MirrorLayer`] (and so its counters) lives as long as the listener; copies of requests
/// still on an older generation leave on the newest upstream, which is harmless for
/// fire-and-forget copies.
pub struct MirrorSlot<M: MakeConnector>(Arc<ArcSwapOption<Upstream<MirrorBody, M>>>);

impl<M: MakeConnector> Clone for MirrorSlot<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: MakeConnector> Default for MirrorSlot<M> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<M: MakeConnector> MirrorSlot<M> {
    /// Makes `upstream` the one copies leave on.
    pub fn set(&self, upstream: Upstream<MirrorBody, M>) {
        self.0.store(Some(Arc::new(upstream)));
    }

    /// The mirror layer reading this slot.
    pub fn layer(&self) -> MirrorLayer<MirrorTo<M>> {
        let slot = self.0.clone();
        MirrorLayer::from_route(move |d: &Destination| {
            let upstream = Upstream::clone(&*slot.load_full()?);
            Some(MirrorTo {
                upstream,
                destination: d.clone(),
            })
        })
    }
}

/// A mirror target: the mirror upstream with the mirror's destination put into each copy.
pub struct MirrorTo<M: MakeConnector> {
    upstream: Upstream<MirrorBody, M>,
    destination: Destination,
}

impl<M: MakeConnector> Clone for MirrorTo<M> {
    fn clone(&self) -> Self {
        Self {
            upstream: self.upstream.clone(),
            destination: self.destination.clone(),
        }
    }
}

impl<M: MakeConnector> Service<Request<MirrorBody>> for MirrorTo<M> {
    type Response = Response<UpstreamBody>;
    type Error = UpstreamError;
    type Future = <Upstream<MirrorBody, M> as Service<Request<MirrorBody>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.upstream.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<MirrorBody>) -> Self::Future {
        req.extensions_mut().insert(self.destination.clone());
        self.upstream.call(req)
    }
}

/// The routed stack behind `route` (a [`RouteLayer`] over the listener's route table):
/// answers redirects, direct responses, faults and 404s itself; applies the outbound
/// `policy` to requests no route matched (none: allow all); applies the route's timeout,
/// mirrors, weighted split and retries; sends the request on with `upstream`. Upstream
/// failures become 503 (Envoy's text, marked as local replies with their response flag).
pub fn routed<M: MakeConnector, U>(
    route: RouteLayer,
    policy: Option<(OutboundPolicyLayer, ProxyMetrics)>,
    mirror: &MirrorLayer<MirrorTo<M>>,
    upstream: U,
) -> HttpService
where
    U: Service<Request<PrimaryBody>, Response = Response<ProxyBody>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    U::Future: Send + 'static,
{
    let (policy, metrics) = match policy {
        Some((p, m)) => (p, Some(m)),
        None => (
            OutboundPolicyLayer::new(OutboundMode::AllowAny, KnownHosts::from_hosts([])),
            None,
        ),
    };
    // The policy's local answers (502) are its denials.
    let count_denials = move |resp: Response<_>| {
        if let (Some(m), http_body_util::Either::Right(_)) = (&metrics, resp.body()) {
            m.record_denial("registry_only");
        }
        resp
    };
    let svc = ServiceBuilder::new()
        .map_response(boxed)
        .layer(UpstreamErrorLayer)
        .layer(route)
        .map_response(count_denials)
        .layer(policy)
        .layer(RouteTimeoutLayer::from_route())
        .layer(mirror.clone())
        .layer(RouteDispatchLayer::new())
        .layer(TagLayer)
        // The upstream hands each try's extensions back: only the head is copied up front.
        .layer(RetryLayer::from_route().extensions_handed_back())
        .service(upstream);
    BoxCloneSyncService::new(svc)
}

/// Boxes an [`Upstream`] as the stack's innermost service (for callers that need one type;
/// [`routed`] also takes the upstream unboxed).
pub fn upstream_service<M: MakeConnector>(upstream: Upstream<PrimaryBody, M>) -> UpstreamService {
    BoxCloneSyncService::new(upstream_stage(upstream))
}

/// An [`Upstream`] with the stack's response and error types.
pub(crate) fn upstream_stage<M: MakeConnector>(
    upstream: Upstream<PrimaryBody, M>,
) -> impl Service<
    Request<PrimaryBody>,
    Response = Response<ProxyBody>,
    Error = BoxError,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    upstream.map_response(boxed).map_err(BoxError::from)
}

/// Boxes any request body into [`RequestBody`].
pub fn boxed_request<B>(req: Request<B>) -> Request<RequestBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    req.map(box_body)
}

/// Boxes a service built from layers over a routed service.
pub fn http_service<S, B>(svc: S) -> HttpService
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(svc.map_response(boxed))
}
