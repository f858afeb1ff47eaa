//! Ingress filters: small tower layers, each usable on its own, that an edge proxy puts in
//! front of routing. Order them outermost first roughly as Envoy's connection manager does:
//! [`HeaderLimitLayer`] and [`BodyLimitLayer`], [`StripInternalHeadersLayer`],
//! [`HopByHopLayer`], [`ForwardedLayer`], [`request_id_layer`], [`SniHostCheckLayer`].

mod check;
mod forwarded;
mod hop_by_hop;
mod internal;
mod limits;
mod sni_host;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

pub use check::{CheckService, RequestCheck};
pub use forwarded::{ClientAddr, ForwardedLayer, ForwardedService, RemoteAddr};
pub use hop_by_hop::{HopByHopLayer, HopByHopService};
pub use internal::{StripInternalHeadersLayer, StripInternalHeadersService};
pub use limits::{HeaderLimitLayer, HeaderLimitService};
pub use sni_host::{SniHostCheckLayer, SniHostCheckService, TlsServerName};
/// Rejects request bodies over a byte limit with 413 (tower-http's `RequestBodyLimitLayer`:
/// a `Content-Length` over the limit is refused before reading; a streamed body is cut off).
pub use tower_http::limit::RequestBodyLimitLayer as BodyLimitLayer;

/// Response body of a filter that may answer by itself: the inner body or a local one.
pub type FilterBody<B> = Either<B, Full<Bytes>>;

/// `x-request-id`: keeps an incoming id, generates a UUID v4 when absent (Envoy's behaviour).
///
/// ```
/// use tower::{ServiceBuilder, service_fn};
/// let svc = ServiceBuilder::new()
///     .layer(mesh_gateway::filters::request_id_layer())
///     .service(service_fn(|req: http::Request<()>| async move {
///         assert!(req.headers().contains_key("x-request-id"));
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// # drop(svc);
/// ```
pub fn request_id_layer()
-> tower_http::request_id::SetRequestIdLayer<tower_http::request_id::MakeRequestUuid> {
    tower_http::request_id::SetRequestIdLayer::x_request_id(tower_http::request_id::MakeRequestUuid)
}

fn local<B>(status: StatusCode, text: &'static str) -> Response<FilterBody<B>> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *r.status_mut() = status;
    r
}
