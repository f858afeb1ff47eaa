//! Choosing a Gateway server: by port, then by SNI for TLS ports, then by Host for HTTP.

use std::collections::BTreeMap;

use crate::gateway::{Gateway, GatewayServer};

/// How specifically `pattern` matches `host` (both lowercase, no port): `None` for no match,
/// higher for more specific. Exact names beat wildcards, longer suffixes beat shorter ones,
/// and `*` matches anything least specifically.
///
/// ```
/// use mesh_gateway::host_match_rank;
/// assert!(host_match_rank("a.example.com", "a.example.com") > host_match_rank("*.example.com", "a.example.com"));
/// assert!(host_match_rank("*.example.com", "a.example.com") > host_match_rank("*", "a.example.com"));
/// assert_eq!(host_match_rank("*.example.com", "example.com"), None);
/// ```
pub fn host_match_rank(pattern: &str, host: &str) -> Option<usize> {
    if pattern == "*" {
        return Some(0);
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            (host.len() > suffix.len() && host.ends_with(suffix)).then_some(1 + suffix.len())
        }
        None => (pattern == host).then_some(usize::MAX),
    }
}

/// The intersection of a server host and a VirtualService host, if they overlap: the more
/// specific of the two, as Istio computes a gateway's effective virtual hosts.
///
/// ```
/// use mesh_gateway::intersect_hosts;
/// assert_eq!(intersect_hosts("*.example.com", "api.example.com").as_deref(), Some("api.example.com"));
/// assert_eq!(intersect_hosts("api.example.com", "*").as_deref(), Some("api.example.com"));
/// assert_eq!(intersect_hosts("*.example.com", "*.b.example.com").as_deref(), Some("*.b.example.com"));
/// assert_eq!(intersect_hosts("a.example.com", "b.example.com"), None);
/// ```
pub fn intersect_hosts(server: &str, vs: &str) -> Option<String> {
    // A pattern "covers" another when every name the other matches, it matches too.
    let covers = |a: &str, b: &str| match (a, b.strip_prefix('*')) {
        ("*", _) => true,
        (_, None) => host_match_rank(a, b).is_some(),
        (a, Some(b_suffix)) => a
            .strip_prefix('*')
            .is_some_and(|a_suffix| b_suffix.ends_with(a_suffix)),
    };
    if covers(server, vs) {
        Some(vs.to_string())
    } else if covers(vs, server) {
        Some(server.to_string())
    } else {
        None
    }
}

/// A server chosen for a connection or request, with the Gateway it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// `namespace/name` of the Gateway.
    pub gateway: &'a str,
    /// The server.
    pub server: &'a GatewayServer,
    /// Position of the server among those on its port (stable for a given table).
    pub index: usize,
}

/// The servers of a set of Gateways, grouped by port.
///
/// ```
/// use mesh_gateway::{Gateway, ServerTable};
/// let docs = mesh_routing::parse_documents(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: gw}
/// spec:
///   servers:
///   - port: {number: 443, protocol: HTTPS}
///     hosts: ["*.example.com"]
///     tls: {mode: SIMPLE, credentialName: wildcard}
///   - port: {number: 443, protocol: HTTPS}
///     hosts: [admin.example.com]
///     tls: {mode: MUTUAL, credentialName: admin}
/// "#, "gw.yaml", "default").unwrap();
/// let table = ServerTable::new(&[Gateway::from_document(&docs[0]).unwrap()]);
/// let admin = table.select_tls(443, Some("admin.example.com")).unwrap();
/// assert_eq!(admin.server.hosts[0].host, "admin.example.com");
/// assert!(table.select_tls(443, Some("other.org")).is_none()); // unknown SNI: close the handshake
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerTable {
    by_port: BTreeMap<u16, Vec<(String, GatewayServer)>>,
}

impl ServerTable {
    /// Indexes the servers of `gateways`.
    pub fn new(gateways: &[Gateway]) -> Self {
        let mut by_port: BTreeMap<u16, Vec<(String, GatewayServer)>> = BTreeMap::new();
        for gw in gateways {
            for server in gw.servers() {
                by_port
                    .entry(server.port)
                    .or_default()
                    .push((gw.binding_name(), server.clone()));
            }
        }
        Self { by_port }
    }

    /// Every port some server listens on.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_port.keys().copied()
    }

    /// Servers on `port`.
    pub fn servers(&self, port: u16) -> impl Iterator<Item = Selected<'_>> {
        self.by_port
            .get(&port)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, (gateway, server))| Selected {
                gateway,
                server,
                index,
            })
    }

    /// The TLS server on `port` whose hosts best match the SNI. Without SNI only a `*` host
    /// matches. `None` means: close the handshake.
    pub fn select_tls(&self, port: u16, sni: Option<&str>) -> Option<Selected<'_>> {
        let sni = sni.map(str::to_ascii_lowercase);
        self.best(
            port,
            |s| s.protocol.is_tls(),
            |pattern| match &sni {
                Some(name) => host_match_rank(pattern, name),
                None => (pattern == "*").then_some(0),
            },
        )
    }

    /// The plain-text HTTP server on `port` whose hosts best match `host` (lowercase, no port).
    pub fn select_http(&self, port: u16, host: &str) -> Option<Selected<'_>> {
        self.best(
            port,
            |s| !s.protocol.is_tls() && s.protocol.is_http(),
            |pattern| host_match_rank(pattern, host),
        )
    }

    fn best(
        &self,
        port: u16,
        eligible: impl Fn(&GatewayServer) -> bool,
        rank: impl Fn(&str) -> Option<usize>,
    ) -> Option<Selected<'_>> {
        let mut best: Option<(usize, Selected<'_>)> = None;
        for candidate in self.servers(port).filter(|s| eligible(s.server)) {
            let score = candidate
                .server
                .hosts
                .iter()
                .filter_map(|h| rank(&h.host))
                .max();
            if let Some(score) = score {
                // Ties keep the first server, as Istio keeps the first matching filter chain.
                if best.as_ref().is_none_or(|(b, _)| score > *b) {
                    best = Some((score, candidate));
                }
            }
        }
        best.map(|(_, s)| s)
    }
}
