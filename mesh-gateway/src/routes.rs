//! A gateway's HTTP route tables: per server port, the VirtualServices bound to the gateway,
//! answering for the intersection of their hosts with the port's server hosts.

use std::collections::BTreeMap;

use mesh_routing::{RouteTable, TableOptions, VirtualService};

use crate::gateway::Gateway;
use crate::server::intersect_hosts;

/// The effective VirtualServices of one gateway port: each bound VirtualService with its hosts
/// narrowed to those the port's servers accept (a server host `ns/host` only admits
/// VirtualServices from `ns`). VirtualServices left with no host are dropped.
///
/// ```
/// use mesh_gateway::{Bundle, gateway_virtual_services};
/// let b = Bundle::load(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: gw, namespace: edge}
/// spec: {servers: [{port: {number: 80, protocol: HTTP}, hosts: ["*/*.example.com"]}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: all, namespace: edge}
/// spec: {hosts: ['*'], gateways: [gw], http: [{route: [{destination: {host: web.internal}}]}]}
/// "#, "gw.yaml", "default").unwrap();
/// let vss = gateway_virtual_services(&b.gateways[0], 80, &b.virtual_services);
/// assert_eq!(vss[0].hosts(), ["*.example.com"]);
/// ```
pub fn gateway_virtual_services(
    gateway: &Gateway,
    port: u16,
    virtual_services: &[VirtualService],
) -> Vec<VirtualService> {
    let binding = gateway.binding_name();
    let server_hosts: Vec<_> = gateway
        .servers()
        .iter()
        .filter(|s| s.port == port && s.protocol.is_http())
        .flat_map(|s| s.hosts.iter())
        .collect();
    let mut out = Vec::new();
    for vs in virtual_services {
        let bound = vs.gateways().contains(&binding) || bound_by_match(vs, &binding);
        if !bound {
            continue;
        }
        let mut hosts: Vec<String> = Vec::new();
        for vs_host in vs.hosts() {
            for server in &server_hosts {
                if server
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != vs.resource().namespace)
                {
                    continue;
                }
                if let Some(h) = intersect_hosts(&server.host, vs_host) {
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
            }
        }
        if !hosts.is_empty() {
            out.push(vs.with_hosts(hosts));
        }
    }
    out
}

/// Whether a match block of `vs` names the gateway (overriding the VirtualService's `gateways`).
fn bound_by_match(vs: &VirtualService, binding: &str) -> bool {
    vs.spec()
        .http
        .iter()
        .flat_map(|r| r.matches.iter())
        .flat_map(|m| m.gateways.iter())
        .any(|g| {
            let qualified = if g.contains('/') {
                g.clone()
            } else {
                format!("{}/{g}", vs.resource().namespace)
            };
            qualified == binding
        })
}

/// Route tables for every HTTP port of `gateway`, keyed by port.
pub fn gateway_route_tables(
    gateway: &Gateway,
    virtual_services: &[VirtualService],
) -> BTreeMap<u16, RouteTable> {
    let options = TableOptions::gateway(gateway.binding_name());
    let ports: std::collections::BTreeSet<u16> = gateway
        .servers()
        .iter()
        .filter(|s| s.protocol.is_http())
        .map(|s| s.port)
        .collect();
    (ports.into_iter())
        .map(|port| {
            (
                port,
                RouteTable::build(
                    &gateway_virtual_services(gateway, port, virtual_services),
                    &options,
                ),
            )
        })
        .collect()
}
