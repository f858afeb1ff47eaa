//! The per-route `timeout`: 504 when the whole request, retries included, takes too long.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use mesh_routing::MatchedRoute;
use tower::BoxError;
use tower::timeout::error::Elapsed;
use tower_layer::Layer;
use tower_service::Service;

/// Response body of [`RouteTimeout`]: the inner body, or the local 504's.
pub type TimeoutBody<B> = Either<B, Full<Bytes>>;

/// Envoy's body for a request that timed out upstream.
const TIMEOUT_BODY: &str = "upstream request timeout";

/// Answers 504 `upstream request timeout` when the response does not arrive within the
/// route's `timeout` (Istio default: none), or when the inner layers gave up on a per-try
/// timeout (tower's [`Elapsed`] error, as [`RetryService`](crate::RetryService) returns it
/// after its last try). Put it outside the retry layer: the route timeout spans all tries.
///
/// The deadline is taken per request: from the [`MatchedRoute`] in the request's extensions
/// ([`RouteTimeoutLayer::from_route`]) or fixed ([`RouteTimeoutLayer::fixed`]). A gRPC
/// request's `grpc-timeout` header is honoured as Istio configures Envoy: without a route
/// timeout it is the deadline, with one the shorter of the two applies. A request without
/// either runs without a deadline. Other inner errors pass through unchanged. The 504 is
/// marked as a [`LocalReply`](mesh_routing::LocalReply) (flag `UT`), so a gRPC caller gets
/// `grpc-status: 14` through [`GrpcLocalReplyLayer`](mesh_routing::GrpcLocalReplyLayer).
///
/// # Readiness contract
/// `poll_ready` is the inner service's `poll_ready` (errors boxed); the clock starts at `call`,
/// as with tower's `Timeout`. `call` assumes the inner service is ready.
#[derive(Debug, Clone, Copy)]
pub struct RouteTimeoutLayer {
    fixed: Option<Duration>,
}

impl RouteTimeoutLayer {
    /// Uses the `timeout` of the route each request matched.
    pub fn from_route() -> Self {
        Self { fixed: None }
    }

    /// Uses `timeout` for every request.
    pub fn fixed(timeout: Duration) -> Self {
        Self {
            fixed: Some(timeout),
        }
    }
}

impl<S> Layer<S> for RouteTimeoutLayer {
    type Service = RouteTimeout<S>;
    fn layer(&self, inner: S) -> RouteTimeout<S> {
        RouteTimeout {
            inner,
            fixed: self.fixed,
        }
    }
}

/// The service made by [`RouteTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RouteTimeout<S> {
    inner: S,
    fixed: Option<Duration>,
}

impl<S, B, RB> Service<Request<B>> for RouteTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<TimeoutBody<RB>>;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = self.fixed.or_else(|| {
            req.extensions()
                .get::<MatchedRoute>()
                .and_then(|m| m.route().timeout())
        });
        let grpc = (req.headers().get(GRPC_TIMEOUT))
            .filter(|_| mesh_routing::is_grpc(req.headers()))
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let timeout = match (route, grpc) {
            (Some(r), Some(g)) => Some(r.min(g)),
            (r, g) => r.or(g),
        };
        TimeoutFuture {
            inner: self.inner.call(req),
            sleep: timeout.map(tokio::time::sleep),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RouteTimeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F, RB, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<TimeoutBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(match result.map_err(Into::into) {
                Ok(resp) => Ok(resp.map(Either::Left)),
                Err(e) if e.is::<Elapsed>() => Ok(gateway_timeout()),
                Err(e) => Err(e),
            });
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            return Poll::Ready(Ok(gateway_timeout()));
        }
        Poll::Pending
    }
}

fn gateway_timeout<B>() -> Response<TimeoutBody<B>> {
    mesh_routing::LocalReply::new("UT", TIMEOUT_BODY)
        .response(StatusCode::GATEWAY_TIMEOUT)
        .map(Either::Right)
}

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// A `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits and a unit of `H`, `M`, `S`,
/// `m`, `u` or `n`); `None` when malformed.
pub(crate) fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units_and_malformed_values() {
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_grpc_timeout(b"250m"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_grpc_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout(b"5n"), Some(Duration::from_nanos(5)));
        for bad in [&b""[..], b"S", b"123456789S", b"1s", b"-1S", b"1.5S", b"10"] {
            assert_eq!(
                parse_grpc_timeout(bad),
                None,
                "{:?}",
                std::str::from_utf8(bad)
            );
        }
    }
}

/// One try under an optional deadline: tower's `Timeout` needs a duration, and most routes
/// have no `perTryTimeout`, so this wraps the inner service either way and arms a timer only
/// when there is a deadline. Expiry is tower's [`Elapsed`] error, which the retry policy and
/// [`RouteTimeout`] understand.
#[derive(Debug, Clone)]
pub struct PerTryTimeout<S> {
    inner: S,
    timeout: Option<Duration>,
}

impl<S> PerTryTimeout<S> {
    /// Wraps `inner`; `None` means no deadline.
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        Self { inner, timeout }
    }
}

impl<S, Req> Service<Req> for PerTryTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PerTryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        PerTryFuture {
            inner: self.inner.call(req),
            sleep: self.timeout.map(tokio::time::sleep),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`PerTryTimeout`].
    pub struct PerTryFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F, T, E> Future for PerTryFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            return Poll::Ready(Err(Elapsed::new().into()));
        }
        Poll::Pending
    }
}
