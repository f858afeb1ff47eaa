//! A validated `ServiceEntry`: services outside (or added to) the mesh's registry.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use mesh_routing::{
    Collector, ConfigErrors, Document, ObjectMeta, Problem, ResourceRef, validate_host,
};

use crate::gateway::Protocol;
use crate::model::{self, ServiceEntrySpec};

/// `location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Location {
    /// Outside the mesh (the default): no mTLS, counted as external.
    #[default]
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `resolution`: how endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// Use the destination address the client connected to (the default).
    #[default]
    None,
    /// The listed endpoint IPs.
    Static,
    /// Resolve the endpoint addresses (or the hosts) with DNS, all answers used.
    Dns,
    /// Resolve with DNS, first answer only.
    DnsRoundRobin,
}

/// A port of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port number clients use.
    pub number: u16,
    /// Protocol (HTTP, HTTPS, TLS, TCP, ...).
    pub protocol: Protocol,
    /// Port name; endpoints map names to their own ports.
    pub name: String,
    /// Port on the endpoints when it differs.
    pub target_port: Option<u16>,
}

/// Where an endpoint lives: an IP, or a DNS name for `resolution: DNS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddress {
    /// A literal IP address.
    Ip(IpAddr),
    /// A DNS name to resolve.
    Dns(String),
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEndpoint {
    /// Address.
    pub address: EndpointAddress,
    /// Port name -> endpoint port overrides.
    pub ports: BTreeMap<String, u16>,
    /// Labels (DestinationRule subsets select on them; `security.istio.io/tlsMode: istio`
    /// marks mTLS-capable endpoints).
    pub labels: BTreeMap<String, String>,
    /// Network name for multi-network meshes.
    pub network: Option<String>,
    /// `region/zone/subzone`.
    pub locality: Option<String>,
    /// Load-balancing weight (default 1).
    pub weight: u32,
    /// Service account, for the expected SPIFFE ID `spiffe://TD/ns/NS/sa/SA`.
    pub service_account: Option<String>,
}

