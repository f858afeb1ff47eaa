//! Fitting a request to the protocol the upstream speaks, whatever the downstream spoke:
//! version, where the authority goes (`Host` for HTTP/1.1, `:authority` for HTTP/2; never
//! the endpoint's address), the headers HTTP/2 forbids, and WebSocket over HTTP/2 (RFC 8441
//! extended CONNECT) as an HTTP/1.1 upgrade.

use http::header::{CONNECTION, HOST, HeaderValue, TE, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

/// The protocol of an upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Http1,
    Http2,
}

/// Whether `req` asks for an HTTP/1.1 protocol upgrade (`Connection: upgrade` with an
/// `Upgrade` header), which only an HTTP/1.1 connection can carry.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    (headers.get_all(CONNECTION).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Turns an RFC 8441 extended CONNECT (`:protocol`, as hyper's server gives it) into the
/// HTTP/1.1 upgrade an upstream understands: `GET` with `Upgrade: <protocol>` and
/// `Connection: upgrade`, and for WebSocket a fresh `Sec-WebSocket-Key` (HTTP/2 WebSocket has
/// none, and an HTTP/1.1 server requires one). Returns whether it did.
pub(crate) fn extended_connect_to_upgrade<B>(req: &mut Request<B>) -> bool {
    if req.method() != Method::CONNECT {
        return false;
    }
    let Some(protocol) = req.extensions_mut().remove::<hyper::ext::Protocol>() else {
        return false;
    };
    let Ok(upgrade) = HeaderValue::from_str(protocol.as_str()) else {
        return false;
    };
    *req.method_mut() = Method::GET;
    let websocket = protocol.as_str().eq_ignore_ascii_case("websocket");
    let headers = req.headers_mut();
    headers.insert(UPGRADE, upgrade);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if websocket && !headers.contains_key("sec-websocket-key") {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        if let Ok(v) = HeaderValue::from_str(&key) {
            headers.insert("sec-websocket-key", v);
        }
    }
    true
}

/// The HTTP/2 side of [`extended_connect_to_upgrade`]: the upstream's `101` becomes `200`
/// without the HTTP/1.1 upgrade headers.
pub(crate) fn upgrade_response_to_connect<B>(resp: &mut Response<B>) {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        headers.remove(UPGRADE);
        headers.remove(CONNECTION);
        headers.remove("sec-websocket-accept");
    }
}

/// Fits `req` to `wire`. The request's own authority (its URI's, else `Host`) is kept as
/// `Host` (HTTP/1.1) or `:authority` (HTTP/2); `endpoint` stands in only when the request has
/// none. HTTP/1.1 gets an origin-form target (authority-form for `CONNECT`); HTTP/2 an
/// absolute URI and none of the connection-specific headers RFC 9113 forbids (`te` only as
/// `trailers`).
pub(crate) fn adapt<B>(req: &mut Request<B>, wire: Wire, endpoint: &Authority) {
    if wire == Wire::Http1 && is_http1_ready(req) {
        // The usual HTTP/1.1 request: nothing to rebuild.
        *req.version_mut() = Version::HTTP_11;
        return;
    }
    let authority = match req.uri().authority() {
        Some(a) => a.clone(),
        None => (req.headers().get(HOST))
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .unwrap_or_else(|| endpoint.clone()),
    };
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match wire {
        Wire::Http1 => {
            *req.version_mut() = Version::HTTP_11;
            let host = HeaderValue::from_str(authority.as_str());
            let uri = if req.method() == Method::CONNECT {
                Uri::from(authority)
            } else {
                Uri::from(path)
            };
            *req.uri_mut() = uri;
            if let Ok(host) = host {
                req.headers_mut().insert(HOST, host);
            }
        }
        Wire::Http2 => {
            *req.version_mut() = Version::HTTP_2;
            let scheme = req.uri().scheme().cloned().unwrap_or(Scheme::HTTP);
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(scheme);
            parts.authority = Some(authority);
            parts.path_and_query = Some(path);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
            strip_for_http2(req.headers_mut());
        }
    }
}

