//! Runnable compositions of the mesh crates.
//!
//! The focused programs live in `examples/`; [`proxy`] holds the library half of the
//! `mesh-proxy` binary (`src/bin/mesh-proxy.rs`), so the demo can start the same proxy in
//! process. Nothing depends on this package.
#![forbid(unsafe_code)]

pub mod demo;
pub mod proxy;
