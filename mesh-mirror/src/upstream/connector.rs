//! How the upstream gets a connector per cluster: the injection point for TLS origination.

use http::Uri;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use tower_service::Service;

use crate::destination_rule::ClusterPolicy;

/// What a connector is built for: one cluster (host, subset, port) and its policy, including
/// `trafficPolicy.tls` for a TLS-originating connector.
#[derive(Debug, Clone, Copy)]
pub struct ClusterInfo<'a> {
    /// The destination host (fully qualified).
    pub host: &'a str,
    /// The subset, if the destination named one.
    pub subset: Option<&'a str>,
    /// The service port, if the destination named one.
    pub port: Option<u16>,
    /// The effective policy.
    pub policy: &'a ClusterPolicy,
    /// Whether the connections are for HTTP/2 (else HTTP/1.1): a TLS connector offers the
    /// matching ALPN, as Envoy does per cluster protocol. The upstream asks for one
    /// connector of each kind per cluster.
    pub http2: bool,
}

/// Builds the connector of each cluster: a tower service from an endpoint's URI
/// (`http://address/`, whatever the request's own authority) to a connection, as hyper-util's
/// connectors are. The default, [`PlainConnector`], opens plain TCP with the pool's
/// `connectTimeout` and `tcpKeepalive`; the gateway and identity crates provide one that wraps
/// it in TLS according to [`ClusterPolicy::tls`]. A TLS connection whose ALPN chose `h2`
/// ([`Connection::connected`]) is spoken as HTTP/2.
pub trait MakeConnector: Send + Sync + 'static {
    /// The connector type.
    type Connector: Service<
            Uri,
            Response: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static;

    /// A connector for `cluster`; called once per cluster (and again when its config changes).
    fn make_connector(&self, cluster: &ClusterInfo<'_>) -> Self::Connector;
}

/// Plain TCP: hyper-util's [`HttpConnector`] with `connectTimeout`, `tcpKeepalive` and
/// `TCP_NODELAY`; host names (DNS endpoints) are resolved with the system resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainConnector;

impl MakeConnector for PlainConnector {
    type Connector = HttpConnector;

    fn make_connector(&self, cluster: &ClusterInfo<'_>) -> HttpConnector {
        let pool = &cluster.policy.connection_pool;
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(pool.connect_timeout));
        c.set_nodelay(true);
        if let Some(k) = pool.tcp_keepalive {
            // Envoy's default keepalive time is the OS's (2 h on Linux); hyper-util needs one.
            c.set_keepalive(Some(k.time.unwrap_or(std::time::Duration::from_secs(7200))));
            c.set_keepalive_interval(k.interval);
            c.set_keepalive_retries(k.probes);
        }
        c
    }
}
