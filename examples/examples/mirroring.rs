//! Traffic mirroring with `mesh-mirror` as middleware in a hyper server.
//!
//! Starts a fast primary and a slow shadow (it sleeps 300 ms per request) on loopback, and a
//! front server whose `MirrorLayer` sends every request to the primary and a fire-and-forget
//! copy to the shadow. The client only ever waits for the primary: the example prints the
//! client's latencies, what the shadow received, and the layer's `MirrorCounters`.
//!
//! `cargo run -p mesh-examples --example mirroring`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_mirror::{MirrorBody, MirrorLayer, MirrorTarget, TeeBody};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

const REQUESTS: usize = 20;
const SHADOW_DELAY: Duration = Duration::from_millis(300);

/// Serves on loopback: reads the request body, counts it, waits `delay`, answers `name`.
async fn server(
    name: &'static str,
    delay: Duration,
    hits: Arc<AtomicUsize>,
) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let hits = hits.clone();
                async move {
                    let _ = req.into_body().collect().await;
                    hits.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                }
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

/// A pooled client that sends every request to `addr`, keeping path and Host: what a proxy's
/// per-destination client does.
fn client_to<B>(
    addr: SocketAddr,
) -> impl Service<Request<B>, Response = Response<Incoming>, Error = Error, Future: Send>
+ Clone
+ Send
+ 'static
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Error>,
{
    let client = Client::builder(TokioExecutor::new()).build_http::<B>();
    client
        .map_request(move |mut req: Request<B>| {
            let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            if let Ok(uri) = Uri::try_from(format!("http://{addr}{pq}")) {
                *req.uri_mut() = uri;
            }
            req
        })
        .map_err(Error::from)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let primary_hits = Arc::new(AtomicUsize::new(0));
    let shadow_hits = Arc::new(AtomicUsize::new(0));
    let primary = server("primary", Duration::ZERO, primary_hits.clone()).await?;
    let shadow = server("shadow", SHADOW_DELAY, shadow_hits.clone()).await?;

    let mirror = MirrorLayer::new(vec![MirrorTarget {
        service: client_to::<MirrorBody>(shadow),
        percentage: 100.0,
    }]);
    let counters = mirror.counters();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let front = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = mirror.layer(client_to::<TeeBody<Incoming>>(primary));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    println!(
        "front {front} -> primary {primary}, mirrored to shadow {shadow} (sleeps {SHADOW_DELAY:?})"
    );

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut latencies = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let req = Request::post(format!("http://{front}/orders"))
            .header("host", "orders.default.svc.cluster.local")
            .body(Full::new(Bytes::from(format!("order #{i}"))))?;
        let start = Instant::now();
        let resp = client.request(req).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        latencies.push(start.elapsed());
        if body != "primary" {
            return Err(format!("expected the primary's answer, got {body:?}").into());
        }
    }
    latencies.sort();
    let after_client = counters.snapshot();

    // The copies finish on their own time; give the shadow a moment to answer all of them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counters.snapshot().completed < REQUESTS as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "client saw {REQUESTS} primary responses: min {:?}, median {:?}, max {:?}",
        latencies[0],
        latencies[REQUESTS / 2],
        latencies[REQUESTS - 1]
    );
    println!(
        "primary received {}, shadow received {}",
        primary_hits.load(Ordering::SeqCst),
        shadow_hits.load(Ordering::SeqCst)
    );
    println!("mirror counters when the client finished: {after_client:?}");
    println!(
        "mirror counters once the shadow answered: {:?}",
        counters.snapshot()
    );
    Ok(())
}
