//! Starting mesh-proxy in process with the demo's configuration and identity, exactly as
//! `mesh-proxy --config DIR --outbound ... --inbound ... --cert ... --admin ...` would.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::proxy::{Cli, Proxy, RunningProxy, StartError};
use clap::Parser as _;
use http::StatusCode;

use super::DemoError;
use super::client::MeshClient;
use super::config::{Ports, render};
use super::pki::{Pki, SvidFiles};

/// The started proxy and its listeners.
#[derive(Debug)]
pub struct Started {
    /// The proxy.
    pub proxy: RunningProxy,
    /// The sidecar outbound listener (plain HTTP, routed by Host).
    pub outbound: SocketAddr,
    /// The sidecar inbound listener (mTLS per PeerAuthentication).
    pub inbound: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

/// Writes the configuration for `ports` (with free ports for the proxy's own listeners) to
/// `config_dir/mesh.yaml` and starts the proxy, trying again with other ports when one was
/// taken in between; then waits for `/ready`.
pub(super) async fn start(
    config_dir: &Path,
    pki: &Pki,
    svid: &SvidFiles,
    mut ports: Ports,
    details: SocketAddr,
) -> Result<Started, DemoError> {
    let mut attempt = 0;
    let (proxy, outbound, inbound) = loop {
        attempt += 1;
        let (outbound, inbound) = (free_port()?, free_port()?);
        ports.inbound = inbound;
        let path = config_dir.join("mesh.yaml");
        std::fs::write(&path, render(&ports)?).map_err(|source| DemoError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        let args = [
            "mesh-proxy".to_string(),
            "--config".into(),
            config_dir.display().to_string(),
            "--outbound".into(),
            format!("127.0.0.1:{outbound}"),
            "--inbound".into(),
            format!("127.0.0.1:{inbound}"),
            "--inbound-target".into(),
            details.to_string(),
            "--cert".into(),
            svid.cert.display().to_string(),
            "--key".into(),
            svid.key.display().to_string(),
            "--trust-bundle".into(),
            pki.bundle.display().to_string(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--no-access-log".into(),
        ];
        let run = Cli::try_parse_from(args)
            .map_err(|e| DemoError::Check(format!("mesh-proxy flags: {e}")))?
            .run;
        match Proxy::start(run).await {
            Ok(proxy) => break (proxy, outbound, inbound),
            Err(StartError::Bind { .. }) if attempt < 3 => continue,
            Err(e) => return Err(DemoError::Proxy(e)),
        }
    };
    let admin = proxy.admin_addr();
    wait_ready(admin.port()).await?;
    Ok(Started {
        proxy,
        outbound: SocketAddr::from(([127, 0, 0, 1], outbound)),
        inbound: SocketAddr::from(([127, 0, 0, 1], inbound)),
        admin,
    })
}

/// Polls the admin `/ready` until it answers 200 (every listener is up).
async fn wait_ready(admin: u16) -> Result<(), DemoError> {
    let client = MeshClient::new(admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((StatusCode::OK, _)) = client.get("admin", "/ready", &[]).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Check(
                "mesh-proxy was not ready after 10 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound, then released; the proxy binds it right after).
fn free_port() -> Result<u16, DemoError> {
    let io = |source| DemoError::Io {
        what: "finding a free port".into(),
        source,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
