//! The mirror layer: copies sampled requests to mirror services, fire-and-forget.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt as _;
use mesh_routing::{Destination, MatchedRoute};
use rand::Rng as _;
use rand::rngs::SmallRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::tee::{MirrorBody, TeeBody};
use crate::counters::{Event, MirrorCounters, Outcome};
use crate::rng::RngSource;
use crate::shadow::shadow_request;

/// Limits and options of a [`MirrorLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// Largest request body copied to a mirror, in bytes (default 1 MiB). A body known to be
    /// larger (by its size hint) is not mirrored; one that grows past the limit while streaming
    /// has its mirror copy aborted. Either way it is counted as `dropped_body_too_large`.
    ///
    /// 1 MiB is Envoy's default per-connection buffer limit, which is also what bounds the
    /// bodies Envoy shadows, so the same requests are mirrored here as under Istio. Together
    /// with `max_in_flight` it bounds the memory held for mirrors at 128 MiB by default.
    pub body_limit: u64,
    /// Mirror copies in flight at once, over all services made by the layer (default 128).
    /// A copy beyond the cap is dropped and counted as `dropped_over_cap`.
    pub max_in_flight: usize,
    /// Deadline of one mirror copy, from its start to the end of its response body
    /// (default 10 s). A copy past it is abandoned and counted as `failed`.
    pub timeout: Duration,
    /// Rewrite the mirrored Host to `host-shadow[:port]` as Envoy does by default. Off by
    /// default, as in Istio >= 1.28.
    pub shadow_host_suffix: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            max_in_flight: 128,
            timeout: Duration::from_secs(10),
            shadow_host_suffix: false,
        }
    }
}

/// A fixed mirror target and the share of requests copied to it.
#[derive(Debug, Clone)]
pub struct MirrorTarget<M> {
    /// Receives the copies.
    pub service: M,
    /// Percentage of requests copied, 0.0..=100.0 (100 = all, 0 = none).
    pub percentage: f64,
}

type MakeMirror<M> = Arc<dyn Fn(&Destination) -> Option<M> + Send + Sync>;

enum Targets<M> {
    Fixed(Arc<[MirrorTarget<M>]>),
    FromRoute(MakeMirror<M>),
}

impl<M> Clone for Targets<M> {
    fn clone(&self) -> Self {
        match self {
            Self::Fixed(t) => Self::Fixed(t.clone()),
            Self::FromRoute(f) => Self::FromRoute(f.clone()),
        }
    }
}

struct Shared<M> {
    targets: Targets<M>,
    config: MirrorConfig,
    in_flight: Arc<Semaphore>,
    counters: MirrorCounters,
}

/// Copies each sampled request to one or more mirror services (Istio `mirror`, `mirrors`,
/// `mirrorPercentage`) without ever waiting for them: the client only sees the primary's
/// response.
///
/// - Mirrors are fixed ([`MirrorLayer::new`]) or read per request from the route the routing
///   layer matched ([`MirrorLayer::from_route`]).
/// - The primary's body streams to the primary unchanged and unbuffered, as a [`TeeBody`];
///   each mirror gets a copy bounded by [`MirrorConfig::body_limit`].
/// - A copy has the primary's method, URI, version and headers (Host with the optional
///   `-shadow` suffix), not its extensions.
/// - Each copy runs in its own `tokio::spawn`ed task under [`MirrorConfig::timeout`], holding
///   one of [`MirrorConfig::max_in_flight`] semaphore permits, with panics caught and counted.
/// - Outcomes are counted in [`MirrorCounters`] ([`MirrorLayer::counters`]).
///
/// # Readiness contract
/// `poll_ready` is exactly the primary's `poll_ready`: mirrors never take part in it, so a
/// mirror that is never ready cannot delay the primary. `call` assumes the primary is ready
/// (as the primary itself does) and drives each mirror with `oneshot` inside its task. Outside
/// a tokio runtime no copy can be spawned; copies are then counted as `failed`.
pub struct MirrorLayer<M> {
    shared: Arc<Shared<M>>,
    rng: RngSource,
}

impl<M> Clone for MirrorLayer<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rng: self.rng.clone(),
        }
    }
}

impl<M> fmt::Debug for MirrorLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<M> MirrorLayer<M> {
    /// Mirrors to fixed targets with the default [`MirrorConfig`].
    pub fn new(targets: Vec<MirrorTarget<M>>) -> Self {
        Self::build(Targets::Fixed(targets.into()), MirrorConfig::default())
    }

    /// Mirrors to the `mirror`/`mirrors` of the [`MatchedRoute`] found in each request's
    /// extensions (requests without one are not mirrored). `make` returns the service for a
    /// mirror destination (typically a clone from a map); `None` counts the copy as failed.
    pub fn from_route(make: impl Fn(&Destination) -> Option<M> + Send + Sync + 'static) -> Self {
        Self::build(Targets::FromRoute(Arc::new(make)), MirrorConfig::default())
    }

    fn build(targets: Targets<M>, config: MirrorConfig) -> Self {
        Self::with_counters(targets, config, MirrorCounters::new())
    }

    fn with_counters(targets: Targets<M>, config: MirrorConfig, counters: MirrorCounters) -> Self {
        Self {
            shared: Arc::new(Shared {
                targets,
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                config,
                counters,
            }),
            rng: RngSource::from_entropy(),
        }
    }

    /// Replaces the configuration. The counters carry on (handles taken before stay valid);
    /// the in-flight cap starts afresh, and services made before keep their configuration.
    pub fn config(self, config: MirrorConfig) -> Self {
        let targets = self.shared.targets.clone();
        let counters = self.shared.counters.clone();
        Self {
            rng: self.rng,
            ..Self::with_counters(targets, config, counters)
        }
    }

