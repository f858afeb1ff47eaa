//! SPIFFE IDs, X.509-SVIDs, trust bundles, rustls mTLS verifiers, rotation and identity-based
//! authorization.
//!
//! **Not built yet.** This crate is a placeholder in the workspace layout; its types arrive with
//! the mesh-identity issue. Nothing here pretends to work.
#![forbid(unsafe_code)]
