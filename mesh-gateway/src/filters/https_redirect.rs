//! `tls.httpsRedirect` of a plain-HTTP Gateway server: every request gets 301 to https.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower_layer::Layer;

use super::check::{CheckService, RequestCheck};

/// Answers every request with `301 Moved Permanently` to the same host and path over https
/// (the port is dropped: 443 is implied), as Envoy's `require_tls: ALL`.
///
/// ```
/// use mesh_gateway::filters::HttpsRedirectLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = HttpsRedirectLayer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// let req = http::Request::get("/cart?id=7").header("host", "shop.example.com:80").body(()).unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// assert_eq!(resp.status(), 301);
/// assert_eq!(resp.headers()["location"], "https://shop.example.com/cart?id=7");
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; no request reaches the inner service.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpsRedirectLayer;

impl<S> Layer<S> for HttpsRedirectLayer {
    type Service = CheckService<S, HttpsRedirectLayer>;
    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            check: *self,
        }
    }
}

impl RequestCheck for HttpsRedirectLayer {
    fn check<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        // The host as written (case kept), without the port.
        let authority = mesh_routing::request_authority(req).unwrap_or_default();
        let host = (authority.parse::<http::uri::Authority>())
            .map_or_else(|_| authority.to_string(), |a| a.host().to_string());
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(location) = HeaderValue::try_from(format!("https://{host}{path}")) {
            resp.headers_mut().insert(header::LOCATION, location);
        }
        Some(resp)
    }
}
