//! Validated traffic policy: what one cluster (host, subset, port) is configured to do, with
//! Istio's defaults filled in.

use std::time::Duration;

use http::HeaderName;

use crate::endpoint::Locality;

/// A DestinationRule `trafficPolicy` (or a subset's, or one `portLevelSettings` entry) after
/// validation: each part is `None` where the YAML left it out, so overrides can be layered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficPolicy {
    /// `loadBalancer`.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`.
    pub connection_pool: Option<ConnectionPool>,
    /// `outlierDetection`.
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`.
    pub tls: Option<ClientTls>,
    /// `portLevelSettings`, by port number (not nested further).
    pub port_level: Vec<(u16, TrafficPolicy)>,
}

impl TrafficPolicy {
    /// Every part that `other` sets replaces this one's (a subset over the top level).
    pub(crate) fn overridden_by(mut self, other: &TrafficPolicy) -> Self {
        if other.load_balancer.is_some() {
            self.load_balancer.clone_from(&other.load_balancer);
        }
        if other.connection_pool.is_some() {
            self.connection_pool.clone_from(&other.connection_pool);
        }
        if other.outlier_detection.is_some() {
            self.outlier_detection.clone_from(&other.outlier_detection);
        }
        if other.tls.is_some() {
            self.tls.clone_from(&other.tls);
        }
        self
    }

    /// The `portLevelSettings` entry for `port`, if any. Such an entry replaces all four
    /// parts, its omitted parts falling back to the defaults, as Istio documents ("settings
    /// specified at the destination level will not be inherited when overridden by
    /// port-level settings").
    pub(crate) fn port_entry(&self, port: Option<u16>) -> Option<&TrafficPolicy> {
        let port = port?;
        self.port_level
            .iter()
            .find(|(n, _)| *n == port)
            .map(|(_, p)| p)
    }
}

/// The effective policy of one cluster, defaults applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterPolicy {
    /// Balancing algorithm and locality settings (default: least request).
    pub load_balancer: LoadBalancer,
    /// Connection limits and timeouts (default: unlimited, as Istio configures Envoy).
    pub connection_pool: ConnectionPool,
    /// Outlier detection; `None` when the rule has none (no ejection, no locality failover).
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination settings, carried for the connector (not applied by this crate).
    pub tls: Option<ClientTls>,
}

/// `loadBalancer`: an algorithm and optional locality settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadBalancer {
    /// How an endpoint is picked.
    pub policy: LbPolicy,
    /// `localityLbSetting`.
    pub locality: Option<LocalityLbSetting>,
}

/// The balancing algorithm.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LbPolicy {
    /// Power of two choices on in-flight requests (Istio's default, also for `LEAST_CONN`).
    #[default]
    LeastRequest,
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Envoy's original-destination passthrough: not supported by the upstream (rejected
    /// when a request reaches such a cluster: there is no address to pass through to).
    Passthrough,
    /// `consistentHash`.
    ConsistentHash(ConsistentHash),
}

/// `consistentHash`: what to hash and which table to look it up in.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistentHash {
    /// The request property hashed.
    pub key: HashKey,
    /// Ring hash or maglev.
    pub table: HashTable,
}

/// The request property a consistent hash is computed from.
#[derive(Debug, Clone, PartialEq)]
pub enum HashKey {
    /// `httpHeaderName`.
    Header(HeaderName),
    /// `httpCookie`: hashed when present; generated on the response when absent and `ttl`
    /// is set, as Envoy does.
    Cookie {
        /// Cookie name.
        name: String,
        /// `path`, carried for cookie generation.
        path: Option<String>,
        /// `ttl`, carried for cookie generation.
        ttl: Option<Duration>,
    },
    /// `useSourceIp`: the client address in [`SourceAddr`](crate::SourceAddr).
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// The consistent-hash table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashTable {
    /// Ketama-style ring with at least this many entries (Istio's default 1024).
    Ring {
        /// `ringHash.minimumRingSize` (or the deprecated `minimumRingSize`).
        minimum_ring_size: u64,
    },
    /// Maglev lookup table of this (prime) size (Envoy's default 65537).
    Maglev {
        /// `maglev.tableSize`.
        table_size: u64,
    },
}

/// `localityLbSetting`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalityLbSetting {
    /// `enabled` (default true when the setting is present).
    pub enabled: bool,
    /// `distribute`: explicit traffic shares per locality.
    pub distribute: Vec<DistributeRule>,
    /// `failover`: region to fail over to from a region.
    pub failover: Vec<(String, String)>,
    /// `failoverPriority`: labels ranking endpoints by how many leading ones match the proxy's.
    pub failover_priority: Vec<String>,
}

/// One `distribute` entry: traffic from proxies in `from` goes to the `to` localities.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributeRule {
    /// Locality pattern of the proxy (`region/zone/*`).
    pub from: LocalityPattern,
    /// Locality patterns and their percentages (summing to 100).
    pub to: Vec<(LocalityPattern, u32)>,
}

/// A locality with `*` wildcards: `us-west/*`, `us-west/zone1/*`, `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityPattern(Vec<String>);

impl LocalityPattern {
    /// Parses `region/zone/subzone` where any trailing part may be `*` or omitted.
    pub fn parse(s: &str) -> Self {
        Self(s.split('/').map(str::to_string).collect())
    }

    /// Whether `locality` falls under this pattern.
    pub fn matches(&self, locality: &Locality) -> bool {
        let parts = [&locality.region, &locality.zone, &locality.subzone];
        for (i, p) in self.0.iter().enumerate() {
            if p == "*" {
                return true;
            }
            if parts.get(i).is_none_or(|part| *part != p) {
                return false;
            }
        }
        true
    }
}

/// `connectionPool` with Istio's defaults for what it leaves out (a limit of 0 in the YAML
/// also means the default, as in Istio).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionPool {
    /// `tcp.maxConnections` (default 2^32-1: unlimited).
    pub max_connections: u32,
    /// `tcp.connectTimeout` (default 10 s).
    pub connect_timeout: Duration,
    /// `tcp.tcpKeepalive`.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// `tcp.idleTimeout`: how long a proxied connection (a TCP route, an upgraded WebSocket)
    /// may go without a byte either way (Istio's default 1 h; zero: never closed for it).
    pub tcp_idle_timeout: Duration,
    /// `http.http1MaxPendingRequests` (default unlimited).
    pub http1_max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight to the cluster (default unlimited).
    pub http2_max_requests: u32,
    /// `http.maxRequestsPerConnection` (0: unlimited): a connection is closed after that many
    /// requests (HTTP/2: streams).
    pub max_requests_per_connection: u32,
    /// `http.maxRetries`; carried, not enforced here (retries run in [`crate::RetryLayer`]).
    pub max_retries: u32,
    /// `http.idleTimeout` (Istio's default 1 h).
    pub idle_timeout: Duration,
    /// `http.h2UpgradePolicy`.
    pub h2_upgrade: H2Upgrade,
    /// `http.useClientProtocol`: speak the client's protocol to the upstream (HTTP/2 for
    /// HTTP/2 clients, HTTP/1.1 otherwise); `h2UpgradePolicy` then has no effect.
    pub use_client_protocol: bool,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self {
            max_connections: u32::MAX,
            connect_timeout: Duration::from_secs(10),
            tcp_keepalive: None,
            tcp_idle_timeout: Duration::from_secs(3600),
            http1_max_pending_requests: u32::MAX,
            http2_max_requests: u32::MAX,
            max_requests_per_connection: 0,
            max_retries: u32::MAX,
            idle_timeout: Duration::from_secs(3600),
            h2_upgrade: H2Upgrade::Default,
            use_client_protocol: false,
        }
    }
}

/// `tcp.tcpKeepalive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    /// Idle time before probes start (`time`).
    pub time: Option<Duration>,
    /// Time between probes (`interval`).
    pub interval: Option<Duration>,
    /// Probes before the connection is dropped (`probes`).
    pub probes: Option<u32>,
}

/// `http.h2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum H2Upgrade {
    /// Use the port's protocol (HTTP/2 for `http2`/`grpc` ports, else HTTP/1.1).
    #[default]
    Default,
    /// Speak HTTP/1.1 unless the port is HTTP/2 or gRPC.
    DoNotUpgrade,
    /// Speak HTTP/2 (prior knowledge) to the upstream.
    Upgrade,
}

/// `outlierDetection` with Istio's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors` (502, 503, 504 and connection failures; default off: 0).
    pub consecutive_gateway: u32,
    /// `interval`: how often ejection counts decay (default 10 s).
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s); an endpoint stays out this times its ejection count.
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10).
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (default 0): below it, ejections are ignored (Envoy's panic mode).
    pub min_health_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

/// `tls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// TLS, server verified.
    Simple,
    /// Mutual TLS with the given client certificate.
    Mutual,
    /// Mutual TLS with the workload's own SPIFFE identity.
    IstioMutual,
}

/// `trafficPolicy.tls`: TLS origination settings, carried as data for the gateway and identity
/// crates to build a connector from. This crate does not originate TLS itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// `mode`.
    pub mode: TlsMode,
    /// `clientCertificate` (PEM file path).
    pub client_certificate: Option<String>,
    /// `privateKey` (PEM file path).
    pub private_key: Option<String>,
    /// `caCertificates` (PEM file path).
    pub ca_certificates: Option<String>,
    /// `credentialName` (a secret holding the above).
    pub credential_name: Option<String>,
    /// `subjectAltNames` the server certificate must carry (one of).
    pub subject_alt_names: Vec<String>,
    /// `sni`.
    pub sni: Option<String>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}