    /// Replaces the random source used for `mirrorPercentage` sampling.
    pub fn with_rng(mut self, rng: RngSource) -> Self {
        self.rng = rng;
        self
    }

    /// The counters of this layer and of every service it made.
    pub fn counters(&self) -> MirrorCounters {
        self.shared.counters.clone()
    }
}

impl<S, M> Layer<S> for MirrorLayer<M> {
    type Service = Mirror<S, M>;
    fn layer(&self, inner: S) -> Mirror<S, M> {
        Mirror {
            inner,
            shared: self.shared.clone(),
            rng: self.rng.stream(),
            source: self.rng.clone(),
        }
    }
}

/// The service made by [`MirrorLayer`]; see there for behaviour and readiness.
pub struct Mirror<S, M> {
    inner: S,
    shared: Arc<Shared<M>>,
    rng: SmallRng,
    source: RngSource,
}

impl<S: Clone, M> Clone for Mirror<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rng: self.source.stream(),
            source: self.source.clone(),
        }
    }
}

impl<S: fmt::Debug, M> fmt::Debug for Mirror<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Draws against a percentage with per-million resolution, as Envoy's fractional percent.
fn sampled(rng: &mut SmallRng, percentage: f64) -> bool {
    if percentage >= 100.0 {
        return true;
    }
    if percentage.is_nan() || percentage <= 0.0 {
        return false;
    }
    rng.random_range(0..1_000_000u32) < (percentage * 10_000.0) as u32
}

impl<S, M> Mirror<S, M>
where
    M: Clone,
{
    /// The mirror services this request is copied to, after sampling.
    fn sample<B>(&mut self, req: &Request<B>) -> Vec<M> {
        let counters = &self.shared.counters;
        let mut chosen = Vec::new();
        match &self.shared.targets {
            Targets::Fixed(targets) => {
                for t in targets.iter() {
                    if sampled(&mut self.rng, t.percentage) {
                        chosen.push(t.service.clone());
                    } else {
                        counters.record(Event::SkippedSampling);
                    }
                }
            }
            Targets::FromRoute(make) => {
                let Some(matched) = req.extensions().get::<MatchedRoute>() else {
                    return chosen;
                };
                for m in matched.route().mirrors() {
                    if !sampled(&mut self.rng, m.percentage) {
                        counters.record(Event::SkippedSampling);
                    } else if let Some(svc) = make(&m.destination) {
                        chosen.push(svc);
                    } else {
                        counters.record(Event::Failed);
                    }
                }
            }
        }
        chosen
    }
}

impl<S, M, B, MB> Service<Request<B>> for Mirror<S, M>
where
    S: Service<Request<TeeBody<B>>>,
    B: Body,
    M: Service<Request<MirrorBody>, Response = Response<MB>> + Clone + Send + 'static,
    M::Future: Send + 'static,
    MB: Body + Send + 'static,
    MB::Data: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mirrors = self.sample(&req);
        if mirrors.is_empty() {
            return self.inner.call(req.map(TeeBody::passthrough));
        }
        let shared = &self.shared;
        let counters = &shared.counters;
        let runtime = tokio::runtime::Handle::try_current().ok();
        let too_large = req.body().size_hint().lower() > shared.config.body_limit;
        let mut started = Vec::with_capacity(mirrors.len());
        for m in mirrors {
            if runtime.is_none() {
                counters.record(Event::Failed);
            } else if too_large {
                counters.record(Event::DroppedBodyTooLarge);
            } else if let Ok(permit) = shared.in_flight.clone().try_acquire_owned() {
                started.push((m, permit, Outcome::new(counters.clone())));
            } else {
                counters.record(Event::DroppedOverCap);
            }
        }
        let Some(runtime) = runtime.filter(|_| !started.is_empty()) else {
            return self.inner.call(req.map(TeeBody::passthrough));
        };

        let (parts, body) = req.into_parts();
        let outcomes: Vec<Outcome> = started.iter().map(|(_, _, o)| o.clone()).collect();
        let (tee, copies) = TeeBody::new(body, shared.config.body_limit, &outcomes);
        for ((svc, permit, outcome), copy) in started.into_iter().zip(copies) {
            let mut uri = parts.uri.clone();
            let mut headers = parts.headers.clone();
            if shared.config.shadow_host_suffix {
                shadow_request(&mut uri, &mut headers);
            }
            let mut copy_req = Request::new(copy);
            *copy_req.method_mut() = parts.method.clone();
            *copy_req.uri_mut() = uri;
            *copy_req.version_mut() = parts.version;
            *copy_req.headers_mut() = headers;
            counters.record(Event::Mirrored);
            runtime.spawn(run_copy(
                svc,
                copy_req,
                shared.config.timeout,
                outcome,
                permit,
            ));
        }
        self.inner.call(Request::from_parts(parts, tee))
    }
}

/// One mirror copy, from request to the end of its response body. The permit is held until the
/// task ends, even when it ends by a panic (the unwind drops it).
async fn run_copy<M, MB>(
    svc: M,
    req: Request<MirrorBody>,
    timeout: Duration,
    outcome: Outcome,
    _permit: OwnedSemaphorePermit,
) where
    M: Service<Request<MirrorBody>, Response = Response<MB>>,
    MB: Body,
{
    let work = async move {
        let Ok(resp) = svc.oneshot(req).await else {
            return false;
        };
        let mut body = pin!(resp.into_body());
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    };
    let result = AssertUnwindSafe(tokio::time::timeout(timeout, work))
        .catch_unwind()
        .await;
    let event = match result {
        Ok(Ok(true)) => Event::Completed,
        _ => Event::Failed,
    };
    outcome.settle(event);
}
