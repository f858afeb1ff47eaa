//! The Host/SNI consistency check of TLS listeners: 421 for requests meant for another server.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower_layer::Layer;

use super::check::{CheckService, RequestCheck};
use super::local;

/// The SNI the client sent on this TLS connection, inserted by the TLS acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerName(pub String);

/// Answers 421 Misdirected Request when a request's host differs from the SNI of its TLS
/// connection. Browsers reuse one HTTP/2 connection for every name its certificate covers;
/// without this check a request could reach a server (and its policy) chosen for another
/// name. Comparison ignores case and the port; requests without SNI pass.
///
/// ```
/// use mesh_gateway::filters::{SniHostCheckLayer, TlsServerName};
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = SniHostCheckLayer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// let mut req = http::Request::get("/").header("host", "b.example.com").body(()).unwrap();
/// req.extensions_mut().insert(TlsServerName("a.example.com".into()));
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), 421);
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; a rejected request never reaches the inner service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SniHostCheckLayer;

impl<S> Layer<S> for SniHostCheckLayer {
    type Service = SniHostCheckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            check: *self,
        }
    }
}

/// The service of [`SniHostCheckLayer`].
pub type SniHostCheckService<S> = CheckService<S, SniHostCheckLayer>;

impl RequestCheck for SniHostCheckLayer {
    fn check<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        let TlsServerName(sni) = req.extensions().get::<TlsServerName>()?;
        let host = mesh_routing::request_authority(req).map(mesh_routing::request_host);
        host.is_some_and(|h| !h.eq_ignore_ascii_case(sni))
            .then(|| local(StatusCode::MISDIRECTED_REQUEST, "misdirected request"))
    }
}
