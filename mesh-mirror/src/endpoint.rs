//! Endpoints: the concrete addresses a service's traffic goes to, with the labels subsets
//! select on and the locality that locality-aware balancing ranks by.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// The label Istio puts on endpoints whose proxy accepts mutual TLS (`tlsMode: istio`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Where to connect: an IP address and port, or a host name the connector resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddress {
    /// An IP endpoint (`resolution: STATIC`, or a Kubernetes pod).
    Socket(SocketAddr),
    /// A name resolved when connecting (`resolution: DNS`); resolution is the connector's job.
    Dns {
        /// Host name to resolve.
        host: String,
        /// Target port.
        port: u16,
    },
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(addr) => write!(f, "{addr}"),
            Self::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// `region/zone/subzone` of a workload or endpoint; empty parts are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// Region, e.g. `us-west1`.
    pub region: String,
    /// Zone, e.g. `us-west1-a`.
    pub zone: String,
    /// Subzone (Istio's `topology.istio.io/subzone`).
    pub subzone: String,
}

impl Locality {
    /// Parses Istio's `region/zone/subzone` notation (trailing parts may be omitted).
    ///
    /// ```
    /// let l = mesh_mirror::Locality::parse("us-west/zone1");
    /// assert_eq!((l.region.as_str(), l.zone.as_str(), l.subzone.as_str()), ("us-west", "zone1", ""));
    /// ```
    pub fn parse(s: &str) -> Self {
        let mut parts = s.splitn(3, '/');
        let mut next = || parts.next().unwrap_or_default().to_string();
        Self {
            region: next(),
            zone: next(),
            subzone: next(),
        }
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

/// One endpoint of a service port, as a [`ServiceRegistry`](crate::ServiceRegistry) reports it.
///
/// The registry has already mapped the service port onto this endpoint's target port (a
/// ServiceEntry endpoint's `ports` map), so `address` is where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect for the requested service port.
    pub address: EndpointAddress,
    /// Labels that DestinationRule subsets select on.
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (Istio's `weight`); 0 is treated as 1, as Istio does.
    pub weight: u32,
    /// Where the endpoint runs.
    pub locality: Locality,
    /// The network the endpoint is on (multi-network meshes); empty for the local one.
    pub network: String,
    /// The endpoint's service account, for checking its SPIFFE identity under mTLS.
    pub service_account: Option<String>,
}

impl Endpoint {
    /// An endpoint at `addr` with weight 1 and no labels, locality or identity.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_address(EndpointAddress::Socket(addr))
    }

    /// An endpoint at `address` with weight 1 and no labels, locality or identity.
    pub fn with_address(address: EndpointAddress) -> Self {
        Self {
            address,
            labels: BTreeMap::new(),
            weight: 1,
            locality: Locality::default(),
            network: String::new(),
            service_account: None,
        }
    }

    /// Adds a label (builder style).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the weight (builder style).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the locality from `region/zone/subzone` (builder style).
    pub fn locality(mut self, locality: &str) -> Self {
        self.locality = Locality::parse(locality);
        self
    }

    /// The weight used for balancing: at least 1.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// Whether the endpoint is labelled as reachable with Istio mutual TLS
    /// (`security.istio.io/tlsMode: istio`).
    pub fn is_mtls_capable(&self) -> bool {
        self.labels
            .get(TLS_MODE_LABEL)
            .is_some_and(|v| v == "istio")
    }

    /// Whether every `selector` label is present on the endpoint with the same value (an
    /// empty selector selects everything).
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_selector_needs_every_label() {
        let e = Endpoint::new(([127, 0, 0, 1], 80).into())
            .label("version", "v1")
            .label("app", "reviews");
        let sel = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(e.matches(&sel(&[])));
        assert!(e.matches(&sel(&[("version", "v1")])));
        assert!(!e.matches(&sel(&[("version", "v1"), ("track", "canary")])));
        assert!(!e.matches(&sel(&[("version", "v2")])));
    }

    #[test]
    fn tls_mode_label_marks_mtls_capable() {
        let e = Endpoint::new(([127, 0, 0, 1], 80).into());
        assert!(!e.is_mtls_capable());
        assert!(e.label(TLS_MODE_LABEL, "istio").is_mtls_capable());
    }
}
