//! One generation's upstream side: the ServiceEntry registry (with its DNS refresh task), the
//! DestinationRules, and the pooled upstreams that requests and mirror copies leave on.
//! Rebuilt whole on each reload, so a request keeps the endpoints and rules it started with.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mesh_gateway::ServiceEntryRegistry;
use mesh_mirror::{
    Locality, MakeConnector, MirrorBody, ProxyLocation, ReplayBody, SharedDestinationRules,
    TeeBody, Upstream,
};
use tokio::task::JoinHandle;

use super::options::RunArgs;
use super::state::ProxyState;

/// The request body as it reaches the upstream: teed for mirrors, replayable for retries.
pub type PrimaryBody = ReplayBody<TeeBody<super::route_stack::RequestBody>>;

/// How often `resolution: DNS` hosts are resolved again.
const DNS_REFRESH: Duration = Duration::from_secs(30);

/// The upstream side of one generation.
pub struct Upstreams<M: MakeConnector> {
    /// Where endpoints come from.
    pub registry: ServiceEntryRegistry,
    /// Primary requests.
    pub primary: Upstream<PrimaryBody, M>,
    /// Mirror copies.
    pub mirror: Upstream<MirrorBody, M>,
    /// Connections that are TLS already (passthrough): the same rules and endpoints, never
    /// TLS-originated again.
    pub plain: Upstream<PrimaryBody>,
    dns: JoinHandle<()>,
}

impl<M: MakeConnector> std::fmt::Debug for Upstreams<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl<M: MakeConnector> Drop for Upstreams<M> {
    fn drop(&mut self) {
        self.dns.abort();
    }
}

impl<M: MakeConnector + Clone> Upstreams<M> {
    /// Builds the registry and upstreams of `state`, connecting with what `make` builds for
    /// that registry. Spawns the DNS refresh task (call inside a tokio runtime); it stops
    /// when this is dropped.
    pub fn build(
        state: &ProxyState,
        args: &RunArgs,
        make: impl FnOnce(&ServiceEntryRegistry) -> M,
    ) -> Self {
        let registry = registry(state, args);
        let make = make(&registry);
        let rules = SharedDestinationRules::new(state.destination_rules.clone());
        let dyn_registry: Arc<dyn mesh_mirror::ServiceRegistry> = Arc::new(registry.clone());
        let location = ProxyLocation {
            locality: args
                .locality
                .as_deref()
                .map(Locality::parse)
                .unwrap_or_default(),
            ..ProxyLocation::default()
        };
        let primary = Upstream::with_connector(rules.clone(), dyn_registry.clone(), make.clone())
            .with_proxy_location(location.clone());
        let mirror = Upstream::with_connector(rules.clone(), dyn_registry.clone(), make)
            .with_proxy_location(location.clone());
        let plain = Upstream::new(rules, dyn_registry).with_proxy_location(location);
        let dns = registry.spawn_dns_refresh(DNS_REFRESH);
        Self {
            registry,
            primary,
            mirror,
            plain,
            dns,
        }
    }
}

/// The ServiceEntry registry, network-aware when `--network` is given: other networks are
/// reached through their `meshNetworks` gateways that have an IP address.
fn registry(state: &ProxyState, args: &RunArgs) -> ServiceEntryRegistry {
    let registry = ServiceEntryRegistry::new(&state.bundle().service_entries);
    let Some(local) = &args.network else {
        return registry;
    };
    let gateways: HashMap<String, SocketAddr> = (state.mesh_config.iter())
        .flat_map(|m| m.networks.iter())
        .filter_map(|(name, net)| {
            let addr = net.gateways.iter().find_map(|g| {
                let ip: IpAddr = g.address.as_deref()?.parse().ok()?;
                Some(SocketAddr::new(ip, g.port))
            })?;
            Some((name.clone(), addr))
        })
        .collect();
    registry.with_networks(local.clone(), gateways)
}
