//! Per-route retries (`retries`: attempts, perTryTimeout, retryOn) on tower's retry primitive.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use mesh_routing::{MatchedRoute, RetryPolicy, Route};
use rand::Rng as _;
use tower::BoxError;
use tower::retry::Policy;
use tower::timeout::error::Elapsed;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::replay::ReplayBody;
use crate::retry_on::{TryOutcome, failure_of, is_retried};
use crate::timeout::PerTryTimeout;

/// Retries requests per the route's [`RetryPolicy`], Envoy style.
///
/// - Each try runs under `perTryTimeout` ([`PerTryTimeout`]); tries are driven by tower's
///   `Retry` with a policy that follows `retryOn` as Envoy does: a response is retried by its
///   status ([`RetryOn::retries_status`](mesh_routing::RetryOn::retries_status)) or by a
///   `grpc-status` header matching a gRPC condition (`unavailable`, `cancelled`, ...); a
///   per-try timeout when 504 is retriable; an error of the inner service (no response at
///   all) by how it failed, as Envoy tells reset reasons apart
///   ([`RetryOn::retries_failure`](mesh_routing::RetryOn::retries_failure)): a connect failure,
///   a reset before or after the request was written, HTTP/2 `REFUSED_STREAM`, read from
///   mesh-mirror's [`UpstreamError`](crate::UpstreamError) (or hyper-util's client error);
///   a local error (the downstream body failed) is never retried. At most `attempts` retries
///   follow the first try, with Envoy's jittered exponential backoff (25 ms base, capped at
///   10 times the base).
/// - The request body streams to the first try as it arrives (gRPC streams and uploads are
///   not held back) inside a [`ReplayBody`] that keeps a copy of up to
///   [`RetryLayer::buffer_limit`] bytes (default 64 KiB) for a retry. Once a body has passed
///   the bound the request is simply not retried: exceeding it never fails it. Requests whose
///   policy has no retries are not copied at all. Request bodies must be `Unpin` (hyper's
///   `Incoming` is; box and pin others).
/// - After the last try, a per-try timeout is returned as tower's [`Elapsed`] error; put a
///   [`RouteTimeoutLayer`](crate::RouteTimeoutLayer) outside this layer to answer it with 504.
///
/// Place it per destination, inside the [`Weighted`](crate::Weighted) split
/// (`Weighted::from_destinations(.., |d| RetryLayer::from_route().layer(client(d)))`): as in
/// Envoy, the weighted destination is chosen once per request and its retries stay on it.
///
/// # Readiness contract
/// `poll_ready` is always ready: the inner service is cloned per request and each try waits
/// for its clone's readiness inside the response future (tower's `Retry` polls it before every
/// retry). `call` may be used without a prior `poll_ready`. The inner service is therefore
/// required to be `Clone`, and a clone should be cheap.
///
/// # The copy before the first try
/// tower's `Retry` keeps a copy of each request before its first try, in case a retry is due:
/// the head, the replayable body and, by default, every request extension (one allocation
/// each). With [`extensions_handed_back`](Self::extensions_handed_back) only the head is copied;
/// the innermost service hands each try's extensions back through an [`ExtensionsSlot`]
/// (mesh-mirror's [`Upstream`](crate::Upstream) does, others call [`hand_back`]) and a retry
/// reuses them.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    source: Source,
    buffer_limit: u64,
    backoff_base: Duration,
    handed_back: bool,
}

/// Where the innermost service hands a try's request extensions back to [`RetryLayer`] (with
/// [`RetryLayer::extensions_handed_back`]); travels in the request's extensions. Clones share.
///
/// ```
/// use mesh_mirror::{ExtensionsSlot, hand_back};
/// let slot = ExtensionsSlot::default();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(slot.clone());
/// req.extensions_mut().insert(7u32);
/// hand_back(&mut req);
/// assert!(req.extensions().is_empty());
/// let returned = slot.take().unwrap();
/// assert_eq!(returned.get::<u32>(), Some(&7));
/// assert!(returned.get::<ExtensionsSlot>().is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExtensionsSlot(Arc<Mutex<Option<http::Extensions>>>);

