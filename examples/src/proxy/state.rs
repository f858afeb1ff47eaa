//! The compiled state a proxy serves from: one generation of configuration with its route
//! tables, swapped whole on reload so a request sees one config, never half of two.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use mesh_gateway::{Bundle, OutboundMode};
use mesh_mirror::DestinationRules;
use mesh_routing::{MESH_GATEWAY, RouteTable, TableOptions};
use serde_json::{Value, json};

use super::config::LoadedConfig;
use super::mesh_config::MeshConfig;

/// One generation of compiled configuration. Immutable once built; the proxy holds it in an
/// `ArcSwap` and in-flight requests keep the `Arc` they started with.
#[derive(Debug)]
pub struct ProxyState {
    /// 1 for the configuration the proxy started with, +1 per applied reload.
    pub generation: u64,
    /// When this generation was built.
    pub loaded_at: SystemTime,
    /// The resources.
    pub config: LoadedConfig,
    /// Route tables per binding: `mesh` and each loaded Gateway's `namespace/name`.
    pub route_tables: BTreeMap<String, Arc<RouteTable>>,
    /// DestinationRules by host.
    pub destination_rules: DestinationRules,
    /// The outbound traffic policy in force: the first Sidecar's, else MeshConfig's.
    pub outbound_mode: OutboundMode,
    /// The MeshConfig, when `--mesh-config` was given.
    pub mesh_config: Option<MeshConfig>,
}

impl ProxyState {
    /// Compiles `config` for a proxy in `namespace`.
    pub fn build(
        generation: u64,
        config: LoadedConfig,
        mesh_config: Option<MeshConfig>,
        namespace: &str,
    ) -> Self {
        let bundle = &config.bundle;
        let mut bindings = vec![MESH_GATEWAY.to_string()];
        bindings.extend(bundle.gateways.iter().map(|g| g.binding_name()));
        let route_tables = bindings
            .into_iter()
            .map(|gateway| {
                let options = TableOptions {
                    gateway: gateway.clone(),
                    namespace: namespace.to_string(),
                    ..TableOptions::default()
                };
                let table = RouteTable::build(&bundle.virtual_services, &options);
                (gateway, Arc::new(table))
            })
            .collect();
        let destination_rules = DestinationRules::new(bundle.destination_rules.iter().cloned());
        let outbound_mode = match bundle.sidecars.first() {
            Some((_, mode)) => *mode,
            None => mesh_config
                .as_ref()
                .map_or(OutboundMode::AllowAny, |m| m.outbound_mode),
        };
        Self {
            generation,
            loaded_at: SystemTime::now(),
            config,
            route_tables,
            destination_rules,
            outbound_mode,
            mesh_config,
        }
    }

    /// The bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.config.bundle
    }

    /// The effective configuration as JSON, for `/config_dump`.
    pub fn dump(&self) -> Value {
        let b = self.bundle();
        let names = |refs: Vec<String>| Value::from(refs);
        let resources = json!({
            "VirtualService": names(b.virtual_services.iter().map(|v| short(v.resource())).collect()),
            "Gateway": names(b.gateways.iter().map(|g| short(g.resource())).collect()),
            "DestinationRule": names(b.destination_rules.iter().map(|d| short(d.resource())).collect()),
            "ServiceEntry": names(b.service_entries.iter().map(|s| short(s.resource())).collect()),
            "Sidecar": names(b.sidecars.iter().map(|(r, _)| short(r)).collect()),
            "PeerAuthentication": names(self.config.names_of_kind("PeerAuthentication")),
            "AuthorizationPolicy": names(b.authorization_policies.iter().map(|p| format!("{}/{}", p.namespace(), p.name())).collect()),
            "ignored": names(b.ignored.iter().map(|(_, r)| r.to_string()).collect()),
        });
        let tables: serde_json::Map<String, Value> = (self.route_tables.iter())
            .map(|(binding, table)| {
                let hosts: serde_json::Map<String, Value> = (table.describe().into_iter())
                    .map(|(domain, routes)| (domain, Value::from(routes)))
                    .collect();
                (
                    binding.clone(),
                    json!({ "domains": table.domains(), "routes": hosts }),
                )
            })
            .collect();
        let loaded_at =
            (self.loaded_at.duration_since(SystemTime::UNIX_EPOCH)).map_or(0, |d| d.as_secs());
        json!({
            "generation": self.generation,
            "loaded_at_unix": loaded_at,
            "outbound_traffic_policy": match self.outbound_mode {
                OutboundMode::AllowAny => "ALLOW_ANY",
                OutboundMode::RegistryOnly => "REGISTRY_ONLY",
            },
            "resources": resources,
            "route_tables": tables,
            "mesh_config": self.mesh_config,
        })
    }
}

/// `namespace/name`.
fn short(r: &mesh_routing::ResourceRef) -> String {
    format!("{}/{}", r.namespace, r.name)
}
