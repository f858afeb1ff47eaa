//! A 90/10 canary split with `mesh-routing` and `mesh-mirror` as middleware in a hyper server.
//!
//! Starts two loopback upstreams (reviews v1 and v2) and a front server whose stack is
//! `RouteLayer` (VirtualService: 90% to subset v1, 10% to v2) -> `RouteDispatchLayer` (draws
//! each request's destination) -> `mesh_mirror::Upstream` (DestinationRule subsets by label,
//! endpoints from a `StaticRegistry`), then sends 1,000 requests and prints the split it saw.
//!
//! `cargo run -p mesh-examples --example canary_split`

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_mirror::{
    DestinationRules, Endpoint, RouteDispatchLayer, SharedDestinationRules, StaticRegistry,
    Upstream, load_destination_rules,
};
use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, load_virtual_services};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

type Error = Box<dyn std::error::Error + Send + Sync>;

const VIRTUAL_SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: canary
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"#;

const DESTINATION_RULE: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

const HOST: &str = "reviews.default.svc.cluster.local";
const REQUESTS: usize = 1_000;

/// A stand-in for one deployment of reviews: answers every request with its version.
async fn version_server(version: &'static str) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version))))
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

#[tokio::main]
async fn main() -> Result<(), Error> {
    let v1 = version_server("v1").await?;
    let v2 = version_server("v2").await?;

    // Where the pods of reviews are; a real proxy would fill this from its service registry.
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        9080,
        vec![
            Endpoint::new(v1).label("version", "v1"),
            Endpoint::new(v2).label("version", "v2"),
        ],
    );
    let rules = load_destination_rules(DESTINATION_RULE, "dr.yaml", "default")?;
    let upstream: Upstream<Incoming> = Upstream::new(
        SharedDestinationRules::new(DestinationRules::new(rules)),
        Arc::new(registry),
    );
    let vss = load_virtual_services(VIRTUAL_SERVICE, "vs.yaml", "default")?;
    let table = SharedRouteTable::new(RouteTable::build(&vss, &TableOptions::default()));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let front = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .layer(RouteLayer::new(table.clone()))
                .layer(RouteDispatchLayer::new())
                .service(upstream.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    println!("front {front} -> v1 {v1} (90%), v2 {v2} (10%)");

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let req = Request::get(format!("http://{front}/reviews/1"))
            .header("host", "reviews:9080")
            .body(Full::new(Bytes::new()))?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let key = if status.is_success() {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            format!("{status}")
        };
        *seen.entry(key).or_default() += 1;
    }

    println!("{REQUESTS} requests through RouteLayer -> RouteDispatchLayer -> Upstream:");
    for (version, count) in &seen {
        let share = 100.0 * *count as f64 / REQUESTS as f64;
        println!("  {version}: {count:>4} ({share:.1}%)");
    }
    Ok(())
}