impl ExtensionsSlot {
    /// Takes what was handed back, if anything.
    pub fn take(&self) -> Option<http::Extensions> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Moves the request's extensions into the [`ExtensionsSlot`] it carries (the slot itself
/// excepted); does nothing for a request without one. The innermost service calls it once it
/// has read what it needs from the extensions, before handing the request to the client.
pub fn hand_back<B>(req: &mut Request<B>) {
    if let Some(slot) = req.extensions_mut().remove::<ExtensionsSlot>() {
        let extensions = std::mem::take(req.extensions_mut());
        *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(extensions);
    }
}

#[derive(Debug, Clone)]
enum Source {
    FromRoute,
    Fixed(Arc<RetryPolicy>),
}

impl RetryLayer {
    /// Retries per the `retries` of the [`MatchedRoute`] in each request's extensions (Istio's
    /// default policy when the route has none); requests without a route are not retried.
    pub fn from_route() -> Self {
        Self::with_source(Source::FromRoute)
    }

    /// Retries every request per `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self::with_source(Source::Fixed(Arc::new(policy)))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            buffer_limit: 64 * 1024,
            backoff_base: Duration::from_millis(25),
            handed_back: false,
        }
    }

    /// Copies only the request head before the first try and takes the extensions for a retry
    /// from what the innermost service handed back ([`hand_back`]). A try whose extensions were
    /// not handed back (the inner service answered before reaching the point where it hands
    /// them back, or does not) is not retried: the request could not be rebuilt.
    pub fn extensions_handed_back(mut self) -> Self {
        self.handed_back = true;
        self
    }

    /// Largest request body kept for replay, in bytes. 64 KiB by default: retries pay off for
    /// small idempotent calls, and every request in flight may hold this much. (Envoy buffers
    /// up to its 1 MiB connection buffer limit.)
    pub fn buffer_limit(mut self, bytes: u64) -> Self {
        self.buffer_limit = bytes;
        self
    }

    /// Base interval of the jittered exponential backoff between tries (Envoy's default is
    /// 25 ms). Each wait is drawn from `0..=min(base * 2^n, 10 * base)`.
    pub fn backoff(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;
    fn layer(&self, inner: S) -> RetryService<S> {
        RetryService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service made by [`RetryLayer`]; see there for behaviour and readiness.
#[derive(Debug, Clone)]
pub struct RetryService<S> {
    inner: S,
    config: RetryLayer,
}

/// All tries of one request: tower's `Retry` over the inner service under the per-try timeout.
pub type Tries<S> = tower::retry::Retry<Attempts, PerTryTimeout<S>>;

/// The retry budget of one request: tower's retry `Policy` behind [`RetryService`].
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Option<PolicyRef>,
    remaining: u32,
    retried: u32,
    backoff_base: Duration,
    /// With extensions handed back: the slot, and whether the kept copy has them again.
    slot: Option<ExtensionsSlot>,
    restored: bool,
}

#[derive(Debug, Clone)]
enum PolicyRef {
    Route(Arc<Route>),
    Fixed(Arc<RetryPolicy>),
}

impl PolicyRef {
    fn get(&self) -> &RetryPolicy {
        match self {
            Self::Route(r) => r.retries(),
            Self::Fixed(p) => p,
        }
    }
}

impl Attempts {
    fn backoff(&self) -> Duration {
        let base = self.backoff_base;
        let cap = base.saturating_mul(10);
        let upper = base.saturating_mul(1u32 << self.retried.min(16)).min(cap);
        let upper_us = u64::try_from(upper.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=upper_us))
    }
}

impl<B, RB> Policy<Request<ReplayBody<B>>, Response<RB>, BoxError> for Attempts {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<ReplayBody<B>>,
        result: &mut Result<Response<RB>, BoxError>,
    ) -> Option<Self::Future> {
        let retry_on = &self.policy.as_ref()?.get().retry_on;
        let outcome = match result {
            Ok(resp) => TryOutcome::Response(resp.status(), resp.headers()),
            Err(e) if e.is::<Elapsed>() => TryOutcome::PerTryTimeout,
            Err(e) => match failure_of(&**e) {
                Some(failure) => TryOutcome::Failed(failure),
                None => return None,
            },
        };
        if !is_retried(retry_on, outcome) {
            return None;
        }
        if self.remaining == 0 {
            mark_exhausted(result);
            return None;
        }
        // A body that outgrew the copy (or is still held by the failed try) cannot be sent
        // again.
        if !req.body().is_replayable() {
            return None;
        }
        if let Some(slot) = &self.slot {
            let returned = slot.take();
            if !self.restored {
                // The kept copy has the head only: give it this try's extensions back.
                let mut extensions = returned?;
                extensions.insert(slot.clone());
                *req.extensions_mut() = extensions;
                self.restored = true;
            }
        }
        let wait = self.backoff();
        self.remaining -= 1;
        self.retried += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        // Copied before the last try too (rare: only requests already retried get there),
        // though never sent: tower's `Retry` shows the policy only results of tries it kept a
        // copy for, and the last result must be seen to mark it `URX`.
        let mut copy = Request::new(req.body().try_clone()?);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        if self.slot.is_none() || self.restored {
            *copy.extensions_mut() = req.extensions().clone();
        }
        Some(copy)
    }
}

