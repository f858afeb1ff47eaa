//! Ingress and egress gateways for Istio configs: Gateway servers and their TLS modes, ingress
//! filters, the ServiceEntry registry, the outbound traffic policy, TLS origination and
//! multi-network east-west routing. Building blocks for a proxy (`mesh-proxy` composes them).
//!
//! - [`Bundle`]: loads multi-document YAML of mixed kinds (files or directories) into typed,
//!   validated resources, reporting every problem with file, document, resource and field.
//! - [`Gateway`]: the Gateway model with Istio's validation (servers, ports, protocols,
//!   `ns/host` hosts, TLS settings); [`ServerTable`] selects a server by port, then SNI (TLS),
//!   then Host (HTTP); [`gateway_route_tables`] builds each HTTP port's route table from the
//!   bound VirtualServices, narrowed to the servers' hosts ([`intersect_hosts`]).
//! - [`tls`]: TLS ports at run time: the ClientHello read without losing bytes ([`sni`] is the
//!   pure, fuzzed parser), the server chosen by SNI (unknown SNI: closed), then terminated
//!   (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) or handed over untouched for PASSTHROUGH and
//!   AUTO_PASSTHROUGH; [`TlsRouteTable`] picks a passthrough stream's destination from
//!   VirtualService `tls` routes ([`TcpRouteTable`]: `tcp` routes) and [`ClusterSni`] decodes Istio's `outbound_.PORT_.SUBSET_.HOST`.
//! - [`filters`]: ingress filters as standalone tower layers (X-Forwarded-For with trusted
//!   hops, X-Forwarded-Proto, x-request-id, hop-by-hop removal, internal-header stripping,
//!   header and body limits, the Host/SNI check, httpsRedirect) and the 503 edge for upstream
//!   failures.
//! - [`ServiceEntry`] and [`ServiceEntryRegistry`]: ServiceEntries behind mesh-mirror's
//!   `ServiceRegistry`, so DestinationRule subsets and load balancing apply to their endpoints;
//!   DNS names are re-resolved in the background; endpoints on other networks are reached
//!   through their east-west gateways (`meshNetworks`).
//! - [`OutboundPolicyLayer`] and [`KnownHosts`]: the Sidecar's `outboundTrafficPolicy`
//!   (REGISTRY_ONLY: 502 for HTTP, [`reset`] for TLS/TCP).
//! - [`origination`]: TLS origination for DestinationRule `trafficPolicy.tls` (SIMPLE, MUTUAL,
//!   ISTIO_MUTUAL with the cluster SNI) as a connector for mesh-mirror's upstream.
//! - [`L4Forwarder`]: forwards passthrough and TCP connections through mesh-mirror's
//!   [`Upstream`](mesh_mirror::Upstream) clusters (DestinationRule applied), as tunnels of
//!   [`Tunnels`] (back-pressure, idle timeout, drain), which upgraded WebSockets share
//!   ([`filters::UpgradeLayer`]).
//!
//! This crate depends on the other three: it is where their pieces meet.
//!
//! ```
//! use mesh_gateway::sni::{parse_client_hello, SniError};
//! assert_eq!(parse_client_hello(b"\x16\x03\x01"), Ok(None)); // need more bytes
//! assert_eq!(parse_client_hello(b"SSH-2.0-OpenSSH"), Err(SniError::NotTls));
//! ```
#![forbid(unsafe_code)]

mod bundle;
mod cluster_sni;
mod egress;
pub mod filters;
mod gateway;
mod l4;
pub mod model;
pub mod origination;
mod registry;
mod routes;
mod server;
mod service_entry;
pub mod sni;
pub mod tls;
mod tls_route;
mod tunnel;

pub use bundle::{Bundle, LoadErrors, LoadProblem};
pub use cluster_sni::{ClusterSni, NotClusterSni};
pub use egress::{KnownHosts, OutboundMode, OutboundPolicyLayer};
pub use gateway::{
    Credential, Gateway, GatewayServer, Protocol, ServerHost, ServerTls, TlsMode, TlsVersion,
};
pub use l4::{ForwardError, L4Connection, L4Forwarder, L4Stream, reset};
pub use registry::ServiceEntryRegistry;
pub use routes::{gateway_route_tables, gateway_virtual_services};
pub use server::{Selected, ServerTable, host_match_rank, intersect_hosts};
pub use service_entry::{
    EndpointAddress, Location, Resolution, ServiceEndpoint, ServiceEntry, ServicePort,
};
pub use tls_route::{TcpRouteTable, TlsRouteTable};
pub use tunnel::{TunnelBytes, Tunnels};
