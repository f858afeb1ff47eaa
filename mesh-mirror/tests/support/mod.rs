//! Real loopback servers and clients for the socket-level tests.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{Service, ServiceExt as _};

pub mod backend;

/// Serves `handler` over HTTP/1.1 on 127.0.0.1, one task per connection.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A server answering 200 with the request body it read.
pub async fn echo_server() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        Response::new(Full::new(body.unwrap_or_default()))
    })
    .await
}

/// A pooled hyper client sending every request to `addr`, whatever its URI says (the Host
/// header is kept), as a proxy's per-destination client does.
pub fn client_to<B>(
    addr: SocketAddr,
) -> impl Service<
    Request<B>,
    Response = Response<Incoming>,
    Error = hyper_util::client::legacy::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client: Client<HttpConnector, B> = Client::builder(TokioExecutor::new()).build_http();
    client.map_request(move |mut req: Request<B>| {
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        *req.uri_mut() = Uri::try_from(format!("http://{addr}{pq}")).unwrap();
        req
    })
}

/// A request to the primary's host with a body.
pub fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://primary.test:8080/orders?id=7")
        .header("host", "primary.test:8080")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Sends `n` requests one after the other; returns each status and body, and the total time.
pub async fn run_sequential<S, B>(
    svc: &S,
    n: usize,
    body: &'static str,
) -> (Vec<(u16, Bytes)>, Duration)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let resp = svc.clone().oneshot(post(body)).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        out.push((status, bytes));
    }
    (out, start.elapsed())
}

/// Waits (up to 10 s) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
