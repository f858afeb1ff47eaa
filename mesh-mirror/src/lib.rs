//! Weighted dispatch and traffic mirroring as tower layers, plus DestinationRule subsets and
//! endpoint load balancing.
//!
//! **Not built yet.** This crate is a placeholder in the workspace layout; its layers arrive with
//! the mesh-mirror issues. Nothing here pretends to work.
#![forbid(unsafe_code)]
