//! The demo: `cargo run -p mesh-examples --bin demo [-- --once]`.
//!
//! Starts loopback upstreams and mesh-proxy with `examples/demo/mesh.yaml`, drives traffic
//! through it and prints what the mesh did; then keeps serving until Ctrl-C (`--once` or
//! `MESH_DEMO_ONCE=1`: exit after the report). Exits 1 when a check did not show what the
//! config asks for, or the demo could not run.

use std::process::ExitCode;

use mesh_examples::demo::{Options, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let mut options = Options::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--once" => options.once = true,
            "-h" | "--help" => {
                println!(
                    "usage: demo [--once]   (env MESH_DEMO_ONCE=1 = --once; RUST_LOG for proxy logs)"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("demo: unknown argument {other:?} (try --once)");
                return ExitCode::from(2);
            }
        }
    }
    if std::env::var("MESH_DEMO_ONCE").is_ok_and(|v| v == "1") {
        options.once = true;
    }
    // The proxy's own logs stay quiet unless asked for; the report is on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