/// A ServiceEntry that passed Istio's validation.
///
/// ```
/// let doc = &mesh_routing::parse_documents(r#"
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings.internal]
///   ports: [{number: 8080, name: http, protocol: HTTP}]
///   resolution: STATIC
///   endpoints:
///   - {address: 127.0.0.1, labels: {version: v1}}
///   - {address: 127.0.0.2, labels: {version: v2}, ports: {http: 9090}}
/// "#, "se.yaml", "default").unwrap()[0];
/// let se = mesh_gateway::ServiceEntry::from_document(doc).unwrap();
/// assert_eq!(se.endpoint_addr(&se.endpoints()[1], &se.ports()[0]).unwrap().to_string(), "127.0.0.2:9090");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    resource: ResourceRef,
    hosts: Vec<String>,
    addresses: Vec<String>,
    ports: Vec<ServicePort>,
    location: Location,
    resolution: Resolution,
    endpoints: Vec<ServiceEndpoint>,
    subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// Validates a ServiceEntry spec; every problem is reported.
    pub fn compile(metadata: &ObjectMeta, spec: &ServiceEntrySpec) -> Result<Self, ConfigErrors> {
        let resource = ResourceRef::new(
            "ServiceEntry",
            metadata.namespace.clone(),
            metadata.name.clone(),
        );
        let mut c = Collector::new(&resource);
        if spec.hosts.is_empty() {
            c.push_at("hosts", Problem::Missing);
        }
        for (i, h) in spec.hosts.iter().enumerate() {
            if h == "*" {
                c.push_at(
                    &format!("hosts[{i}]"),
                    Problem::Host {
                        host: h.clone(),
                        reason: "`*` is not allowed in a ServiceEntry",
                    },
                );
            } else if let Err(reason) = validate_host(h) {
                c.push_at(
                    &format!("hosts[{i}]"),
                    Problem::Host {
                        host: h.clone(),
                        reason,
                    },
                );
            }
        }
        for (i, a) in spec.addresses.iter().enumerate() {
            if !is_ip_or_cidr(a) {
                c.push_at(
                    &format!("addresses[{i}]"),
                    Problem::Invalid(format!("{a:?} is not an IP address or CIDR")),
                );
            }
        }
        let ports = compile_ports(&spec.ports, &mut c);
        let location = match spec.location.as_deref() {
            None | Some("MESH_EXTERNAL") => Location::MeshExternal,
            Some("MESH_INTERNAL") => Location::MeshInternal,
            Some(other) => {
                c.push_at(
                    "location",
                    Problem::Decode(format!(
                        "unknown variant {other:?}, expected MESH_EXTERNAL or MESH_INTERNAL"
                    )),
                );
                Location::MeshExternal
            }
        };
        let resolution = match spec.resolution.as_deref() {
            None | Some("NONE") => Resolution::None,
            Some("STATIC") => Resolution::Static,
            Some("DNS") => Resolution::Dns,
            Some("DNS_ROUND_ROBIN") => Resolution::DnsRoundRobin,
            Some(other) => {
                let msg = format!(
                    "unknown variant {other:?}, expected NONE, STATIC, DNS or DNS_ROUND_ROBIN"
                );
                c.push_at("resolution", Problem::Decode(msg));
                Resolution::None
            }
        };
        if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
            c.push(Problem::Conflict("workloadSelector", "endpoints"));
        }
        match resolution {
            Resolution::None if !spec.endpoints.is_empty() => {
                c.push_at(
                    "endpoints",
                    Problem::Invalid("resolution NONE takes no endpoints".into()),
                );
            }
            Resolution::Static if spec.endpoints.is_empty() && spec.workload_selector.is_none() => {
                c.push_at(
                    "endpoints",
                    Problem::Invalid("resolution STATIC needs endpoints".into()),
                );
            }
            Resolution::Dns | Resolution::DnsRoundRobin if spec.endpoints.is_empty() => {
                for (i, h) in spec
                    .hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.starts_with('*'))
                {
                    c.push_at(
                        &format!("hosts[{i}]"),
                        Problem::Host {
                            host: h.clone(),
                            reason: "DNS resolution without endpoints needs concrete hosts",
                        },
                    );
                }
            }
            _ => {}
        }
        let endpoints = (spec.endpoints.iter().enumerate())
            .filter_map(|(i, e)| {
                c.at(format_args!("endpoints[{i}]"), |c| {
                    compile_endpoint(e, resolution, &ports, c)
                })
            })
            .collect();
        for (i, san) in spec.subject_alt_names.iter().enumerate() {
            if san.is_empty() {
                c.push_at(&format!("subjectAltNames[{i}]"), Problem::Missing);
            }
        }
        let entry = Self {
            resource: resource.clone(),
            hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            addresses: spec.addresses.clone(),
            ports,
            location,
            resolution,
            endpoints,
            subject_alt_names: spec.subject_alt_names.clone(),
        };
        c.finish(entry)
    }

    /// Validates a `ServiceEntry` document (kind and apiVersion checked).
    pub fn from_document(doc: &Document) -> Result<Self, ConfigErrors> {
        doc.check_api_version(
            mesh_routing::NETWORKING_GROUP,
            mesh_routing::NETWORKING_VERSIONS,
        )?;
        Self::compile(&doc.metadata, &doc.decode_spec()?)
    }

    /// `ServiceEntry namespace/name`.
    pub fn resource(&self) -> &ResourceRef {
        &self.resource
    }
    /// Hosts (lowercase; wildcards allowed).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
    /// Virtual IPs or CIDRs.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }
    /// Ports.
    pub fn ports(&self) -> &[ServicePort] {
        &self.ports
    }
    /// `location`.
    pub fn location(&self) -> Location {
        self.location
    }
    /// `resolution`.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }
    /// Endpoints.
    pub fn endpoints(&self) -> &[ServiceEndpoint] {
        &self.endpoints
    }
    /// Expected server SANs for mTLS to this service.
    pub fn subject_alt_names(&self) -> &[String] {
        &self.subject_alt_names
    }

    /// The socket address of a STATIC endpoint for `port`: its per-name override, else the
    /// port's `targetPort`, else the port number. `None` for DNS endpoints.
    pub fn endpoint_addr(
        &self,
        endpoint: &ServiceEndpoint,
        port: &ServicePort,
    ) -> Option<SocketAddr> {
        let EndpointAddress::Ip(ip) = endpoint.address else {
            return None;
        };
        let number = endpoint
            .ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number);
        Some(SocketAddr::new(ip, number))
    }
}

fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

