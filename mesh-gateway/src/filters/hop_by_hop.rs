//! Removal of hop-by-hop headers (RFC 9110 section 7.6.1) in both directions.

use std::task::{Context, Poll};

use futures_util::TryFutureExt as _;
use futures_util::future::MapOk;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use tower_layer::Layer;
use tower_service::Service;

/// Headers that describe one connection and must not be forwarded (lowercase, as
/// `HeaderName`s are).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "upgrade",
];

/// Strips `Connection`, the headers it names, and the other hop-by-hop headers from requests
/// and responses, as Envoy does for each direction (`Transfer-Encoding` is connection framing
/// that hyper owns):
///
/// - `te` passes only as `te: trailers` (gRPC servers require it; any other value goes);
/// - an upgrade request (`Connection: upgrade` with `Upgrade`) keeps `Upgrade` and
///   `Connection: upgrade`, and so does a `101` response: the upgrade is proxied end to end
///   (which upgrades pass is [`UpgradeLayer`](super::UpgradeLayer)'s decision, outside this
///   one).
///
/// ```
/// use mesh_gateway::filters::HopByHopLayer;
/// use tower::{Layer, ServiceExt, service_fn};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = HopByHopLayer.layer(service_fn(|req: http::Request<()>| async move {
///     assert!(req.headers().get("x-secret-hop").is_none());
///     assert!(req.headers().get("connection").is_none());
///     assert_eq!(req.headers()["x-kept"], "1");
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let req = http::Request::get("/").header("connection", "x-secret-hop").header("x-secret-hop", "1").header("x-kept", "1");
/// svc.oneshot(req.body(()).unwrap()).await.unwrap();
/// # }
/// ```
///
/// # Readiness
/// Passes `poll_ready` through; `call` only edits headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct HopByHopLayer;

impl<S> Layer<S> for HopByHopLayer {
    type Service = HopByHopService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HopByHopService { inner }
    }
}

/// The service of [`HopByHopLayer`].
#[derive(Debug, Clone)]
pub struct HopByHopService<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for HopByHopService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(Response<ResBody>) -> Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        strip(req.headers_mut(), true);
        self.inner.call(req).map_ok(|mut resp| {
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            strip(resp.headers_mut(), switching);
            resp
        })
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names; keeps
/// `te: trailers`, and with `upgrade` an upgrade's `Upgrade` and `Connection: upgrade`.
pub(crate) fn strip(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them, or only `Connection`: a pass over the names present
    // (compared as strings, no hashing) finds what to remove, and only that is removed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let trailers = has_token(headers, &header::TE, "trailers");
    let upgrade = if upgrade && has_token(headers, &header::CONNECTION, "upgrade") {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = (headers.get_all(header::CONNECTION).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // `keep-alive`, `close`, `upgrade`... name nothing beyond the fixed list below:
            // skipping them keeps the usual `Connection: keep-alive` free of allocations.
            .filter(|n| {
                !n.eq_ignore_ascii_case("close")
                    && !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h))
                    && !is_protected(n)
            })
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    (headers.get_all(name).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            // `te` tokens may carry parameters (`trailers;q=1` is not valid, but `gzip;q=0.5` is).
            let t = t.split(';').next().unwrap_or_default();
            t.trim().eq_ignore_ascii_case(token)
        })
}

/// Headers the proxy sets or relies on, which a client's `Connection` cannot make it drop
/// (`Connection: x-request-id` would strip the request id the proxy just set).
fn is_protected(name: &str) -> bool {
    const EXACT: [&str; 5] = [
        "host",
        "x-request-id",
        "content-length",
        "transfer-encoding",
        "x-forwarded-client-cert",
    ];
    let starts = |p: &str| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    EXACT.iter().any(|h| name.eq_ignore_ascii_case(h))
        || starts("x-forwarded-")
        || starts("x-envoy-")
        || starts(":")
}

/// Whether `name` is one of [`HOP_BY_HOP`] (names are lowercase, so a string match is exact;
/// no hashing).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> [HeaderName; 6] {
        HOP_BY_HOP.map(HeaderName::from_static)
    }

    #[test]
    fn listed_and_standard_names_match_and_others_do_not() {
        let standard = [
            header::CONNECTION,
            header::PROXY_AUTHENTICATE,
            header::TE,
            header::UPGRADE,
        ];
        for name in listed().iter().chain(&standard) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            header::HOST,
            header::TRANSFER_ENCODING,
            header::TRAILER,
            HeaderName::from_static("tee"),
        ] {
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in &listed() {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), "x".parse().unwrap());
            headers.insert("x-kept", "1".parse().unwrap());
            strip(&mut headers, false);
            assert!(!headers.contains_key(name), "{name} survived");
            assert_eq!(headers["x-kept"], "1");
        }
    }

    #[test]
    fn all_of_them_at_once_and_repeated_are_removed() {
        let mut headers = HeaderMap::new();
        for name in &listed() {
            headers.append(name.clone(), "a".parse().unwrap());
            headers.append(name.clone(), "b".parse().unwrap());
        }
        headers.insert("x-kept", "1".parse().unwrap());
        strip(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-kept"], "1");
    }

    #[test]
    fn headers_named_by_connection_go_and_others_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, X-Hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-kept"], "1");
        let mut plain = headers.clone();
        strip(&mut plain, false);
        assert_eq!(plain, headers);
    }

    #[test]
    fn connection_cannot_name_the_headers_the_proxy_sets() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "X-Request-Id, x-forwarded-for, x-envoy-original-path, host, x-mine"
                .parse()
                .unwrap(),
        );
        for h in [
            "x-request-id",
            "x-forwarded-for",
            "x-envoy-original-path",
            "host",
            "x-mine",
        ] {
            headers.insert(HeaderName::from_static(h), "v".parse().unwrap());
        }
        strip(&mut headers, false);
        assert!(!headers.contains_key("x-mine"));
        for h in [
            "x-request-id",
            "x-forwarded-for",
            "x-envoy-original-path",
            "host",
        ] {
            assert!(headers.contains_key(h), "{h} was stripped");
        }
    }

    #[test]
    fn te_passes_only_as_trailers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::TE, "gzip, trailers".parse().unwrap());
        strip(&mut headers, false);
        assert_eq!(headers[header::TE], "trailers");
        let mut headers = HeaderMap::new();
        headers.insert(header::TE, "gzip;q=0.5".parse().unwrap());
        strip(&mut headers, false);
        assert!(headers.is_empty());
    }

    #[test]
    fn an_upgrade_keeps_its_upgrade_headers_only_when_asked() {
        let upgrade = || {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                "keep-alive, Upgrade, x-hop".parse().unwrap(),
            );
            h.insert(header::UPGRADE, "websocket".parse().unwrap());
            h.insert("x-hop", "1".parse().unwrap());
            h.insert("sec-websocket-key", "k".parse().unwrap());
            h
        };
        let mut kept = upgrade();
        strip(&mut kept, true);
        assert_eq!(kept[header::UPGRADE], "websocket");
        assert_eq!(kept[header::CONNECTION], "upgrade");
        assert!(!kept.contains_key("x-hop"));
        assert_eq!(kept["sec-websocket-key"], "k");
        let mut plain = upgrade();
        strip(&mut plain, false);
        assert!(!plain.contains_key(header::UPGRADE));
        assert!(!plain.contains_key(header::CONNECTION));
        // `Upgrade` without `Connection: upgrade` is no upgrade.
        let mut lone = HeaderMap::new();
        lone.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip(&mut lone, true);
        assert!(lone.is_empty());
    }
}
