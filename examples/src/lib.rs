//! Runnable compositions of the mesh crates.
//!
//! The programs live in `examples/` (focused, one crate each) and, later, `src/bin/` (the demo
//! and `mesh-proxy`). This library is intentionally empty: nothing depends on this package.
#![forbid(unsafe_code)]
