//! A validated `Gateway`: servers with their port, protocol, hosts and TLS settings.

use std::collections::BTreeMap;

use mesh_routing::{
    Collector, ConfigErrors, Document, ObjectMeta, Problem, ResourceRef, validate_host,
};

use crate::model::{self, GatewaySpec};

/// The protocol of a server port (Istio's names, case-insensitive in YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `HTTP`: HTTP/1.1 or h2c.
    Http,
    /// `HTTP2`.
    Http2,
    /// `GRPC`.
    Grpc,
    /// `GRPC-WEB`: HTTP from browsers; HTTP/2 to the upstream.
    GrpcWeb,
    /// `HTTPS`: TLS terminated here, HTTP inside.
    Https,
    /// `TLS`: TLS routed by SNI (passthrough) or terminated to TCP.
    Tls,
    /// `TCP`: opaque bytes.
    Tcp,
    /// `MONGO`: treated as TCP.
    Mongo,
    /// `MYSQL`: treated as TCP.
    Mysql,
    /// `REDIS`: treated as TCP.
    Redis,
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "HTTP" => Self::Http,
            "HTTP2" => Self::Http2,
            "GRPC" => Self::Grpc,
            "GRPC-WEB" => Self::GrpcWeb,
            "HTTPS" => Self::Https,
            "TLS" => Self::Tls,
            "TCP" => Self::Tcp,
            "MONGO" => Self::Mongo,
            "MYSQL" => Self::Mysql,
            "REDIS" => Self::Redis,
            _ => return None,
        })
    }
    /// Whether connections on this port start with a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }
    /// Whether requests on this port are HTTP once any TLS is terminated.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Http2 | Self::Grpc | Self::GrpcWeb | Self::Https
        )
    }
    /// Whether the port carries opaque bytes (TCP, MONGO, MYSQL, REDIS).
    pub fn is_tcp(self) -> bool {
        matches!(self, Self::Tcp | Self::Mongo | Self::Mysql | Self::Redis)
    }
}

/// `tls.mode` of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Route by SNI without terminating (Istio's default mode).
    Passthrough,
    /// Terminate with the server's certificate.
    Simple,
    /// Terminate and require a client certificate signed by `caCertificates`.
    Mutual,
    /// Like `Mutual` but a client certificate is optional.
    OptionalMutual,
    /// Terminate with the mesh's SPIFFE identity and require a mesh peer.
    IstioMutual,
    /// East-west: route by Istio's `outbound_.PORT_.SUBSET_.HOST` SNI without terminating.
    AutoPassthrough,
}

/// TLS protocol versions for `minProtocolVersion` / `maxProtocolVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.0.
    V1_0,
    /// TLS 1.1.
    V1_1,
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Where a terminating server gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No certificate (passthrough and ISTIO_MUTUAL, which uses the mesh identity).
    None,
    /// `credentialName`: resolved to a file pair in a configured directory at run time.
    Name(String),
    /// `serverCertificate` / `privateKey` (and `caCertificates` for MUTUAL) file paths.
    Files {
        /// PEM certificate chain.
        certificate: String,
        /// PEM private key.
        private_key: String,
    },
}

/// A server's validated `tls` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The mode.
    pub mode: TlsMode,
    /// Plain-HTTP server that answers every request with a 301 to https.
    pub https_redirect: bool,
    /// The server certificate.
    pub credential: Credential,
    /// CA bundle for client certificates (MUTUAL, OPTIONAL_MUTUAL).
    pub ca_certificates: Option<String>,
    /// Accepted client certificate SANs (MUTUAL); empty means any.
    pub subject_alt_names: Vec<String>,
    /// Lowest TLS version offered; `None` = library default (TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version offered; `None` = library default (TLS 1.3).
    pub max_version: Option<TlsVersion>,
}

/// A server host: `namespace/host`, where the namespace restricts which VirtualServices bind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerHost {
    /// `None` for `*/` (or no prefix): VirtualServices of any namespace; else that namespace
    /// (`./` means the Gateway's own).
    pub namespace: Option<String>,
    /// Host name, lowercase; may be a wildcard or `*`.
    pub host: String,
}

/// One validated `servers[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayServer {
    /// Port number the server listens on.
    pub port: u16,
    /// Port protocol.
    pub protocol: Protocol,
    /// `port.name` or `name`, for stats and errors.
    pub name: Option<String>,
    /// Hosts this server accepts.
    pub hosts: Vec<ServerHost>,
    /// TLS settings (required for HTTPS and TLS; only `httpsRedirect` on plain HTTP).
    pub tls: Option<ServerTls>,
}

