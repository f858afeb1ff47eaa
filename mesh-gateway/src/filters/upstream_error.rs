//! The edge of a proxy stack: upstream failures become Envoy's 503 instead of dropped requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

/// Envoy's body for a request whose upstream connection failed or was reset before a response.
pub const UPSTREAM_CONNECT_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

/// Turns any error of the inner service (connect refused, reset, TLS failure) into a 503 with
/// Envoy's text, logging the cause, so the client always gets an HTTP answer. Put it outermost
/// in a proxy stack.
///
/// ```
/// use mesh_gateway::filters::UpstreamErrorLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failing = service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::other("connection refused"))
/// });
/// let resp = UpstreamErrorLayer.layer(failing).oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(resp.status(), 503);
/// # }
/// ```
///
/// # Readiness
/// `poll_ready` passes through; a readiness error is reported as the inner error would be on
/// `call`, so the service itself never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamErrorLayer;

impl<S> Layer<S> for UpstreamErrorLayer {
    type Service = UpstreamErrorService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UpstreamErrorService { inner }
    }
}

/// The service of [`UpstreamErrorLayer`].
#[derive(Debug, Clone)]
pub struct UpstreamErrorService<S> {
    inner: S,
}

impl<S, Req, B> Service<Req> for UpstreamErrorService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Display,
{
    type Response = Response<Either<B, Full<Bytes>>>;
    type Error = Infallible;
    type Future = UpstreamErrorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An inner readiness error surfaces on the next call instead.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        UpstreamErrorFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`UpstreamErrorService`].
    pub struct UpstreamErrorFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for UpstreamErrorFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match ready!(self.project().inner.poll(cx)) {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed; answering 503");
                let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
                    UPSTREAM_CONNECT_ERROR.as_bytes(),
                ))));
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                resp
            }
        }))
    }
}
