//! Forwarding whole connections (TLS passthrough, TCP routes) to service endpoints, and
//! resetting the ones policy refuses.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use mesh_mirror::{EndpointAddress, Mode, Picker, RngSource, ServiceRegistry, Weights};
use mesh_routing::{Destination, WeightedDestinations};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Maps a destination's subset to its labels (`None`: no such subset).
pub type SubsetLabels = dyn Fn(&Destination) -> Option<BTreeMap<String, String>> + Send + Sync;

/// Why a connection could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The destination has no endpoints (unknown host or port, empty subset).
    #[error("no endpoints for {host}:{port}", port = .port.map_or("-".to_string(), |p| p.to_string()))]
    NoEndpoints {
        /// Destination host.
        host: String,
        /// Destination port.
        port: Option<u16>,
    },
    /// Connecting to the chosen endpoint failed or timed out.
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: io::Error,
    },
}

/// Sends a client connection to one endpoint of a weighted destination list and copies bytes
/// both ways until either side closes. Weighted choice per connection; the endpoint is chosen
/// uniformly among those the registry reports (honouring endpoint weights).
///
/// Subsets are selected by `subset_labels`, the caller's view of DestinationRule subsets.
#[derive(Clone)]
pub struct L4Forwarder {
    registry: Arc<dyn ServiceRegistry>,
    subset_labels: Arc<SubsetLabels>,
    connect_timeout: Duration,
    rng: RngSource,
}

impl std::fmt::Debug for L4Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L4Forwarder")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl L4Forwarder {
    /// A forwarder over `registry`; `subset_labels` maps a destination's subset to its labels
    /// (`None`: no such subset, so no endpoints).
    pub fn new(
        registry: Arc<dyn ServiceRegistry>,
        subset_labels: impl Fn(&Destination) -> Option<std::collections::BTreeMap<String, String>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            registry,
            subset_labels: Arc::new(subset_labels),
            connect_timeout: Duration::from_secs(10),
            rng: RngSource::from_entropy(),
        }
    }

    /// Sets the connect timeout (Envoy's default: 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Picks a destination by weight (the list is never empty: it was validated).
    pub fn choose<'a>(&self, destinations: &'a WeightedDestinations) -> Option<&'a Destination> {
        let index = Weights::new(destinations.effective_weights())
            .map_or(0, |w| Picker::new(w, Mode::Random, &self.rng).pick());
        destinations.iter().nth(index).map(|d| &d.destination)
    }

    /// Connects to an endpoint of `destination` (with its subset's labels).
    pub async fn connect(&self, destination: &Destination) -> Result<TcpStream, ForwardError> {
        let no_endpoints = || ForwardError::NoEndpoints {
            host: destination.host.clone(),
            port: destination.port,
        };
        let labels = match &destination.subset {
            Some(_) => (self.subset_labels)(destination).ok_or_else(no_endpoints)?,
            None => Default::default(),
        };
        let snapshot = self
            .registry
            .endpoints(&destination.host, destination.port)
            .ok_or_else(no_endpoints)?;
        let members: Vec<_> = snapshot
            .endpoints
            .iter()
            .filter(|e| e.matches(&labels) && e.effective_weight() > 0)
            .collect();
        // Weighted random over the subset's endpoints (weights are > 0 after the filter).
        let weights = Weights::new(members.iter().map(|e| e.effective_weight()))
            .map_err(|_| no_endpoints())?;
        let endpoint = members[Picker::new(weights, Mode::Random, &self.rng).pick()];
        let connect = async {
            match &endpoint.address {
                EndpointAddress::Socket(addr) => TcpStream::connect(addr).await,
                EndpointAddress::Dns { host, port } => {
                    TcpStream::connect((host.as_str(), *port)).await
                }
            }
        };
        let err = |source| ForwardError::Connect {
            endpoint: endpoint.address.to_string(),
            source,
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(err(e)),
            Err(_) => Err(err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timeout",
            ))),
        }
    }

    /// Connects to one of `destinations` and copies bytes both ways; returns the byte counts
    /// (client to upstream, upstream to client).
    pub async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        destinations: &WeightedDestinations,
    ) -> Result<(u64, u64), ForwardError> {
        let destination = self.choose(destinations).ok_or(ForwardError::NoEndpoints {
            host: String::new(),
            port: None,
        })?;
        let mut upstream = self.connect(destination).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .map_err(|source| ForwardError::Connect {
                endpoint: destination.host.clone(),
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
