//! The demo behind `cargo run -p mesh-examples --bin demo`: real loopback upstreams, a CA and
//! SVIDs generated at startup, the bundled Istio YAML (`examples/demo/mesh.yaml`) and
//! mesh-proxy started in process; then traffic through it and a short report of what the mesh
//! did: the canary split (also from an HTTP/2 client), header routing, the mirror, an mTLS hop
//! with SPIFFE IDs, an AuthorizationPolicy denial, REGISTRY_ONLY, a gRPC call with a streamed
//! reply and a WebSocket echo.

mod client;
mod config;
mod error;
mod pki;
mod proxy;
mod run;
mod scenarios;
mod servers;
mod streams;

pub use client::MeshClient;
pub use config::{Ports, TEMPLATE, render};
pub use error::DemoError;
pub use pki::{Pki, SvidFiles};
pub use proxy::Started;
pub use run::{Options, run};
pub use scenarios::Check;
pub use servers::Upstream;
