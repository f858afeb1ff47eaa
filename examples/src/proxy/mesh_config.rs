//! Istio `MeshConfig` (the `mesh` key of the `istio` ConfigMap): the fields that apply to one
//! proxy without a control plane, typed; everything else MeshConfig has is accepted and
//! ignored, because MeshConfig is large and operators paste whole files.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mesh_gateway::OutboundMode;
use mesh_identity::ForwardClientCert;
use mesh_routing::PathNormalization;
use serde::{Deserialize, Serialize};

/// The MeshConfig fields mesh-proxy acts on, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeshConfig {
    /// `outboundTrafficPolicy.mode` (ALLOW_ANY when unset); a `Sidecar` resource overrides it.
    #[serde(serialize_with = "serialize_mode")]
    pub outbound_mode: OutboundMode,
    /// `trustDomainAliases`: other trust domains whose identities count as local.
    pub trust_domain_aliases: Vec<String>,
    /// `meshNetworks.networks`: per network, how to reach it.
    pub networks: BTreeMap<String, Network>,
    /// `defaultConfig.drainDuration`: how long a graceful shutdown waits for requests.
    pub drain_duration: Option<Duration>,
    /// `defaultConfig.proxyMetadata`, kept for the config dump.
    pub proxy_metadata: BTreeMap<String, String>,
    /// `defaultConfig.gatewayTopology.forwardClientCertDetails` (gateways; default
    /// `SANITIZE_SET`).
    #[serde(serialize_with = "serialize_fcc")]
    pub forward_client_cert: ForwardClientCert,
    /// `defaultConfig.gatewayTopology.numTrustedProxies`: trusted hops in front of the
    /// gateways for `x-forwarded-for` (default 0).
    pub num_trusted_proxies: usize,
    /// `pathNormalization.normalization` (Istio's default: `BASE`).
    #[serde(serialize_with = "serialize_normalization")]
    pub path_normalization: PathNormalization,
}

/// One network of `meshNetworks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// Which endpoints belong to the network.
    #[serde(default)]
    pub endpoints: Vec<NetworkEndpoints>,
    /// The network's east-west gateways.
    #[serde(default)]
    pub gateways: Vec<NetworkGateway>,
}

/// `meshNetworks.networks.N.endpoints[i]`: `fromCidr` or `fromRegistry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkEndpoints {
    /// Endpoints whose address is in this CIDR.
    pub from_cidr: Option<String>,
    /// Endpoints of this registry (cluster).
    pub from_registry: Option<String>,
}

/// `meshNetworks.networks.N.gateways[i]`: `address` or `registryServiceName`, and a port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkGateway {
    /// The gateway's IP or host name.
    pub address: Option<String>,
    /// A service whose address is the gateway's.
    pub registry_service_name: Option<String>,
    /// The gateway port (15443 in Istio's examples).
    pub port: u16,
    /// The gateway's locality.
    pub locality: Option<String>,
}

/// Why a MeshConfig file was refused: the file and the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {message}")]
pub struct MeshConfigError {
    /// The file.
    pub file: String,
    /// The field, like `meshNetworks.networks.west.gateways[0].port` (`(root)` for the file).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeshConfig {
    #[serde(default)]
    outbound_traffic_policy: Option<RawOutbound>,
    #[serde(default)]
    trust_domain_aliases: Vec<String>,
    #[serde(default)]
    mesh_networks: Option<RawMeshNetworks>,
    #[serde(default)]
    default_config: Option<RawProxyConfig>,
    #[serde(default)]
    path_normalization: Option<RawPathNormalization>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathNormalization {
    normalization: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeshNetworks {
    #[serde(default)]
    networks: BTreeMap<String, Network>,
}

/// ProxyConfig is large too: unknown fields are accepted; the ones modelled are typed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyConfig {
    drain_duration: Option<String>,
    #[serde(default)]
    proxy_metadata: BTreeMap<String, String>,
    gateway_topology: Option<RawGatewayTopology>,
}

/// `gatewayTopology`: both fields are applied; any other is refused by name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGatewayTopology {
    num_trusted_proxies: Option<u32>,
    forward_client_cert_details: Option<String>,
}

