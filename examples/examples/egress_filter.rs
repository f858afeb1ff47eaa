//! An egress filter with `mesh-gateway` as middleware in a hyper server: Istio's
//! `outboundTrafficPolicy: REGISTRY_ONLY`.
//!
//! Loads a ServiceEntry (the external hosts the mesh may call) and a Sidecar (the policy) with
//! `Bundle::load`, then runs an egress server on loopback whose `OutboundPolicyLayer` answers
//! 502 to every host no ServiceEntry registers and forwards the others to a loopback server
//! standing in for the internet. The same requests under ALLOW_ANY all pass, for contrast.
//!
//! `cargo run -p mesh-examples --example egress_filter`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_gateway::{Bundle, KnownHosts, OutboundMode, OutboundPolicyLayer};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-apis, namespace: default}
spec:
  hosts: [api.example.com, "*.googleapis.com"]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

/// Stands in for the internet: every host resolves here and answers with its own name.
async fn internet() -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let host = req.headers().get("host").and_then(|h| h.to_str().ok());
                let text = format!("hello from {}", host.unwrap_or("?"));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// An egress server: the outbound policy in front of a client forwarding to `upstream`.
async fn egress(policy: OutboundPolicyLayer, upstream: SocketAddr) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Incoming>();
    let forward = client.map_request(move |mut req: Request<Incoming>| {
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = Uri::try_from(format!("http://{upstream}{pq}")) {
            *req.uri_mut() = uri; // the Host header still names the external host
        }
        req
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .layer(policy.clone())
                .service(forward.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let bundle = Bundle::load(CONFIG, "egress.yaml", "default")?;
    let known = KnownHosts::from_service_entries(&bundle.service_entries);
    let mode = bundle
        .sidecars
        .first()
        .map_or(OutboundMode::AllowAny, |(_, m)| *m);
    let internet = internet().await?;
    let registry_only = egress(OutboundPolicyLayer::new(mode, known.clone()), internet).await?;
    let allow_any = egress(
        OutboundPolicyLayer::new(OutboundMode::AllowAny, known),
        internet,
    )
    .await?;
    println!(
        "ServiceEntry hosts: {:?}",
        bundle.service_entries[0].hosts()
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let hosts = [
        "api.example.com",
        "storage.googleapis.com:80",
        "evil.example.org",
    ];
    for (label, proxy) in [
        (format!("{mode:?} (from the Sidecar)"), registry_only),
        ("AllowAny (for contrast)".into(), allow_any),
    ] {
        println!("{label}:");
        for host in hosts {
            let req = Request::get(format!("http://{proxy}/v1/data"))
                .header("host", host)
                .body(Empty::new())?;
            let resp = client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            let line = format!("  {host:>26}: {status} {}", String::from_utf8_lossy(&body));
            println!("{}", line.trim_end());
        }
    }
    Ok(())
}
