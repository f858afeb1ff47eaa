//! Forwarding whole connections (TLS passthrough, TCP routes) to service endpoints, and
//! resetting the ones policy refuses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_mirror::{
    ConnectorIo, MakeConnector, Mode, Picker, RngSource, Upstream, UpstreamError, Weights,
};
use mesh_routing::{Destination, WeightedDestinations};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tunnel::{TunnelBytes, Tunnels};

/// Why a connection could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The destination has no endpoints (unknown host or port, empty subset, all ejected).
    #[error("no endpoints for {host}:{port}", port = .port.map_or("-".to_string(), |p| p.to_string()))]
    NoEndpoints {
        /// Destination host.
        host: String,
        /// Destination port.
        port: Option<u16>,
    },
    /// Connecting to the chosen endpoint failed or timed out (TCP or the TLS origination
    /// handshake), or the cluster's connection limit is reached.
    #[error("connecting to {host}: {source}")]
    Connect {
        /// The destination host.
        host: String,
        /// Why.
        source: UpstreamError,
    },
    /// Copying between the two connections failed, or the tunnel was closed (idle, shutdown).
    #[error("tunnel to {host}: {source}")]
    Tunnel {
        /// The destination host.
        host: String,
        /// Why.
        source: io::Error,
    },
}

/// A connection to an upstream endpoint, as a tokio stream.
pub trait L4Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> L4Stream for T {}

/// A connection [`L4Forwarder::connect`] made, and its cluster's idle timeout.
pub struct L4Connection {
    /// The stream (TLS-originated when the DestinationRule says so).
    pub stream: Box<dyn L4Stream>,
    /// `connectionPool.tcp.idleTimeout` of the cluster (zero: none).
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for L4Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L4Connection")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ConnectFn = dyn Fn(Destination, Option<SocketAddr>) -> BoxFuture<Result<L4Connection, UpstreamError>>
    + Send
    + Sync;

/// Sends a client connection to one endpoint of a weighted destination list and copies bytes
/// both ways until either side closes. The destination is chosen by weight per connection;
/// the endpoint through mesh-mirror's [`Upstream`] clusters, so a DestinationRule applies to
/// TCP and TLS routes as Istio applies it: subsets, load balancing, `tcp.maxConnections`,
/// `tcp.connectTimeout`, `tcp.idleTimeout`, outlier detection of connect failures and TLS
/// origination (SIMPLE, MUTUAL, ISTIO_MUTUAL) by the upstream's connector.
#[derive(Clone)]
pub struct L4Forwarder {
    connect: Arc<ConnectFn>,
    rng: RngSource,
}

impl std::fmt::Debug for L4Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L4Forwarder").finish_non_exhaustive()
    }
}

impl L4Forwarder {
    /// A forwarder through `upstream`'s clusters (its DestinationRules, registry and
    /// connectors).
    pub fn new<B, M>(upstream: Upstream<B, M>) -> Self
    where
        B: Send + 'static,
        M: MakeConnector,
        ConnectorIo<M>: Unpin + Send,
        Upstream<B, M>: Send + Sync,
    {
        let connect = move |dest: Destination, source: Option<SocketAddr>| {
            let upstream = upstream.clone();
            Box::pin(async move {
                let conn = upstream.connect(&dest, source).await?;
                let idle_timeout = conn.idle_timeout();
                Ok(L4Connection {
                    stream: Box::new(conn),
                    idle_timeout,
                })
            }) as BoxFuture<_>
        };
        Self {
            connect: Arc::new(connect),
            rng: RngSource::from_entropy(),
        }
    }

    /// Picks a destination by weight (the list is never empty: it was validated).
    pub fn choose<'a>(&self, destinations: &'a WeightedDestinations) -> Option<&'a Destination> {
        let index = Weights::new(destinations.effective_weights())
            .map_or(0, |w| Picker::new(w, Mode::Random, &self.rng).pick());
        destinations.iter().nth(index).map(|d| &d.destination)
    }

    /// Connects to an endpoint of `destination` for a client at `source` (used by
    /// `consistentHash.useSourceIp`).
    pub async fn connect(
        &self,
        destination: &Destination,
        source: Option<SocketAddr>,
    ) -> Result<L4Connection, ForwardError> {
        (self.connect)(destination.clone(), source)
            .await
            .map_err(|e| match e {
                UpstreamError::NoEndpoint(_) => ForwardError::NoEndpoints {
                    host: destination.host.clone(),
                    port: destination.port,
                },
                source => ForwardError::Connect {
                    host: destination.host.clone(),
                    source,
                },
            })
    }

    /// Connects to one of `destinations` and copies bytes both ways in a tunnel of
    /// `tunnels` (back-pressure, the cluster's idle timeout, drained on shutdown).
    pub async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: S,
        source: Option<SocketAddr>,
        destinations: &WeightedDestinations,
        tunnels: &Tunnels,
    ) -> Result<TunnelBytes, ForwardError> {
        let destination = self.choose(destinations).ok_or(ForwardError::NoEndpoints {
            host: String::new(),
            port: None,
        })?;
        let upstream = self.connect(destination, source).await?;
        tunnels
            .run_with_idle_timeout(client, upstream.stream, upstream.idle_timeout)
            .await
            .map_err(|source| ForwardError::Tunnel {
                host: destination.host.clone(),
                source,
            })
    }
}

/// Closes a TCP connection with a reset rather than a clean FIN: what Envoy's BlackHoleCluster
/// does to TLS and TCP connections refused by REGISTRY_ONLY.
pub fn reset(stream: TcpStream) {
    // SO_LINGER 0 turns close into RST.
    #[allow(deprecated)]
    // tokio deprecates set_linger for its blocking close; zero linger never blocks.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
