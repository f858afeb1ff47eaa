//! Whole connections through a cluster (TCP routes, TLS passthrough): the same subset,
//! balancing, limits, connect timeout, TLS origination and idle timeout as HTTP requests.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_util::rt::TokioIo;
use mesh_routing::Destination;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt as _;
use tower_service::Service;

use super::{Inflight, MakeConnector, Upstream, UpstreamError};
use crate::destination_rule::{HashKey, LbPolicy};
use crate::lb::hash_key;
use crate::outlier::Outcome;

/// A connection to an endpoint of a cluster, made by [`Upstream::connect`]: a tokio stream
/// that holds the cluster's connection slot (and its count on the endpoint) until dropped.
pub struct UpstreamConnection<IO> {
    io: TokioIo<IO>,
    endpoint: String,
    idle_timeout: Duration,
    _inflight: Inflight,
}

impl<IO> std::fmt::Debug for UpstreamConnection<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnection")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<IO> UpstreamConnection<IO> {
    /// The endpoint's address.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The cluster's `connectionPool.tcp.idleTimeout` (zero: none).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl<IO: hyper::rt::Read + hyper::rt::Write + Unpin> AsyncRead for UpstreamConnection<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: hyper::rt::Read + hyper::rt::Write + Unpin> AsyncWrite for UpstreamConnection<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection type of `M`'s connectors.
pub type ConnectorIo<M> = <<M as MakeConnector>::Connector as Service<Uri>>::Response;

impl<B, M: MakeConnector> Upstream<B, M> {
    /// Opens a connection to an endpoint of `dest`, as Envoy's TCP proxy does to a cluster:
    /// the DestinationRule's subset, load balancer (`consistentHash.useSourceIp` hashes
    /// `source`; other hash keys pick at random, having no request to read), connection
    /// limit (`tcp.maxConnections`: refused beyond it), connect timeout and TLS origination
    /// (`trafficPolicy.tls`, ISTIO_MUTUAL included) apply; a failed connect counts for
    /// outlier detection.
    pub async fn connect(
        &self,
        dest: &Destination,
        source: Option<SocketAddr>,
    ) -> Result<UpstreamConnection<ConnectorIo<M>>, UpstreamError> {
        let no_endpoint = || UpstreamError::NoEndpoint(dest.host.clone());
        let cluster = self.cluster(dest).map_err(|_| no_endpoint())?;
        if cluster.policy.load_balancer.policy == LbPolicy::Passthrough {
            return Err(no_endpoint());
        }
        let snapshot = (self.shared.registry)
            .endpoints(&dest.host, dest.port)
            .ok_or_else(no_endpoint)?;
        let (_, endpoints) = cluster.endpoints(snapshot, &self.shared.proxy.load());
        let hash = match &cluster.policy.load_balancer.policy {
            LbPolicy::ConsistentHash(ch) if ch.key == HashKey::SourceIp => {
                source.map(|s| hash_key(s.ip().to_string().as_bytes()))
            }
            _ => None,
        };
        let index = {
            let mut rng = self.rng_source.stream();
            endpoints.pick(&mut rng, hash, Instant::now())
        };
        let index = index.ok_or_else(no_endpoint)?;
        let target = endpoints.authority(index).cloned();
        let address = endpoints.endpoints()[index].address.to_string();
        let target = target.ok_or_else(|| UpstreamError::Address(address.clone()))?;
        let permit = cluster
            .limits
            .acquire(false)
            .await
            .map_err(|_| UpstreamError::Overflow)?;
        endpoints.start(index);
        let inflight = Inflight {
            endpoints: endpoints.clone(),
            index,
            _permit: permit,
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(target)
            .path_and_query("/")
            .build()
            .map_err(|_| UpstreamError::Address(address.clone()))?;
        match cluster.pool.connector(false).clone().oneshot(uri).await {
            Ok(io) => Ok(UpstreamConnection {
                io: TokioIo::new(io),
                endpoint: address,
                idle_timeout: cluster.policy.connection_pool.tcp_idle_timeout,
                _inflight: inflight,
            }),
            Err(e) => {
                endpoints.record(index, Outcome::Failure, Instant::now());
                Err(UpstreamError::Connect {
                    endpoint: address,
                    source: e.into(),
                })
            }
        }
    }
}