/// A Gateway that passed Istio's validation.
///
/// ```
/// let doc = &mesh_routing::parse_documents(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: public, namespace: edge}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: ["bookinfo/*.example.com"]
///     tls: {mode: SIMPLE, credentialName: example-cert}
/// "#, "gw.yaml", "default").unwrap()[0];
/// let gw = mesh_gateway::Gateway::from_document(doc).unwrap();
/// assert_eq!(gw.servers()[0].hosts[0].namespace.as_deref(), Some("bookinfo"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    resource: ResourceRef,
    selector: BTreeMap<String, String>,
    servers: Vec<GatewayServer>,
}

impl Gateway {
    /// Validates a Gateway spec; every problem is reported.
    pub fn compile(metadata: &ObjectMeta, spec: &GatewaySpec) -> Result<Self, ConfigErrors> {
        let resource =
            ResourceRef::new("Gateway", metadata.namespace.clone(), metadata.name.clone());
        let mut c = Collector::new(&resource);
        if spec.servers.is_empty() {
            c.push_at("servers", Problem::Missing);
        }
        let servers = (spec.servers.iter().enumerate())
            .filter_map(|(i, s)| {
                c.at(format_args!("servers[{i}]"), |c| {
                    compile_server(s, &metadata.namespace, c)
                })
            })
            .collect();
        c.finish(Self {
            resource: resource.clone(),
            selector: spec.selector.clone(),
            servers,
        })
    }

    /// Validates a `Gateway` document (kind and apiVersion checked).
    pub fn from_document(doc: &Document) -> Result<Self, ConfigErrors> {
        doc.check_api_version(
            mesh_routing::NETWORKING_GROUP,
            mesh_routing::NETWORKING_VERSIONS,
        )?;
        let spec: GatewaySpec = doc.decode_spec()?;
        Self::compile(&doc.metadata, &spec)
    }

    /// `Gateway namespace/name`.
    pub fn resource(&self) -> &ResourceRef {
        &self.resource
    }
    /// The name VirtualServices use to bind: `namespace/name`.
    pub fn binding_name(&self) -> String {
        format!("{}/{}", self.resource.namespace, self.resource.name)
    }
    /// Workload labels this Gateway applies to.
    pub fn selector(&self) -> &BTreeMap<String, String> {
        &self.selector
    }
    /// The servers in order.
    pub fn servers(&self) -> &[GatewayServer] {
        &self.servers
    }
}

fn compile_server(
    s: &model::Server,
    namespace: &str,
    c: &mut Collector<'_>,
) -> Option<GatewayServer> {
    let before = c.error_count();
    let (port, protocol, port_name) = match &s.port {
        None => {
            c.push_at("port", Problem::Missing);
            (None, None, None)
        }
        Some(p) => c.at(format_args!("port"), |c| {
            let number = match p.number {
                None => {
                    c.push_at("number", Problem::Missing);
                    None
                }
                Some(n) => match u16::try_from(n) {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        c.push_at("number", Problem::OutOfRange { value: f64::from(n), min: 1.0, max: 65535.0 });
                        None
                    }
                },
            };
            let protocol = match p.protocol.as_deref() {
                None => {
                    c.push_at("protocol", Problem::Missing);
                    None
                }
                Some(name) => Protocol::parse(name).or_else(|| {
                    let msg = format!("unknown protocol {name:?}; expected HTTP, HTTPS, HTTP2, GRPC, TLS, TCP or MONGO");
                    c.push_at("protocol", Problem::Invalid(msg));
                    None
                }),
            };
            (number, protocol, p.name.clone())
        }),
    };
    if s.hosts.is_empty() {
        c.push_at("hosts", Problem::Missing);
    }
    let hosts: Vec<ServerHost> = (s.hosts.iter().enumerate())
        .filter_map(|(i, h)| c.at(format_args!("hosts[{i}]"), |c| server_host(h, namespace, c)))
        .collect();
    let tls = match (&s.tls, protocol) {
        (None, Some(p)) if p.is_tls() => {
            c.push_at(
                "tls",
                Problem::Invalid("HTTPS and TLS servers need tls settings".into()),
            );
            None
        }
        (Some(t), Some(p)) => c.at(format_args!("tls"), |c| compile_tls(t, p, c)),
        _ => None,
    };
    if c.error_count() > before {
        return None;
    }
    Some(GatewayServer {
        port: port?,
        protocol: protocol?,
        name: port_name.or_else(|| s.name.clone()),
        hosts,
        tls,
    })
}