/// Whether `req` already has what [`adapt`] would give it for HTTP/1.1: an origin-form target
/// (not `CONNECT`) and exactly one `Host`, a valid authority.
fn is_http1_ready<B>(req: &Request<B>) -> bool {
    if req.uri().authority().is_some()
        || req.uri().path_and_query().is_none()
        || req.method() == Method::CONNECT
    {
        return false;
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    hosts
        .next()
        .is_some_and(|h| Authority::try_from(h.as_bytes()).is_ok())
        && hosts.next().is_none()
}

/// Removes what HTTP/2 forbids in a request (RFC 9113 section 8.2.2) and `Host`, which
/// `:authority` carries.
fn strip_for_http2(headers: &mut HeaderMap) {
    headers.remove(HOST);
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
    if let Some(te) = headers.get(TE) {
        let trailers = te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(TE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Authority {
        "10.0.0.1:9080".parse().unwrap()
    }

    #[test]
    fn an_http2_request_to_http1_keeps_its_authority_as_host() {
        let mut req = Request::get("https://reviews:9080/p?q=1")
            .version(Version::HTTP_2)
            .header("te", "trailers")
            .body(())
            .unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.headers()["host"], "reviews:9080");
        assert_eq!(req.headers()["te"], "trailers");
    }

    #[test]
    fn an_http1_request_to_http2_moves_host_into_authority() {
        let mut req = Request::post("/pkg.Svc/Call")
            .header("host", "grpc.example")
            .header("te", "trailers, deflate")
            .header("connection", "keep-alive")
            .header("keep-alive", "5")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        adapt(&mut req, Wire::Http2, &endpoint());
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri(), "http://grpc.example/pkg.Svc/Call");
        assert!(!req.headers().contains_key("host"));
        assert_eq!(req.headers()["te"], "trailers");
        for h in ["connection", "keep-alive", "transfer-encoding"] {
            assert!(!req.headers().contains_key(h), "{h}");
        }
    }

    #[test]
    fn te_other_than_trailers_is_dropped_for_http2() {
        let mut req = Request::get("/").header("te", "gzip").body(()).unwrap();
        adapt(&mut req, Wire::Http2, &endpoint());
        assert!(!req.headers().contains_key("te"));
    }

    #[test]
    fn without_any_authority_the_endpoint_stands_in() {
        let mut req = Request::get("/x").body(()).unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.headers()["host"], "10.0.0.1:9080");
        let mut req = Request::get("/x").body(()).unwrap();
        adapt(&mut req, Wire::Http2, &endpoint());
        assert_eq!(req.uri(), "http://10.0.0.1:9080/x");
    }

    #[test]
    fn an_http1_request_with_one_valid_host_is_left_as_it_is() {
        let mut req = Request::get("/x?y=1")
            .version(Version::HTTP_10)
            .header("host", "Reviews:9080")
            .body(())
            .unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()["host"], "Reviews:9080");
        // Two Host headers become the first; an invalid one gives way to the endpoint.
        let mut req = Request::get("/x")
            .header("host", "a.example")
            .header("host", "b.example")
            .body(())
            .unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
        assert_eq!(hosts, ["a.example"]);
        let mut req = Request::get("/x").header("host", "a b").body(()).unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.headers()["host"], "10.0.0.1:9080");
    }

    #[test]
    fn absolute_form_authority_wins_over_host() {
        let mut req = Request::get("http://a.example/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.headers()["host"], "a.example");
        assert_eq!(req.uri(), "/x");
    }

    #[test]
    fn extended_connect_becomes_a_websocket_upgrade_and_back() {
        let mut req = Request::connect("https://chat.example/ws")
            .version(Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert!(extended_connect_to_upgrade(&mut req));
        assert_eq!(req.method(), Method::GET);
        assert!(is_upgrade(&req));
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(req.headers()["sec-websocket-key"].len(), 24);
        adapt(&mut req, Wire::Http1, &endpoint());
        assert_eq!(req.uri(), "/ws");
        assert_eq!(req.headers()["host"], "chat.example");

        let mut resp = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", "x")
            .body(())
            .unwrap();
        upgrade_response_to_connect(&mut resp);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().is_empty());
    }

    #[test]
    fn plain_connect_and_ordinary_requests_are_not_translated() {
        let mut req = Request::connect("db.example:5432").body(()).unwrap();
        assert!(!extended_connect_to_upgrade(&mut req));
        let mut req = Request::get("/").body(()).unwrap();
        assert!(!extended_connect_to_upgrade(&mut req));
        assert!(!is_upgrade(&req));
    }
}
