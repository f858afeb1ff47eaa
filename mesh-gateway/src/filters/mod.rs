//! Ingress filters: small tower layers, each usable on its own, that an edge proxy puts in
//! front of routing. Order them outermost first roughly as Envoy's connection manager does:
//! [`HeaderLimitLayer`] and [`BodyLimitLayer`], [`StripInternalHeadersLayer`],
//! [`HopByHopLayer`], [`ForwardedLayer`], [`request_id_layer`], [`SniHostCheckLayer`].

mod authority;
mod check;
mod forwarded;
mod hop_by_hop;
mod https_redirect;
mod internal;
mod limits;
mod sni_host;
mod upgrade;
mod upstream_error;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

pub use authority::{AuthorityCheck, AuthorityCheckFuture, AuthorityCheckLayer};
pub use check::{CheckService, RequestCheck};
pub use forwarded::{ClientAddr, ForwardedLayer, ForwardedService, RemoteAddr};
pub use hop_by_hop::{HopByHopLayer, HopByHopService};
pub use https_redirect::HttpsRedirectLayer;
pub use internal::{StripInternalHeadersLayer, StripInternalHeadersService};
pub use limits::{HeaderLimitLayer, HeaderLimitService};
pub use sni_host::{SniHostCheckLayer, SniHostCheckService, TlsServerName};
/// Rejects request bodies over a byte limit with 413 (tower-http's `RequestBodyLimitLayer`:
/// a `Content-Length` over the limit is refused before reading; a streamed body is cut off).
pub use tower_http::limit::RequestBodyLimitLayer as BodyLimitLayer;
pub use upgrade::{UpgradeFuture, UpgradeLayer, UpgradeService};
pub use upstream_error::{
    UPSTREAM_CONNECT_ERROR, UpstreamErrorFuture, UpstreamErrorLayer, UpstreamErrorService,
};

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
pub fn request_id_layer() -> tower_http::request_id::SetRequestIdLayer<RandomRequestId> {
    tower_http::request_id::SetRequestIdLayer::x_request_id(RandomRequestId)
}

/// Makes UUID v4 request ids from the thread-local CSPRNG, formatted without allocating on
/// the way (an OS random call per request would cost more than the rest of the filters).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomRequestId;

impl tower_http::request_id::MakeRequestId for RandomRequestId {
    fn make_request_id<B>(
        &mut self,
        _request: &http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let out = uuid_v4_text(rand::random());
        http::HeaderValue::from_bytes(&out)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// `bits` as a version 4, RFC 4122 variant UUID in its 8-4-4-4-12 text form (the version and
/// variant bits overwrite those of `bits`).
fn uuid_v4_text(bits: u128) -> [u8; 36] {
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let mut out = [0u8; 36];
    let hex = b"0123456789abcdef";
    let mut pos = 0;
    for (i, byte) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[pos] = b'-';
            pos += 1;
        }
        out[pos] = hex[usize::from(byte >> 4)];
        out[pos + 1] = hex[usize::from(byte & 0xf)];
        pos += 2;
    }
    out
}

/// A local answer with a short text body, marked as a local reply.
pub(crate) fn local(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    mesh_routing::LocalReply::new("", text).response(status)
}

#[cfg(test)]
mod tests {
    use tower_http::request_id::MakeRequestId as _;

    use super::*;

    #[test]
    fn uuid_text_keeps_the_bits_in_order() {
        let text = uuid_v4_text(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(&text, b"01234567-89ab-4def-bedc-ba9876543210");
    }

    #[test]
    fn generated_request_ids_are_distinct_uuid_v4() {
        let req = http::Request::new(());
        let mut make = RandomRequestId;
        let a = make.make_request_id(&req).unwrap().into_header_value();
        let b = make.make_request_id(&req).unwrap().into_header_value();
        assert_ne!(a, b);
        let s = a.to_str().unwrap();
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{s}"
        );
        assert!(groups[2].starts_with('4'), "version nibble: {s}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant: {s}"
        );
        assert!(
            s.bytes()
                .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
