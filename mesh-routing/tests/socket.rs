//! The routing layer inside a real hyper server on loopback, driven by a real hyper client
//! over HTTP/1.1 and HTTP/2 (h2c).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_routing::{
    MatchedRoute, RouteLayer, RouteTable, SharedRouteTable, TableOptions, load_virtual_services,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};

const CONFIG: &str = "apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  gateways: [mesh]
  http:
  - name: upload
    match: [{uri: {prefix: /upload}, method: {exact: POST}}]
    rewrite: {uri: /store}
    route: [{destination: {host: storage}}]
  - name: teapot
    match: [{uri: {exact: /tea}}]
    directResponse: {status: 418, body: {string: short and stout}}
";

/// Echoes the route name, the path it saw and the request body.
async fn upstream(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = req
        .extensions()
        .get::<MatchedRoute>()
        .and_then(|m| m.route().name().map(String::from))
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = format!("{route} {path} {}", String::from_utf8_lossy(&body));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn serve() -> SocketAddr {
    let vss = load_virtual_services(CONFIG, "t.yaml", "default").unwrap();
    let table = SharedRouteTable::new(RouteTable::build(&vss, &TableOptions::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .layer(RouteLayer::new(table.clone()))
                .service(service_fn(upstream));
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(io, TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}

/// Sends to `http://api.example.com{path}` with DNS pointed at the test listener, so HTTP/2's
/// `:authority` carries the virtual host (it takes precedence over `Host`, as in Envoy).
async fn send(
    addr: SocketAddr,
    http2: bool,
    method: &str,
    path: &str,
    body: &'static str,
) -> (u16, String) {
    let resolve =
        tower::service_fn(
            move |_name: Name| async move { Ok::<_, Infallible>(std::iter::once(addr)) },
        );
    let connector = HttpConnector::new_with_resolver(resolve);
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build::<_, Full<Bytes>>(connector);
    let req = Request::builder()
        .method(method)
        .uri(format!("http://api.example.com:{}{path}", addr.port()))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn routes_rewrites_and_streams_bodies_over_http1_and_h2c() {
    let addr = serve().await;
    for http2 in [false, true] {
        assert_eq!(
            send(addr, http2, "POST", "/upload/a.txt", "payload").await,
            (200, "upload /store/a.txt payload".into())
        );
        assert_eq!(
            send(addr, http2, "GET", "/tea", "").await,
            (418, "short and stout".into())
        );
        // GET /upload matches no route: the host has routes, so 404.
        assert_eq!(send(addr, http2, "GET", "/upload/a.txt", "").await.0, 404);
    }
}
