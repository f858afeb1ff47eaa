//! Loopback backends for the upstream tests: count requests and connections, answer a
//! configurable status, optionally hold requests until released, record the HTTP version.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_mirror::{Endpoint, Upstream};
use mesh_routing::Destination;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A running backend and its counters.
#[derive(Clone)]
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Requests received (counted on arrival, before any hold).
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// Status to answer with.
    pub status: Arc<AtomicU16>,
    /// When set, each request waits for a permit before answering.
    pub gate: Option<Arc<Semaphore>>,
    /// HTTP version of each request.
    pub versions: Arc<Mutex<Vec<Version>>>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Self {
        Self::spawn(name, None).await
    }

    /// A backend that holds every request until [`release`](Self::release).
    pub async fn gated(name: &'static str) -> Self {
        Self::spawn(name, Some(Arc::new(Semaphore::new(0)))).await
    }

    pub fn release(&self, n: usize) {
        if let Some(g) = &self.gate {
            g.add_permits(n);
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_status(&self, s: StatusCode) {
        self.status.store(s.as_u16(), Ordering::SeqCst);
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.addr)
    }

    async fn spawn(name: &'static str, gate: Option<Arc<Semaphore>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Self {
            name,
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            conns: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            gate,
            versions: Arc::default(),
        };
        let server = b.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                server.conns.fetch_add(1, Ordering::SeqCst);
                let s = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move {
                            s.hits.fetch_add(1, Ordering::SeqCst);
                            s.versions.lock().unwrap().push(req.version());
                            if let Some(g) = &s.gate {
                                g.acquire().await.unwrap().forget();
                            }
                            let mut resp = Response::new(Full::new(Bytes::from(s.name)));
                            *resp.status_mut() =
                                StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        b
    }
}

pub const HOST: &str = "reviews.default.svc.cluster.local";
pub const PORT: u16 = 9080;

/// A request routed to `subset` of the reviews service (as the routing layer would leave it).
pub fn to_reviews(subset: Option<&str>, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get("http://reviews:9080/ratings?user=x").header("host", "reviews:9080");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut().insert(Destination {
        host: HOST.into(),
        subset: subset.map(str::to_string),
        port: Some(PORT),
    });
    req
}

/// Sends `req` and returns status, body and the `x-envoy-overloaded` header.
pub async fn send(
    up: &Upstream<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, String, bool) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let resp = up.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let overloaded = resp.headers().contains_key("x-envoy-overloaded");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        overloaded,
    )
}
