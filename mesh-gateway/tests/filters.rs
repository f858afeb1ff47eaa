//! The ingress filters stacked in front of a real hyper server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_gateway::filters::{
    BodyLimitLayer, ClientAddr, ForwardedLayer, HeaderLimitLayer, HopByHopLayer, RemoteAddr,
    StripInternalHeadersLayer, request_id_layer,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};

/// Echoes what reached it: headers as `name: value` lines, the client address, the body length.
async fn echo<B: http_body::Body>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut out = String::new();
    for (k, v) in req.headers() {
        out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    if let Some(ClientAddr(ip)) = req.extensions().get::<ClientAddr>() {
        out.push_str(&format!("client: {ip}\n"));
    }
    let len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(usize::MAX);
    out.push_str(&format!("body: {len}\n"));
    Ok(Response::new(Full::new(Bytes::from(out))))
}

async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let svc = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(RemoteAddr(peer));
                    req
                })
                .layer(HeaderLimitLayer::new(20, 4096))
                .layer(BodyLimitLayer::new(1024))
                .layer(StripInternalHeadersLayer::default())
                .layer(HopByHopLayer)
                .layer(ForwardedLayer::new(1).proto("http"))
                .layer(request_id_layer())
                .service(service_fn(echo));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}

async fn send(addr: SocketAddr, req: http::request::Builder, body: Vec<u8>) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = req
        .uri(format!("http://{addr}/"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn edge_headers_are_rewritten_as_an_istio_ingress_would() {
    let addr = serve().await;
    let req = Request::get("/")
        .header("x-forwarded-for", "198.51.100.9")
        .header("x-envoy-force-trace", "true")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-kept", "yes");
    let (status, seen) = send(addr, req, Vec::new()).await;
    assert_eq!(status, 200);
    assert!(
        seen.contains("x-forwarded-for: 198.51.100.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("client: 198.51.100.9\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-request-id: "), "{seen}");
    assert!(seen.contains("x-kept: yes\n"), "{seen}");
    for gone in ["x-envoy-force-trace", "x-hop", "connection"] {
        assert!(!seen.contains(&format!("{gone}:")), "{gone} leaked: {seen}");
    }
}

#[tokio::test]
async fn an_incoming_request_id_is_kept() {
    let addr = serve().await;
    let (_, seen) = send(
        addr,
        Request::get("/").header("x-request-id", "abc-123"),
        Vec::new(),
    )
    .await;
    assert!(seen.contains("x-request-id: abc-123\n"), "{seen}");
}

#[tokio::test]
async fn too_many_headers_get_431_and_large_bodies_413() {
    let addr = serve().await;
    let mut req = Request::get("/");
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert_eq!(send(addr, req, Vec::new()).await.0, 431);
    assert_eq!(
        send(
            addr,
            Request::get("/").header("x-big", "v".repeat(5000)),
            Vec::new()
        )
        .await
        .0,
        431
    );
    assert_eq!(
        send(addr, Request::post("/"), vec![b'x'; 2048]).await.0,
        413
    );
    let (status, seen) = send(addr, Request::post("/"), vec![b'x'; 512]).await;
    assert_eq!(status, 200);
    assert!(seen.ends_with("body: 512\n"), "{seen}");
}