fn compile_ports(ports: &[model::ServicePort], c: &mut Collector<'_>) -> Vec<ServicePort> {
    let mut out: Vec<ServicePort> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        c.at(format_args!("ports[{i}]"), |c| {
            let number = match p.number.map(u16::try_from) {
                None => {
                    c.push_at("number", Problem::Missing);
                    return;
                }
                Some(Ok(n)) if n > 0 => n,
                Some(_) => {
                    c.push_at(
                        "number",
                        Problem::OutOfRange {
                            value: f64::from(p.number.unwrap_or(0)),
                            min: 1.0,
                            max: 65535.0,
                        },
                    );
                    return;
                }
            };
            let Some(protocol) = p
                .protocol
                .as_deref()
                .map_or(Some(Protocol::Tcp), Protocol::parse)
            else {
                let msg = format!(
                    "unknown protocol {:?}",
                    p.protocol.as_deref().unwrap_or_default()
                );
                c.push_at("protocol", Problem::Invalid(msg));
                return;
            };
            let name = p.name.clone().unwrap_or_else(|| format!("port-{number}"));
            if out.iter().any(|q| q.number == number) {
                c.push_at(
                    "number",
                    Problem::Invalid(format!("port number {number} is not unique")),
                );
                return;
            }
            if out.iter().any(|q| q.name == name) {
                c.push_at(
                    "name",
                    Problem::Invalid(format!("port name {name:?} is not unique")),
                );
                return;
            }
            let target_port = match p.target_port.map(u16::try_from) {
                Some(Ok(t)) if t > 0 => Some(t),
                Some(_) => {
                    c.push_at(
                        "targetPort",
                        Problem::OutOfRange {
                            value: f64::from(p.target_port.unwrap_or(0)),
                            min: 1.0,
                            max: 65535.0,
                        },
                    );
                    return;
                }
                None => None,
            };
            out.push(ServicePort {
                number,
                protocol,
                name,
                target_port,
            });
        });
    }
    out
}

fn compile_endpoint(
    e: &model::WorkloadEntry,
    resolution: Resolution,
    ports: &[ServicePort],
    c: &mut Collector<'_>,
) -> Option<ServiceEndpoint> {
    let before = c.error_count();
    let address = match e.address.as_deref() {
        None | Some("") => {
            c.push_at("address", Problem::Missing);
            None
        }
        Some(a) => match (a.parse::<IpAddr>(), resolution) {
            (Ok(ip), _) => Some(EndpointAddress::Ip(ip)),
            (Err(_), Resolution::Dns | Resolution::DnsRoundRobin)
                if validate_host(a).is_ok() && !a.contains('*') =>
            {
                Some(EndpointAddress::Dns(a.to_ascii_lowercase()))
            }
            (Err(_), Resolution::Dns | Resolution::DnsRoundRobin) => {
                c.push_at(
                    "address",
                    Problem::Host {
                        host: a.to_string(),
                        reason: "not an IP address or DNS name",
                    },
                );
                None
            }
            (Err(_), _) => {
                c.push_at(
                    "address",
                    Problem::Invalid(format!(
                        "{a:?} is not an IP address (STATIC endpoints need IPs)"
                    )),
                );
                None
            }
        },
    };
    let mut endpoint_ports = BTreeMap::new();
    for (name, port) in &e.ports {
        if !ports.iter().any(|p| &p.name == name) {
            c.push_at(
                &format!("ports.{name}"),
                Problem::Invalid(format!("port {name:?} is not defined by the ServiceEntry")),
            );
            continue;
        }
        match u16::try_from(*port) {
            Ok(p) if p > 0 => {
                endpoint_ports.insert(name.clone(), p);
            }
            _ => c.push_at(
                &format!("ports.{name}"),
                Problem::OutOfRange {
                    value: f64::from(*port),
                    min: 1.0,
                    max: 65535.0,
                },
            ),
        }
    }
    if let Some(locality) = &e.locality {
        if locality.split('/').count() > 3 || locality.split('/').any(str::is_empty) {
            c.push_at(
                "locality",
                Problem::Invalid(format!("{locality:?} is not region/zone/subzone")),
            );
        }
    }
    if c.error_count() > before {
        return None;
    }
    Some(ServiceEndpoint {
        address: address?,
        ports: endpoint_ports,
        labels: e.labels.clone(),
        network: e.network.clone(),
        locality: e.locality.clone(),
        weight: e.weight.unwrap_or(1),
        service_account: e.service_account.clone(),
    })
}
