//! Ingress and egress gateway filters: Gateway servers, TLS modes, the ServiceEntry registry and
//! the outbound traffic policy.
//!
//! **Partly built.** What exists today:
//! - [`sni`]: a pure, fuzzed ClientHello reader (SNI and ALPN without terminating TLS), the
//!   basis of PASSTHROUGH and AUTO_PASSTHROUGH servers.
//! - [`filters`]: ingress filters as standalone tower layers (X-Forwarded-For with trusted
//!   hops, X-Forwarded-Proto, x-request-id, hop-by-hop removal, internal-header stripping,
//!   header and body limits, the Host/SNI check).
//! - [`Gateway`]: the Gateway model with Istio's validation (servers, ports, protocols,
//!   `ns/host` hosts, TLS settings); [`ServerTable`] selects a server by port, then SNI (TLS),
//!   then Host (HTTP); [`gateway_route_tables`] builds each HTTP port's route table from the
//!   bound VirtualServices, narrowed to the servers' hosts ([`intersect_hosts`]).
//! - [`tls`]: TLS ports at run time: the ClientHello read without losing bytes, the server
//!   chosen by SNI, then terminated (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) or handed
//!   over untouched for passthrough; [`TlsRouteTable`] picks a passthrough stream's
//!   destination from VirtualService `tls` routes (`sniHosts`, port, gateway).
//! - [`ServiceEntry`]: the ServiceEntry model with Istio's validation (hosts, ports,
//!   resolution, endpoints); [`OutboundPolicyLayer`] and [`KnownHosts`] for the Sidecar's
//!   `outboundTrafficPolicy` (REGISTRY_ONLY answers 502 for unknown hosts).
//! - [`Bundle`]: loads multi-document YAML of mixed kinds (files or directories) into typed,
//!   validated resources, reporting every problem with file, document, resource and field.
//!
//! - [`ServiceEntryRegistry`]: ServiceEntries behind mesh-mirror's `ServiceRegistry`, so
//!   DestinationRule subsets and load balancing apply to their endpoints; DNS names are
//!   re-resolved in the background.
//!
//! - [`origination`]: TLS origination for DestinationRule `trafficPolicy.tls` (SIMPLE,
//!   MUTUAL, ISTIO_MUTUAL) as a connector for mesh-mirror's upstream.
//!
//! - [`L4Forwarder`]: forwards passthrough and TCP connections to registry endpoints;
//!   [`reset`] refuses one with a TCP reset (REGISTRY_ONLY for TLS/TCP).
//!
//! Not yet: the
//! egress-gateway chain and multi-network east-west gateways. Nothing here pretends to do them.
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

pub use bundle::{Bundle, LoadErrors, LoadProblem};
pub use cluster_sni::{ClusterSni, NotClusterSni};
pub use egress::{KnownHosts, OutboundMode, OutboundPolicyLayer};
pub use gateway::{
    Credential, Gateway, GatewayServer, Protocol, ServerHost, ServerTls, TlsMode, TlsVersion,
};
pub use l4::{ForwardError, L4Forwarder, SubsetLabels, reset};
pub use registry::ServiceEntryRegistry;
pub use routes::{gateway_route_tables, gateway_virtual_services};
pub use server::{Selected, ServerTable, host_match_rank, intersect_hosts};
pub use service_entry::{
    EndpointAddress, Location, Resolution, ServiceEndpoint, ServiceEntry, ServicePort,
};
pub use tls_route::TlsRouteTable;
