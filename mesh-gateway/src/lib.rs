//! Ingress and egress gateway filters: Gateway servers, TLS modes, the ServiceEntry registry and
//! the outbound traffic policy.
//!
//! **Partly built.** What exists today:
//! - [`sni`]: a pure, fuzzed ClientHello reader (SNI and ALPN without terminating TLS), the
//!   basis of PASSTHROUGH and AUTO_PASSTHROUGH servers.
//! - [`filters`]: ingress filters as standalone tower layers (X-Forwarded-For with trusted
//!   hops, X-Forwarded-Proto, x-request-id, hop-by-hop removal, internal-header stripping,
//!   header and body limits, the Host/SNI check).
//!
//! - [`Gateway`]: the Gateway model with Istio's validation (servers, ports, protocols,
//!   `ns/host` hosts, TLS settings).
//!
//! - [`ServerTable`]: server selection by port, then SNI (TLS), then Host (HTTP), and
//!   [`intersect_hosts`] for a gateway's effective virtual hosts.
//!
//! - [`tls`]: TLS ports at run time: ClientHello read without losing bytes, server chosen by
//!   SNI, then terminated (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) or passed through.
//!
//! The PASSTHROUGH TCP proxying, the ServiceEntry registry and egress policy
//! arrive with the mesh-gateway issue; nothing here pretends to do them yet.
//!
//! ```
//! use mesh_gateway::sni::{parse_client_hello, SniError};
//! assert_eq!(parse_client_hello(b"\x16\x03\x01"), Ok(None)); // need more bytes
//! assert_eq!(parse_client_hello(b"SSH-2.0-OpenSSH"), Err(SniError::NotTls));
//! ```
#![forbid(unsafe_code)]

pub mod filters;
mod gateway;
pub mod model;
mod server;
pub mod sni;
pub mod tls;

pub use gateway::{
    Credential, Gateway, GatewayServer, Protocol, ServerHost, ServerTls, TlsMode, TlsVersion,
};
pub use server::{Selected, ServerTable, host_match_rank, intersect_hosts};