fn server_host(h: &str, namespace: &str, c: &mut Collector<'_>) -> Option<ServerHost> {
    let (ns, host) = match h.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, h),
    };
    let namespace = match ns {
        None | Some("*") => None,
        Some(".") => Some(namespace.to_string()),
        Some(ns) if is_dns_label(ns) => Some(ns.to_string()),
        Some(ns) => {
            c.push(Problem::Invalid(format!(
                "invalid namespace {ns:?} in host {h:?}; expected `*`, `.` or a namespace name"
            )));
            return None;
        }
    };
    if let Err(reason) = validate_host(host) {
        c.push(Problem::Host {
            host: host.to_string(),
            reason,
        });
        return None;
    }
    Some(ServerHost {
        namespace,
        host: host.to_ascii_lowercase(),
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn compile_tls(
    t: &model::ServerTlsSettings,
    protocol: Protocol,
    c: &mut Collector<'_>,
) -> Option<ServerTls> {
    let before = c.error_count();
    if !protocol.is_tls() {
        // Plain-text servers may only carry httpsRedirect.
        if !t.https_redirect
            || t.mode.is_some()
            || t.credential_name.is_some()
            || t.server_certificate.is_some()
        {
            c.push(Problem::Invalid(
                "a plain-text server may only set tls.httpsRedirect".into(),
            ));
            return None;
        }
        let tls = ServerTls {
            mode: TlsMode::Simple,
            https_redirect: true,
            credential: Credential::None,
            ca_certificates: None,
            subject_alt_names: Vec::new(),
            min_version: None,
            max_version: None,
        };
        return Some(tls);
    }
    let mode = match t.mode.as_deref().unwrap_or("PASSTHROUGH") {
        "PASSTHROUGH" => TlsMode::Passthrough,
        "SIMPLE" => TlsMode::Simple,
        "MUTUAL" => TlsMode::Mutual,
        "OPTIONAL_MUTUAL" => TlsMode::OptionalMutual,
        "ISTIO_MUTUAL" => TlsMode::IstioMutual,
        "AUTO_PASSTHROUGH" => TlsMode::AutoPassthrough,
        other => {
            let msg = format!(
                "unknown variant {other:?}, expected PASSTHROUGH, SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL or AUTO_PASSTHROUGH"
            );
            c.push_at("mode", Problem::Decode(msg));
            return None;
        }
    };
    let passthrough = matches!(mode, TlsMode::Passthrough | TlsMode::AutoPassthrough);
    if passthrough && protocol != Protocol::Tls {
        c.push_at(
            "mode",
            Problem::Invalid(format!(
                "{} requires port protocol TLS",
                t.mode.as_deref().unwrap_or("PASSTHROUGH")
            )),
        );
    }
    let has_files =
        t.server_certificate.is_some() || t.private_key.is_some() || t.ca_certificates.is_some();
    let credential = match (
        mode,
        &t.credential_name,
        &t.server_certificate,
        &t.private_key,
    ) {
        (TlsMode::IstioMutual, ..) if has_files || t.credential_name.is_some() => {
            c.push(Problem::Invalid(
                "ISTIO_MUTUAL uses the mesh identity; do not set certificates or credentialName"
                    .into(),
            ));
            Credential::None
        }
        (TlsMode::Passthrough | TlsMode::AutoPassthrough | TlsMode::IstioMutual, ..) => {
            Credential::None
        }
        (_, Some(name), _, _) => Credential::Name(name.clone()),
        (_, None, Some(cert), Some(key)) => Credential::Files {
            certificate: cert.clone(),
            private_key: key.clone(),
        },
        (_, None, None, _) => {
            c.push_at(
                "serverCertificate",
                Problem::Invalid("required when credentialName is not set".into()),
            );
            Credential::None
        }
        (_, None, Some(_), None) => {
            c.push_at(
                "privateKey",
                Problem::Invalid("required when credentialName is not set".into()),
            );
            Credential::None
        }
    };
    if matches!(mode, TlsMode::Mutual | TlsMode::OptionalMutual)
        && t.credential_name.is_none()
        && t.ca_certificates.is_none()
    {
        c.push_at(
            "caCertificates",
            Problem::Invalid("required for MUTUAL when credentialName is not set".into()),
        );
    }
    let min_version = t
        .min_protocol_version
        .as_deref()
        .and_then(|v| tls_version(v, "minProtocolVersion", c));
    let max_version = t
        .max_protocol_version
        .as_deref()
        .and_then(|v| tls_version(v, "maxProtocolVersion", c));
    if let (Some(min), Some(max)) = (min_version, max_version) {
        if min > max {
            c.push(Problem::Invalid(
                "minProtocolVersion is higher than maxProtocolVersion".into(),
            ));
        }
    }
    (c.error_count() == before).then(|| ServerTls {
        mode,
        https_redirect: t.https_redirect,
        credential,
        ca_certificates: t.ca_certificates.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        min_version,
        max_version,
    })
}

fn tls_version(v: &str, field: &str, c: &mut Collector<'_>) -> Option<TlsVersion> {
    match v {
        "TLS_AUTO" => None,
        "TLSV1_0" => Some(TlsVersion::V1_0),
        "TLSV1_1" => Some(TlsVersion::V1_1),
        "TLSV1_2" => Some(TlsVersion::V1_2),
        "TLSV1_3" => Some(TlsVersion::V1_3),
        other => {
            c.push_at(field, Problem::Decode(format!("unknown variant {other:?}, expected TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2 or TLSV1_3")));
            None
        }
    }
}
