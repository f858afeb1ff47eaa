//! The edge of a proxy stack: upstream failures become Envoy's 503 instead of dropped requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::borrow::Cow;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use mesh_mirror::UpstreamError;
use mesh_routing::LocalReply;
use tower_layer::Layer;
use tower_service::Service;

/// Envoy's body for a request whose upstream connection failed before a response (the
/// reset reason varies with the failure; this is the text of a connect failure).
pub const UPSTREAM_CONNECT_ERROR: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

const PREFIX: &str = "upstream connect error or disconnect/reset before headers. reset reason: ";

/// Turns any error of the inner service (connect refused, reset, TLS failure) into a 503 with
/// Envoy's text, logging the cause, so the client always gets an HTTP answer. Put it outermost
/// in a proxy stack.
///
/// The text names the reset reason as Envoy does (`connection failure`, `connection
/// termination`, `remote reset`, `remote refused stream reset`, `local reset`) and the reply is
/// marked as a [`LocalReply`](mesh_routing::LocalReply) with the matching response flag
/// (`UF`, `UC`, `UR`, `DC`), read from mesh-mirror's
/// [`UpstreamError`](mesh_mirror::UpstreamError); any other error counts as a connection
/// failure.
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
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match ready!(self.project().inner.poll(cx)) {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => {
                let e = e.into();
                if (e.downcast_ref::<UpstreamError>())
                    .is_some_and(UpstreamError::is_malformed_request)
                {
                    // The client's fault, not the upstream's: Envoy's downstream protocol error.
                    tracing::debug!(error = %e, "malformed request; answering 400");
                    return Poll::Ready(Ok(LocalReply::new("DPE", "")
                        .response(StatusCode::BAD_REQUEST)
                        .map(Either::Right)));
                }
                tracing::warn!(error = %e, "upstream request failed; answering 503");
                let (flag, reason) = match e.downcast_ref::<UpstreamError>() {
                    Some(u) => (u.response_flag(), u.reset_reason()),
                    None => ("UF", "connection failure"),
                };
                let text = if reason == "connection failure" {
                    Cow::Borrowed(UPSTREAM_CONNECT_ERROR)
                } else {
                    Cow::Owned(format!("{PREFIX}{reason}"))
                };
                LocalReply::new(flag, text)
                    .response(StatusCode::SERVICE_UNAVAILABLE)
                    .map(Either::Right)
            }
        }))
    }
}