/// The mark [`RetryLayer`] puts in the extensions of a response it would have retried again
/// had the route's `attempts` allowed it (a 503 after the last retry, say): Envoy's `URX`
/// response flag. A last try that failed without a response becomes
/// [`UpstreamError::RetriesExhausted`](crate::UpstreamError::RetriesExhausted) instead; a per-try
/// timeout stays tower's [`Elapsed`] (Envoy's `UT`).
///
/// ```
/// use mesh_mirror::RetryLimitReached;
/// let mut resp = http::Response::new(());
/// resp.extensions_mut().insert(RetryLimitReached);
/// assert!(resp.extensions().get::<RetryLimitReached>().is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimitReached;

fn mark_exhausted<RB>(result: &mut Result<Response<RB>, BoxError>) {
    match result {
        Ok(resp) => {
            resp.extensions_mut().insert(RetryLimitReached);
        }
        Err(e) if e.is::<crate::UpstreamError>() => {
            let taken = std::mem::replace(e, Box::new(crate::UpstreamError::NoDestination));
            *e = match taken.downcast::<crate::UpstreamError>() {
                Ok(last) => Box::new(crate::UpstreamError::RetriesExhausted(last)),
                Err(other) => other,
            };
        }
        Err(_) => {}
    }
}

impl<S, B, RB> Service<Request<B>> for RetryService<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = RetryFuture<S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let policy = match &self.config.source {
            Source::Fixed(p) => Some(PolicyRef::Fixed(p.clone())),
            Source::FromRoute => req
                .extensions()
                .get::<MatchedRoute>()
                .map(|m| PolicyRef::Route(m.route().clone())),
        };
        let retry_policy = policy.as_ref().map(PolicyRef::get);
        let remaining = retry_policy.map_or(0, |p| p.attempts);
        let inner = self.inner.clone();
        let one_try = PerTryTimeout::new(inner, retry_policy.and_then(|p| p.per_try_timeout));
        let (parts, body) = req.into_parts();
        if remaining == 0 {
            // Nothing to retry: no buffering and no retry machinery, one plain try.
            let req = Request::from_parts(parts, ReplayBody::once(body));
            return RetryFuture {
                state: State::Once {
                    fut: Oneshot::new(one_try, req),
                },
            };
        }
        let mut parts = parts;
        let slot = self.config.handed_back.then(|| {
            let slot = ExtensionsSlot::default();
            parts.extensions.insert(slot.clone());
            slot
        });
        let attempts = Attempts {
            policy,
            remaining,
            retried: 0,
            backoff_base: self.config.backoff_base,
            slot,
            restored: false,
        };
        let req = Request::from_parts(parts, ReplayBody::shared(body, self.config.buffer_limit));
        RetryFuture {
            state: State::Calling {
                fut: Oneshot::new(tower::retry::Retry::new(attempts, one_try), req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RetryService`].
    pub struct RetryFuture<S, B>
    where
        Tries<S>: Service<Request<ReplayBody<B>>>,
        PerTryTimeout<S>: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        Tries<S>: Service<Request<ReplayBody<B>>>,
        PerTryTimeout<S>: Service<Request<ReplayBody<B>>>,
    {
        Calling { #[pin] fut: Oneshot<Tries<S>, Request<ReplayBody<B>>> },
        Once { #[pin] fut: Oneshot<PerTryTimeout<S>, Request<ReplayBody<B>>> },
    }
}

impl<S, B, RB> Future for RetryFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { fut } => fut.poll(cx),
            StateProj::Once { fut } => fut.poll(cx),
        }
    }
}
