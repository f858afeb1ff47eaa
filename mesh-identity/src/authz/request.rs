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
}

impl RequestAttrs {
    /// Reads a request: method, path, host, headers, and the [`crate::PeerIdentity`] and
    /// [`ConnectionInfo`] extensions when present.
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        let conn = req.extensions().get::<ConnectionInfo>();
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
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
