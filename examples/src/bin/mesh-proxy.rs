//! `mesh-proxy`: the reference composition of the mesh crates (see DESIGN's "mesh-proxy
//! contract"). A thin shell over `mesh_examples::proxy`: flags, logging, signals, exit codes.
//!
//! Exit codes: 0 after a clean shutdown or a `validate` without errors, 1 when `validate`
//! finds errors or the proxy cannot start, 2 for command-line mistakes.

use std::process::ExitCode;

use clap::Parser as _;
use mesh_examples::proxy::{Cli, Command, Proxy, StartError, ValidateReport};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Validate { paths, namespace }) = cli.command {
        let report = ValidateReport::run(&paths, &namespace);
        print!("{}", report.render());
        return ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(1));
    }
    if let Err(e) = cli.run.check() {
        eprintln!("mesh-proxy: error: {e}");
        return ExitCode::from(2);
    }
    // Logs go to stderr; stdout is for access log lines.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Every connection is a descriptor: take all the hard limit allows, as Envoy is deployed.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesh-proxy: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let running = match Proxy::start(cli.run).await {
        Ok(running) => running,
        Err(e) => {
            // One line; `mesh-proxy validate` lists every problem of an invalid config.
            eprintln!("mesh-proxy: error: {e}");
            return ExitCode::from(match e {
                StartError::Usage(_) => 2,
                _ => 1,
            });
        }
    };
    match signals::wait(&running).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("mesh-proxy: error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(unix)]
mod signals {
    use mesh_examples::proxy::RunningProxy;
    use tokio::signal::unix::{SignalKind, signal};

    /// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
    pub(crate) async fn wait(running: &RunningProxy) -> std::io::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    running.request_reload();
                }
            }
        }
    }
}

#[cfg(not(unix))]
mod signals {
    use mesh_examples::proxy::RunningProxy;

    /// Returns on Ctrl-C.
    pub(crate) async fn wait(_running: &RunningProxy) -> std::io::Result<()> {
        tokio::signal::ctrl_c().await
    }
}