impl MeshConfig {
    /// Reads and validates a MeshConfig YAML file.
    pub fn load(path: &Path) -> Result<Self, MeshConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MeshConfigError {
            file: file.clone(),
            path: "(root)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// Validates MeshConfig YAML; `file` names it in errors.
    pub fn parse(yaml: &str, file: &str) -> Result<Self, MeshConfigError> {
        let err = |path: &str, message: String| MeshConfigError {
            file: file.to_string(),
            path: if path.is_empty() || path == "." {
                "(root)".into()
            } else {
                path.to_string()
            },
            message,
        };
        let value: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| {
            let msg = e.to_string();
            err(
                "",
                format!("invalid YAML: {}", msg.lines().next().unwrap_or("")),
            )
        })?;
        let value = if value.is_null() {
            serde_json::json!({})
        } else {
            value
        };
        let raw: RawMeshConfig = serde_path_to_error::deserialize(value)
            .map_err(|e| err(&e.path().to_string(), e.inner().to_string()))?;

        let outbound_mode = match raw.outbound_traffic_policy.and_then(|p| p.mode).as_deref() {
            None | Some("ALLOW_ANY") => OutboundMode::AllowAny,
            Some("REGISTRY_ONLY") => OutboundMode::RegistryOnly,
            Some(other) => {
                return Err(err(
                    "outboundTrafficPolicy.mode",
                    format!("unknown mode {other:?}, expected ALLOW_ANY or REGISTRY_ONLY"),
                ));
            }
        };
        for (i, alias) in raw.trust_domain_aliases.iter().enumerate() {
            if alias.is_empty() {
                return Err(err(
                    &format!("trustDomainAliases[{i}]"),
                    "must not be empty".into(),
                ));
            }
        }
        let networks = raw.mesh_networks.map(|m| m.networks).unwrap_or_default();
        for (name, network) in &networks {
            for (i, gw) in network.gateways.iter().enumerate() {
                let at = format!("meshNetworks.networks.{name}.gateways[{i}]");
                if gw.address.is_some() == gw.registry_service_name.is_some() {
                    return Err(err(
                        &at,
                        "exactly one of address or registryServiceName is required".into(),
                    ));
                }
                if gw.port == 0 {
                    return Err(err(&format!("{at}.port"), "port must be 1-65535".into()));
                }
            }
            for (i, ep) in network.endpoints.iter().enumerate() {
                if ep.from_cidr.is_some() == ep.from_registry.is_some() {
                    return Err(err(
                        &format!("meshNetworks.networks.{name}.endpoints[{i}]"),
                        "exactly one of fromCidr or fromRegistry is required".into(),
                    ));
                }
            }
        }
        let (drain_duration, proxy_metadata, topology) = match raw.default_config {
            Some(pc) => {
                let drain =
                    match pc.drain_duration.as_deref() {
                        Some(d) => Some(mesh_routing::parse_duration(d).map_err(|e| {
                            err("defaultConfig.drainDuration", format!("{d:?}: {e}"))
                        })?),
                        None => None,
                    };
                (drain, pc.proxy_metadata, pc.gateway_topology)
            }
            None => (None, BTreeMap::new(), None),
        };
        let (num_trusted_proxies, forward_client_cert) = match topology {
            None => (0, ForwardClientCert::SanitizeSet),
            Some(t) => {
                let fcc = match t.forward_client_cert_details.as_deref() {
                    None => ForwardClientCert::SanitizeSet,
                    Some(name) => ForwardClientCert::parse(name).ok_or_else(|| {
                        err(
                            "defaultConfig.gatewayTopology.forwardClientCertDetails",
                            format!("unknown mode {name:?}, expected SANITIZE, FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET or ALWAYS_FORWARD_ONLY"),
                        )
                    })?,
                };
                (t.num_trusted_proxies.unwrap_or(0) as usize, fcc)
            }
        };
        let path_normalization = match raw.path_normalization.and_then(|p| p.normalization) {
            None => PathNormalization::Base,
            Some(name) => PathNormalization::parse(&name).ok_or_else(|| {
                err(
                    "pathNormalization.normalization",
                    format!(
                        "unknown normalization {name:?}, expected NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES"
                    ),
                )
            })?,
        };
        Ok(Self {
            outbound_mode,
            trust_domain_aliases: raw.trust_domain_aliases,
            networks,
            drain_duration,
            proxy_metadata,
            forward_client_cert,
            num_trusted_proxies,
            path_normalization,
        })
    }
}

