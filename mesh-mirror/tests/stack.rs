//! The whole dispatch stack fed by a VirtualService: routing, route timeout, mirroring, retries
//! and the weighted split, over real loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use mesh_mirror::{
    MirrorLayer, Mode, ReplayBody, RetryLayer, RouteTimeoutLayer, TeeBody, Weighted,
};
use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, VirtualService};
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};

use support::{client_to, eventually, serve};

const VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: 300ms
    retries: {attempts: 2, retryOn: 5xx}
    mirror: {host: reviews-shadow}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 75
      headers: {request: {set: {x-version: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 25
      headers: {request: {set: {x-version: v2}}}
"#;

type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A backend recording (path, x-version); `/slow` answers after 3 s, `/flaky` always 503.
async fn backend(name: &'static str, log: Log) -> std::net::SocketAddr {
    serve(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_string();
            let version = req
                .headers()
                .get("x-version")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            log.lock().unwrap().push((path.clone(), version));
            let mut resp = Response::new(Full::new(Bytes::from(name)));
            match path.as_str() {
                "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
                "/flaky" => *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
                _ => {}
            }
            resp
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_service_drives_split_mirror_retries_and_timeout() {
    let (v1_log, v2_log, shadow_log) = (Log::default(), Log::default(), Log::default());
    let v1 = backend("v1", v1_log.clone()).await;
    let v2 = backend("v2", v2_log.clone()).await;
    let shadow = backend("shadow", shadow_log.clone()).await;

    let vs = VirtualService::from_yaml(VS).unwrap();
    let table = RouteTable::build(&[vs], &TableOptions::default());
    let probe = Request::get("http://reviews/").body(()).unwrap();
    let route = table.route(&probe).route().cloned().unwrap();
    // Retries sit inside the split, per destination: as in Envoy, the weighted destination is
    // chosen once per request and its retries stay on it.
    let split = Weighted::from_destinations(route.destinations().unwrap(), Mode::RoundRobin, |d| {
        let addr = if d.subset.as_deref() == Some("v1") {
            v1
        } else {
            v2
        };
        RetryLayer::from_route()
            .backoff(Duration::from_millis(1))
            .layer(client_to::<ReplayBody<TeeBody<Full<Bytes>>>>(addr))
    })
    .unwrap();
    let mirror = MirrorLayer::from_route(move |d| {
        (d.host == "reviews-shadow.default.svc.cluster.local").then(|| client_to(shadow))
    });
    let counters = mirror.counters();
    let svc = ServiceBuilder::new()
        .layer(RouteLayer::new(SharedRouteTable::new(table)))
        .layer(RouteTimeoutLayer::from_route())
        .layer(mirror)
        .service(split);

    let get = |path: &str| {
        Request::get(format!("http://reviews{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for _ in 0..100 {
        let resp = svc.clone().oneshot(get("/reviews/1")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Smooth round-robin is exact over every window of sum(weights) = 100 requests.
    let hits = |log: &Log, path: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    };
    assert_eq!(
        (hits(&v1_log, "/reviews/1"), hits(&v2_log, "/reviews/1")),
        (75, 25)
    );
    // Destination header operations reached the right backend.
    assert!(v1_log.lock().unwrap().iter().all(|(_, v)| v == "v1"));
    assert!(v2_log.lock().unwrap().iter().all(|(_, v)| v == "v2"));
    // Every request was mirrored (no mirrorPercentage = 100%).
    eventually("100 copies completed", || {
        counters.snapshot().completed == 100
    })
    .await;
    assert_eq!(hits(&shadow_log, "/reviews/1"), 100);

    // retries: attempts 2 on 5xx -> three tries in all, on the one destination chosen, and
    // the last 503 returned.
    let resp = svc.clone().oneshot(get("/flaky")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let flaky = (hits(&v1_log, "/flaky"), hits(&v2_log, "/flaky"));
    assert!(
        flaky == (3, 0) || flaky == (0, 3),
        "tries spread over destinations: {flaky:?}"
    );

    // timeout: 300ms -> 504 long before the 3 s backend answers.
    let start = std::time::Instant::now();
    let resp = svc.clone().oneshot(get("/slow")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(3));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "upstream request timeout");
}
