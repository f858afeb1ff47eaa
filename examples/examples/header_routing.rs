//! Header-based routing with `mesh-routing` as plain tower middleware in a hyper server.
//!
//! Loads a VirtualService (Istio's bookinfo `reviews` rule: `end-user: jason` goes to v2,
//! everyone else to v1), serves it on loopback, and sends a few requests through it.
//!
//! `cargo run -p mesh-examples --example header_routing`

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_routing::{
    MatchedRoute, RouteLayer, RouteTable, SharedRouteTable, TableOptions, load_virtual_services,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason-to-v2
    match:
    - headers: {end-user: {exact: jason}}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: legacy-redirect
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /reviews}
  - name: default-v1
    route: [{destination: {host: reviews, subset: v1}}]
"#;

/// Stands in for the upstream call: reports which route and subset the router chose.
async fn upstream(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = match req.extensions().get::<MatchedRoute>() {
        Some(m) => {
            let route = m.route();
            let subset = (route.destinations())
                .and_then(|d| d.iter().next())
                .and_then(|d| d.destination.subset.clone())
                .unwrap_or_default();
            format!("route {} -> subset {subset}", route.name().unwrap_or("?"))
        }
        None => "no route".to_string(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let vss = load_virtual_services(CONFIG, "reviews.yaml", "default")?;
    let table = SharedRouteTable::new(RouteTable::build(&vss, &TableOptions::default()));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = ServiceBuilder::new()
                .layer(RouteLayer::new(table.clone()))
                .service(service_fn(upstream));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let cases: [(&str, &str, Option<&str>); 4] = [
        ("anonymous user", "/reviews/1", None),
        ("jason", "/reviews/1", Some("jason")),
        ("old link", "/old/1", None),
        ("unknown host", "/", None),
    ];
    println!("mesh-routing listening on {addr}");
    for (label, path, user) in cases {
        let host = if label == "unknown host" {
            "ratings"
        } else {
            "reviews:9080"
        };
        let mut req = Request::get(format!("http://{addr}{path}")).header("host", host);
        if let Some(user) = user {
            req = req.header("end-user", user);
        }
        let resp = client.request(req.body(Full::new(Bytes::new()))?).await?;
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| format!(" location={}", l.to_str().unwrap_or("?")));
        let body = resp.into_body().collect().await?.to_bytes();
        println!(
            "{label:>15}: {status} {}{}",
            String::from_utf8_lossy(&body),
            location.unwrap_or_default()
        );
    }
    Ok(())
}
