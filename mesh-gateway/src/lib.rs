//! Ingress and egress gateway filters: Gateway servers, TLS modes, the ServiceEntry registry and
//! the outbound traffic policy.
//!
//! **Not built yet.** This crate is a placeholder in the workspace layout; its filters arrive with
//! the mesh-gateway issue. Nothing here pretends to work.
#![forbid(unsafe_code)]
