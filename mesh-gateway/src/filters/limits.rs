//! Request header limits: too many or too large headers get 431.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower_layer::Layer;

use super::check::{CheckService, RequestCheck};
use super::local;

/// Answers 431 Request Header Fields Too Large when a request has more than `max_count`
/// header fields or their names and values, with the request target (as Envoy counts
/// `:path`), add up to more than `max_bytes`. Defaults are Envoy's: 100 headers, 60 KiB.
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
        CheckService {
            inner,
            check: *self,
        }
    }
}

/// The service of [`HeaderLimitLayer`].
pub type HeaderLimitService<S> = CheckService<S, HeaderLimitLayer>;

impl RequestCheck for HeaderLimitLayer {
    fn check<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        let headers = req.headers();
        let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        let bytes: usize = target
            + headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len())
                .sum::<usize>();
        (headers.len() > self.max_count || bytes > self.max_bytes).then(|| {
            local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            )
        })
    }
}
