//! The demo's course: build everything up with progress lines, drive the scenarios, print
//! the report, then serve until Ctrl-C.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::DemoError;
use super::client::MeshClient;
use super::config::Ports;
use super::pki::Pki;
use super::proxy::{self, Started};
use super::scenarios::{self, Check};
use super::servers::{self, Upstream};
use super::streams;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests for the canary split.
    pub requests: usize,
    /// Exit after the report instead of serving until Ctrl-C.
    pub once: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            requests: 1000,
            once: false,
        }
    }
}

const STEPS: usize = 7;

/// Prints `[n/7] what ... ` and the outcome of `f` on the same line.
async fn step<T, F>(n: usize, what: &str, f: F) -> Result<T, DemoError>
where
    F: Future<Output = Result<(T, String), DemoError>>,
{
    print!("[{n}/{STEPS}] {what} ... ");
    let _ = std::io::stdout().flush();
    let started = std::time::Instant::now();
    let result = f.await;
    // Only the steps that take noticeable time say how long.
    let took = started.elapsed().as_secs_f64();
    let took = (took >= 0.05).then(|| format!("{took:.2} s"));
    match result {
        Ok((value, note)) => {
            let detail: Vec<String> = (took.into_iter())
                .chain((!note.is_empty()).then_some(note))
                .collect();
            if detail.is_empty() {
                println!("ok");
            } else {
                println!("ok ({})", detail.join("; "));
            }
            Ok(value)
        }
        Err(e) => {
            println!("failed");
            Err(e)
        }
    }
}

/// The demo's upstream servers.
struct Upstreams {
    v1: Upstream,
    v2: Upstream,
    sink: Upstream,
    external: Upstream,
    details: Upstream,
    catalog: Upstream,
    chat: Upstream,
}

/// Runs the demo: builds everything up with progress lines, prints the report and (unless
/// `once`) serves until Ctrl-C. Returns whether every check showed what the config asks for.
pub async fn run(options: &Options) -> Result<bool, DemoError> {
    let dir = TempDir::new()?;
    let result = run_in(dir.path(), options).await;
    drop(dir);
    result
}

async fn run_in(dir: &Path, options: &Options) -> Result<bool, DemoError> {
    let (pki_dir, config_dir) = (dir.join("pki"), dir.join("config"));
    for d in [&pki_dir, &config_dir] {
        std::fs::create_dir_all(d).map_err(|source| DemoError::Io {
            what: format!("creating {}", d.display()),
            source,
        })?;
    }
    let (pki, proxy_svid, ratings_svid) =
        step(1, "generating a root CA and SPIFFE SVIDs (rcgen)", async {
            let pki = Pki::generate(&pki_dir)?;
            let proxy = pki.svid("productpage")?;
            let ratings = pki.svid("ratings")?;
            let note = format!("{}, {}", proxy.id, ratings.id);
            Ok(((pki, proxy, ratings), note))
        })
        .await?;
    let (up, ratings) = step(2, "starting upstream servers on 127.0.0.1", async {
        let up = Upstreams {
            v1: servers::plain("reviews-v1").await?,
            v2: servers::plain("reviews-v2").await?,
            sink: servers::plain("reviews-shadow").await?,
            external: servers::plain("api.weather.example").await?,
            details: servers::plain("details").await?,
            catalog: streams::grpc_catalog().await?,
            chat: streams::websocket_echo().await?,
        };
        let ratings = servers::mtls("ratings", &pki.credentials(&ratings_svid)?).await?;
        let note = format!(
            "reviews-v1 :{}, reviews-v2 :{}, mirror sink :{}, external api :{}, details :{}, ratings (mTLS) :{}, catalog (gRPC) :{}, chat (WebSocket) :{}",
            up.v1.addr.port(),
            up.v2.addr.port(),
            up.sink.addr.port(),
            up.external.addr.port(),
            up.details.addr.port(),
            ratings.addr.port(),
            up.catalog.addr.port(),
            up.chat.addr.port(),
        );
        Ok(((up, ratings), note))
    })
    .await?;
    let ports = Ports {
        reviews_v1: up.v1.addr.port(),
        reviews_v2: up.v2.addr.port(),
        sink: up.sink.addr.port(),
        ratings: ratings.addr.port(),
        inbound: 0,
        external: up.external.addr.port(),
        catalog: up.catalog.addr.port(),
        chat: up.chat.addr.port(),
    };
    let started = step(
        3,
        "writing the Istio config and starting mesh-proxy in process",
        async {
            let started =
                proxy::start(&config_dir, &pki, &proxy_svid, ports, up.details.addr).await?;
            let note = format!(
                "{}; outbound {}, inbound {}, admin {}, /ready 200",
                config_dir.join("mesh.yaml").display(),
                started.outbound,
                started.inbound,
                started.admin
            );
            Ok((started, note))
        },
    )
    .await?;
    let client = MeshClient::new(started.outbound.port());
    let [split, mirror] = step(
        4,
        &format!("sending {} requests to reviews", options.requests),
        async {
            Ok((
                scenarios::canary_and_mirror(&client, &up.sink, options.requests).await?,
                String::new(),
            ))
        },
    )
    .await?;
    let [jason, mtls, authz, strict, registry] =
        step(5, "routing by header, mTLS and policies", async {
            let jason = scenarios::header_routing(&client).await?;
            let mtls = scenarios::mtls_hop(&client, &proxy_svid.id).await?;
            let [authz, strict] = scenarios::authorization(&client, started.inbound).await?;
            let registry = scenarios::registry_only(&client).await?;
            Ok(([jason, mtls, authz, strict, registry], String::new()))
        })
        .await?;
    let outbound = started.outbound.port();
    let [h2, grpc, ws] = step(6, "HTTP/2, gRPC and WebSocket clients", async {
        let h2 = streams::http2_split(outbound, 200).await?;
        let grpc = streams::grpc_stream(outbound).await?;
        let ws = streams::websocket(outbound).await?;
        Ok(([h2, grpc, ws], String::new()))
    })
    .await?;
    let checks = [
        split, h2, jason, mirror, mtls, authz, strict, registry, grpc, ws,
    ];
    let all_ok = print_report(&checks);
    if options.once {
        started.proxy.shutdown().await;
        return Ok(all_ok);
    }
    print_try_it(&started, &config_dir);
    tokio::signal::ctrl_c()
        .await
        .map_err(|source| DemoError::Io {
            what: "waiting for Ctrl-C".into(),
            source,
        })?;
    println!("\nshutting down");
    started.proxy.shutdown().await;
    Ok(all_ok)
}