fn serialize_fcc<S: serde::Serializer>(mode: &ForwardClientCert, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match mode {
        ForwardClientCert::Sanitize => "SANITIZE",
        ForwardClientCert::ForwardOnly => "FORWARD_ONLY",
        ForwardClientCert::AppendForward => "APPEND_FORWARD",
        ForwardClientCert::SanitizeSet => "SANITIZE_SET",
        ForwardClientCert::AlwaysForwardOnly => "ALWAYS_FORWARD_ONLY",
    })
}

fn serialize_normalization<S: serde::Serializer>(
    mode: &PathNormalization,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(match mode {
        PathNormalization::None => "NONE",
        PathNormalization::Base => "BASE",
        PathNormalization::MergeSlashes => "MERGE_SLASHES",
        PathNormalization::DecodeAndMergeSlashes => "DECODE_AND_MERGE_SLASHES",
    })
}

fn serialize_mode<S: serde::Serializer>(mode: &OutboundMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match mode {
        OutboundMode::AllowAny => "ALLOW_ANY",
        OutboundMode::RegistryOnly => "REGISTRY_ONLY",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modelled_fields_are_typed_and_the_rest_is_ignored() {
        let mc = MeshConfig::parse(
            r#"
accessLogFile: /dev/stdout
enableTracing: true
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
trustDomainAliases: [old.example]
meshNetworks:
  networks:
    west:
      endpoints: [{fromRegistry: west-cluster}]
      gateways: [{address: 192.0.2.10, port: 15443}]
defaultConfig:
  drainDuration: 5s
  concurrency: 2
  proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true"}
"#,
            "mesh.yaml",
        )
        .unwrap();
        assert_eq!(mc.outbound_mode, OutboundMode::RegistryOnly);
        assert_eq!(mc.trust_domain_aliases, vec!["old.example"]);
        assert_eq!(mc.networks["west"].gateways[0].port, 15443);
        assert_eq!(mc.drain_duration, Some(Duration::from_secs(5)));
        assert_eq!(mc.proxy_metadata.len(), 1);
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = MeshConfig::parse("outboundTrafficPolicy: {mode: DENY}", "m.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.yaml: outboundTrafficPolicy.mode: unknown mode \"DENY\", expected ALLOW_ANY or REGISTRY_ONLY"
        );
        let e = MeshConfig::parse(
            "meshNetworks: {networks: {w: {gateways: [{address: a, port: x}]}}}",
            "m.yaml",
        )
        .unwrap_err();
        assert_eq!(e.path, "meshNetworks.networks.w.gateways[0].port");
        let e = MeshConfig::parse("trustDomainAliases: nope", "m.yaml").unwrap_err();
        assert_eq!(e.path, "trustDomainAliases");
        let e = MeshConfig::parse("defaultConfig: {drainDuration: 5}", "m.yaml").unwrap_err();
        assert_eq!(e.path, "defaultConfig.drainDuration");
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(
            MeshConfig::parse("", "m.yaml").unwrap(),
            MeshConfig::default()
        );
    }
}
