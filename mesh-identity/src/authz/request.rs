//! The attributes of a request that authorization looks at.

use std::net::{IpAddr, SocketAddr};

use crate::id::SpiffeId;

/// Connection facts an HTTP server puts into request extensions for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer's address (`source.ip`, `ipBlocks`).
    pub remote: SocketAddr,
    /// The local address the connection arrived on (`destination.ip`, `ports`).
    pub local: SocketAddr,
    /// The original client address when trusted proxies reported one (`remote.ip`,
    /// `remoteIpBlocks`); the peer's address otherwise.
    pub original_client: Option<IpAddr>,
    /// The TLS SNI, if any (`connection.sni`).
    pub sni: Option<String>,
}

/// The authority a request is for: the URI's (HTTP/2 `:authority`, HTTP/1 absolute form),
/// else the first `Host` header. The same rule as `mesh_routing::request_authority` (this
/// crate stands alone, so it keeps its own copy; both run the same cases).
pub(crate) fn request_authority<B>(req: &http::Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => (req.headers().get(http::header::HOST)).and_then(|h| h.to_str().ok()),
    }
}

/// Everything the evaluator needs about one request; build it with
/// [`RequestAttrs::from_request`] or by hand in tests and non-HTTP callers.
#[derive(Debug, Clone, Default)]
pub struct RequestAttrs {
    /// The peer's verified SPIFFE ID (after trust domain alias canonicalization).
    pub principal: Option<SpiffeId>,
    /// Direct peer IP.
    pub source_ip: Option<IpAddr>,
    /// Original client IP (defaults to `source_ip`).
    pub remote_ip: Option<IpAddr>,
    /// Local IP the request arrived on.
    pub destination_ip: Option<IpAddr>,
    /// Local port the request arrived on.
    pub destination_port: Option<u16>,
    /// TLS SNI.
    pub sni: Option<String>,
    /// HTTP method.
    pub method: String,
    /// URI path without the query string.
    pub path: String,
    /// Host (`:authority` or `Host` header).
    pub host: String,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// A TCP connection rather than an HTTP request: rules with HTTP-only conditions (hosts,
    /// methods, paths, headers) follow Istio's TCP semantics (see [`Self::for_connection`]).
    pub tcp: bool,
}

impl RequestAttrs {
    /// Reads a request: method, path, host, headers, and the [`crate::PeerIdentity`] and
    /// [`ConnectionInfo`] extensions when present.
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        let conn = req.extensions().get::<ConnectionInfo>();
        let host = request_authority(req).unwrap_or_default().to_owned();
        Self {
            principal: req
                .extensions()
                .get::<crate::PeerIdentity>()
                .map(|p| p.0.clone()),
            source_ip: conn.map(|c| c.remote.ip()),
            remote_ip: conn.map(|c| c.original_client.unwrap_or(c.remote.ip())),
            destination_ip: conn.map(|c| c.local.ip()),
            destination_port: conn.map(|c| c.local.port()),
            sni: conn.and_then(|c| c.sni.clone()),
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            host,
            headers: req.headers().clone(),
            tcp: false,
        }
    }

    /// A TCP connection's attributes: the peer's identity and the connection facts, no HTTP.
    /// As in Istio, an ALLOW (or AUDIT, CUSTOM) rule with HTTP-only conditions then never
    /// matches, and a DENY rule's HTTP-only conditions are ignored, so it denies more.
    pub fn for_connection(conn: &ConnectionInfo, principal: Option<SpiffeId>) -> Self {
        Self {
            principal,
            source_ip: Some(conn.remote.ip()),
            remote_ip: Some(conn.original_client.unwrap_or(conn.remote.ip())),
            destination_ip: Some(conn.local.ip()),
            destination_port: Some(conn.local.port()),
            sni: conn.sni.clone(),
            tcp: true,
            ..Self::default()
        }
    }

    /// The namespace of the Istio principal (`.../ns/NS/sa/SA`), if any.
    pub(crate) fn source_namespace(&self) -> Option<&str> {
        self.principal.as_ref().and_then(|p| p.istio_namespace())
    }

    /// Header values joined with `,`, as Envoy matches multi-valued headers.
    pub(crate) fn header(&self, name: &http::HeaderName) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, hosts: &[&str]) -> http::Request<()> {
        let mut b = http::Request::get(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    /// mesh-routing's `uri_authority_wins_then_first_host_header` cases.
    #[test]
    fn uri_authority_wins_then_first_host_header() {
        assert_eq!(
            request_authority(&req("http://a:8080/x", &[])),
            Some("a:8080")
        );
        assert_eq!(request_authority(&req("/x", &["b:9080"])), Some("b:9080"));
        assert_eq!(request_authority(&req("http://a/", &["b"])), Some("a"));
        assert_eq!(
            request_authority(&req("/x", &["first", "second"])),
            Some("first")
        );
        assert_eq!(request_authority(&req("/x", &[])), None);
        assert_eq!(
            request_authority(&req("/x", &["[::1]:80"])),
            Some("[::1]:80")
        );
    }
}
