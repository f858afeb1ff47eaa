//! The ServiceEntry registry: ServiceEntries as a `mesh_mirror::ServiceRegistry`, so
//! DestinationRule subsets and load balancing work on their endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_mirror::{
    Endpoint, EndpointAddress as LbAddress, Locality, PortProtocol, ServiceEndpoints,
    ServiceRegistry,
};

use crate::gateway::Protocol;
use crate::server::host_match_rank;
use crate::service_entry::{EndpointAddress, Resolution, ServiceEntry, ServicePort};

/// ServiceEntries, looked up by host (exact names first, then the longest wildcard) and port.
///
/// - `resolution: STATIC`: the endpoints' IPs, on the endpoint's port for this service port
///   (its `ports` entry, else `targetPort`, else the port number).
/// - `resolution: DNS`: the endpoints' names (or the host itself when there are none),
///   resolved in the background by [`ServiceEntryRegistry::spawn_dns_refresh`]; until a name
///   resolves it is handed to the connector to resolve.
/// - `resolution: NONE`: the requested host itself, as Envoy's original-destination cluster.
///
/// ```
/// use mesh_gateway::{Bundle, ServiceEntryRegistry};
/// use mesh_mirror::ServiceRegistry as _;
/// let bundle = Bundle::load(r#"
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings.internal]
///   ports: [{number: 9080, name: http, protocol: HTTP}]
///   resolution: STATIC
///   endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, ports: {http: 9999}}]
/// "#, "se.yaml", "default").unwrap();
/// let registry = ServiceEntryRegistry::new(&bundle.service_entries);
/// let found = registry.endpoints("ratings.internal", Some(9080)).unwrap();
/// let addrs: Vec<String> = found.endpoints.iter().map(|e| e.address.to_string()).collect();
/// assert_eq!(addrs, ["127.0.0.1:9080", "127.0.0.2:9999"]);
/// ```
#[derive(Debug, Clone)]
pub struct ServiceEntryRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: Vec<ServiceEntry>,
    networks: Networks,
    /// DNS name -> resolved IPs, replaced wholesale by each refresh.
    resolved: ArcSwap<HashMap<String, Vec<std::net::IpAddr>>>,
    version: AtomicU64,
    /// Snapshots already built for the current version: `endpoints` is called once per
    /// request, and building a snapshot allocates for every endpoint.
    memo: RwLock<Memo>,
}

/// Memoized snapshots (or "unknown") by host and port, valid for one registry version.
#[derive(Debug, Default)]
struct Memo {
    version: u64,
    hosts: HashMap<String, HashMap<Option<u16>, Option<ServiceEndpoints>>>,
}

/// Hosts remembered per version at most; wildcard or NONE-resolution entries could otherwise
/// grow the memo with every name clients send. Beyond it, lookups are computed each time.
const MEMO_HOSTS: usize = 1024;

/// The proxy's network and the east-west gateways of the others.
#[derive(Debug, Default)]
struct Networks {
    local: String,
    gateways: HashMap<String, SocketAddr>,
}

impl Networks {
    /// `None` to use the endpoint as it is; `Some(None)` when it is unreachable.
    fn remote_gateway(&self, network: Option<&str>) -> Option<Option<SocketAddr>> {
        match network {
            Some(n) if !n.is_empty() && n != self.local => Some(self.gateways.get(n).copied()),
            _ => None,
        }
    }
}

impl ServiceEntryRegistry {
    /// A registry of `entries` (later entries lose ties on the same host).
    pub fn new(entries: &[ServiceEntry]) -> Self {
        Self::build(entries.to_vec(), Networks::default())
    }

    /// Makes the registry network-aware (Istio's split-horizon EDS): endpoints on another
    /// network than `local` are reached through that network's east-west gateway from
    /// `gateways` (Istio `meshNetworks`), never directly; endpoints of a network without a
    /// known gateway are left out, as they cannot be reached. Endpoints without a network are
    /// local.
    pub fn with_networks(
        self,
        local: impl Into<String>,
        gateways: HashMap<String, SocketAddr>,
    ) -> Self {
        Self::build(
            self.inner.entries.clone(),
            Networks {
                local: local.into(),
                gateways,
            },
        )
    }

    fn build(entries: Vec<ServiceEntry>, networks: Networks) -> Self {
        let resolved = ArcSwap::from_pointee(HashMap::new());
        Self {
            inner: Arc::new(Inner {
                entries,
                networks,
                resolved,
                version: AtomicU64::new(1),
                memo: RwLock::default(),
            }),
        }
    }

    /// The ServiceEntry that serves `host`, if any (exact host first, then the longest wildcard).
    pub fn service_entry(&self, host: &str) -> Option<&ServiceEntry> {
        self.find(host)
    }

    fn find(&self, host: &str) -> Option<&ServiceEntry> {
        let host = host.to_ascii_lowercase();
        let mut best: Option<(usize, &ServiceEntry)> = None;
        for s in &self.inner.entries {
            if let Some(rank) = s
                .hosts()
                .iter()
                .filter_map(|h| host_match_rank(h, &host))
                .max()
            {
                if best.is_none_or(|(b, _)| rank > b) {
                    best = Some((rank, s));
                }
            }
        }
        best.map(|(_, s)| s)
    }

