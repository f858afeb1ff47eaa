//! Request header limits: too many or too large headers get 431.

use std::task::{Context, Poll};

use futures_util::TryFutureExt as _;
use futures_util::future::{Either, MapOk, Ready, ready};
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{FilterBody, local};

/// Answers 431 Request Header Fields Too Large when a request has more than `max_count`
/// header fields or their names and values add up to more than `max_bytes`. Defaults are
/// Envoy's: 100 headers, 60 KiB.
///
/// hyper already caps what it will parse; this layer enforces the mesh's own, smaller limits
/// with a proper status instead of a dropped connection.
///
/// ```
/// use mesh_gateway::filters::HeaderLimitLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = HeaderLimitLayer::new(2, 1024).layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// let req = http::Request::get("/").header("a", "1").header("b", "2").header("c", "3").body(()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), 431);
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through. A rejected request never reaches the inner service, so the
/// readiness reserved by `poll_ready` is released when the caller drops the service or calls again.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimitLayer {
    max_count: usize,
    max_bytes: usize,
}

impl Default for HeaderLimitLayer {
    fn default() -> Self {
        Self {
            max_count: 100,
            max_bytes: 60 * 1024,
        }
    }
}

impl HeaderLimitLayer {
    /// At most `max_count` header fields totalling at most `max_bytes` (names plus values).
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Self {
            max_count,
            max_bytes,
        }
    }
}

impl<S> Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimitService {
            inner,
            limits: *self,
        }
    }
}

/// The service of [`HeaderLimitLayer`].
#[derive(Debug, Clone)]
pub struct HeaderLimitService<S> {
    inner: S,
    limits: HeaderLimitLayer,
}

type Local<B, E> = Ready<Result<Response<FilterBody<B>>, E>>;
type Forward<F, B> = MapOk<F, fn(Response<B>) -> Response<FilterBody<B>>>;

impl<S, B, ResBody> Service<Request<B>> for HeaderLimitService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<FilterBody<ResBody>>;
    type Error = S::Error;
    type Future = Either<Local<ResBody, S::Error>, Forward<S::Future, ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let headers = req.headers();
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if headers.len() > self.limits.max_count || bytes > self.limits.max_bytes {
            return Either::Left(ready(Ok(local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            ))));
        }
        Either::Right(
            self.inner
                .call(req)
                .map_ok(|r| r.map(http_body_util::Either::Left)),
        )
    }
}