/// Prints the report; whether every check showed what the config asks for.
fn print_report(checks: &[Check]) -> bool {
    println!("[7/{STEPS}] report: what the mesh did\n");
    for c in checks {
        let mark = if c.ok { "✓" } else { "✗" };
        println!("  {mark} {:<15} {}", c.label, c.text);
    }
    println!();
    let all_ok = checks.iter().all(|c| c.ok);
    if !all_ok {
        println!("some checks did not show what mesh.yaml asks for (✗ above)");
    }
    all_ok
}

fn print_try_it(started: &Started, config_dir: &Path) {
    let out = started.outbound;
    let admin = started.admin;
    println!("mesh-proxy keeps serving; try (Ctrl-C to stop):");
    println!();
    for (cmd, what) in [
        (
            format!("curl -s -H 'Host: reviews.default.svc.cluster.local' http://{out}/"),
            "90% v1, 10% v2, mirrored",
        ),
        (
            format!(
                "curl -s -H 'Host: reviews.default.svc.cluster.local' -H 'end-user: jason' http://{out}/"
            ),
            "always v2",
        ),
        (
            format!(
                "curl -s --http2-prior-knowledge http://{out}/ -H 'Host: reviews.default.svc.cluster.local'"
            ),
            "the same split from an HTTP/2 client",
        ),
        (
            format!("curl -s -H 'Host: ratings.default.svc.cluster.local' http://{out}/"),
            "mTLS hop: ratings names its caller",
        ),
        (
            format!("curl -si -H 'Host: details.default.svc.cluster.local' http://{out}/admin"),
            "403 RBAC: access denied",
        ),
        (
            format!("curl -si -H 'Host: unknown.example' http://{out}/"),
            "502: REGISTRY_ONLY",
        ),
        (
            format!("curl -s http://{admin}/stats/prometheus | grep istio_requests_total"),
            "Istio metrics",
        ),
        (
            format!("curl -s http://{admin}/config_dump"),
            "the compiled config",
        ),
    ] {
        println!("  {cmd}\n      # {what}");
    }
    println!();
    println!(
        "Edit {} and the proxy reloads it (an invalid edit is rejected; the old config keeps serving).",
        config_dir.join("mesh.yaml").display()
    );
}

/// The demo's working directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, DemoError> {
        let dir = std::env::temp_dir().join(format!("mesh-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