    /// Every DNS name this registry would resolve.
    fn dns_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for s in self
            .inner
            .entries
            .iter()
            .filter(|s| matches!(s.resolution(), Resolution::Dns | Resolution::DnsRoundRobin))
        {
            if s.endpoints().is_empty() {
                names.extend(s.hosts().iter().filter(|h| !h.starts_with('*')).cloned());
            }
            for e in s.endpoints() {
                if let EndpointAddress::Dns(name) = &e.address {
                    names.push(name.clone());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Resolves every DNS name once now (for tests and startup), keeping failed names unresolved.
    pub async fn refresh_dns(&self) {
        let mut resolved = HashMap::new();
        for name in self.dns_names() {
            // The port does not matter for the lookup; 0 keeps it out of the way.
            let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await else {
                continue;
            };
            let mut ips: Vec<_> = addrs.map(|a| a.ip()).collect();
            ips.sort();
            ips.dedup();
            if !ips.is_empty() {
                resolved.insert(name, ips);
            }
        }
        if **self.inner.resolved.load() != resolved {
            self.inner.resolved.store(Arc::new(resolved));
            // Release: whoever sees the new version also sees the new addresses.
            self.inner.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Re-resolves DNS names every `interval` until the registry is dropped.
    pub fn spawn_dns_refresh(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                ServiceEntryRegistry { inner }.refresh_dns().await;
            }
        })
    }

    fn endpoint(
        &self,
        e: &crate::service_entry::ServiceEndpoint,
        port: &ServicePort,
    ) -> Vec<Endpoint> {
        let target = e
            .ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number);
        let remote = self.inner.networks.remote_gateway(e.network.as_deref());
        let addresses: Vec<LbAddress> = match (remote, &e.address) {
            (Some(None), _) => Vec::new(),
            (Some(Some(gateway)), _) => vec![LbAddress::Socket(gateway)],
            (None, EndpointAddress::Ip(ip)) => {
                vec![LbAddress::Socket(SocketAddr::new(*ip, target))]
            }
            (None, EndpointAddress::Dns(name)) => self.resolve(name, target),
        };
        (addresses.into_iter())
            .map(|address| Endpoint {
                address,
                labels: e.labels.clone(),
                weight: e.weight,
                locality: e
                    .locality
                    .as_deref()
                    .map(Locality::parse)
                    .unwrap_or_default(),
                network: e.network.clone().unwrap_or_default(),
                service_account: e.service_account.clone(),
            })
            .collect()
    }

    fn resolve(&self, name: &str, port: u16) -> Vec<LbAddress> {
        match self.inner.resolved.load().get(name) {
            Some(ips) => ips
                .iter()
                .map(|ip| LbAddress::Socket(SocketAddr::new(*ip, port)))
                .collect(),
            None => vec![LbAddress::Dns {
                host: name.to_string(),
                port,
            }],
        }
    }
}

fn protocol(p: Protocol) -> PortProtocol {
    match p {
        Protocol::Http2 => PortProtocol::Http2,
        Protocol::Grpc => PortProtocol::Grpc,
        Protocol::GrpcWeb => PortProtocol::GrpcWeb,
        _ => PortProtocol::Http1,
    }
}

impl ServiceRegistry for ServiceEntryRegistry {
    fn endpoints(&self, host: &str, port: Option<u16>) -> Option<ServiceEndpoints> {
        // The version is read before the snapshot is built: if a DNS refresh lands meanwhile,
        // the snapshot is filed under the older version and rebuilt on the next call.
        let version = self.inner.version.load(Ordering::Acquire);
        {
            let memo = self
                .inner
                .memo
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if memo.version == version {
                if let Some(found) = memo.hosts.get(host).and_then(|ports| ports.get(&port)) {
                    return found.clone();
                }
            }
        }
        let found = self.snapshot(host, port, version);
        let mut memo = self
            .inner
            .memo
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if memo.version < version {
            memo.version = version;
            memo.hosts.clear();
        }
        let room = memo.hosts.len() < MEMO_HOSTS || memo.hosts.contains_key(host);
        if memo.version == version && room {
            (memo.hosts.entry(host.to_string()).or_default()).insert(port, found.clone());
        }
        found
    }
}

impl ServiceEntryRegistry {
    /// Builds the snapshot of `host` on `port` as of `version`.
    fn snapshot(&self, host: &str, port: Option<u16>, version: u64) -> Option<ServiceEndpoints> {
        let service = self.find(host)?;
        let port = match port {
            Some(n) => service.ports().iter().find(|p| p.number == n)?,
            None => service.ports().first()?,
        };
        let endpoints: Vec<Endpoint> = match service.resolution() {
            Resolution::None => vec![Endpoint::with_address(LbAddress::Dns {
                host: host.to_ascii_lowercase(),
                port: port.number,
            })],
            Resolution::Dns | Resolution::DnsRoundRobin if service.endpoints().is_empty() => {
                let name = host.to_ascii_lowercase();
                self.resolve(&name, port.target_port.unwrap_or(port.number))
                    .into_iter()
                    .map(Endpoint::with_address)
                    .collect()
            }
            _ => service
                .endpoints()
                .iter()
                .flat_map(|e| self.endpoint(e, port))
                .collect(),
        };
        let endpoints = match service.resolution() {
            // DNS_ROUND_ROBIN uses one address at a time, as Envoy's LOGICAL_DNS.
            Resolution::DnsRoundRobin => endpoints.into_iter().take(1).collect(),
            _ => endpoints,
        };
        Some(ServiceEndpoints {
            version,
            protocol: protocol(port.protocol),
            endpoints: endpoints.into(),
        })
    }
}
