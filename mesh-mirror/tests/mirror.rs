//! Mirroring over real loopback sockets: the client sees only the primary, whatever the mirror
//! does, and every copy's fate is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use mesh_mirror::{MirrorBody, MirrorConfig, MirrorLayer, MirrorStats, MirrorTarget, TeeBody};
use tokio::sync::mpsc;
use tower::{Layer as _, ServiceExt as _, service_fn};

use support::{client_to, echo_server, eventually, run_sequential, serve};

/// What a recording mirror server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    host: String,
    body: Result<Bytes, String>,
}

async fn recording_server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = serve(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let host = req.headers()["host"].to_str().unwrap().to_string();
            let body = req.into_body().collect().await;
            let body = body.map(|b| b.to_bytes()).map_err(|e| e.to_string());
            let _ = tx.send(Seen {
                method,
                uri,
                host,
                body,
            });
            Response::new(Full::new(Bytes::from_static(b"mirror says hi")))
        }
    })
    .await;
    (addr, rx)
}

fn target<M>(service: M) -> Vec<MirrorTarget<M>> {
    vec![MirrorTarget {
        service,
        percentage: 100.0,
    }]
}

/// Generous bound for "latency unchanged beyond noise": ten times the no-mirror baseline plus
/// 50 ms of scheduling noise on a small shared machine.
fn assert_latency_unchanged(baseline: Duration, mirrored: Duration) {
    assert!(
        mirrored <= baseline * 10 + Duration::from_millis(50),
        "mirrored run took {mirrored:?}, baseline {baseline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_gets_a_copy_and_the_client_gets_the_primary_response() {
    let primary = echo_server().await;
    let (mirror, mut seen) = recording_server().await;
    let layer = MirrorLayer::new(target(client_to::<MirrorBody>(mirror)));
    let counters = layer.counters();
    let svc = layer.layer(client_to::<TeeBody<Full<Bytes>>>(primary));

    let (responses, _) = run_sequential(&svc, 1, "order #7").await;
    assert_eq!(responses, [(200, Bytes::from_static(b"order #7"))]);

    let copy = seen.recv().await.unwrap();
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.uri, "/orders?id=7");
    assert_eq!(
        copy.host, "primary.test:8080",
        "no -shadow suffix by default"
    );
    assert_eq!(copy.body.unwrap(), "order #7");
    eventually("copy completed", || counters.snapshot().completed == 1).await;
    assert_eq!(
        counters.snapshot(),
        MirrorStats {
            mirrored: 1,
            completed: 1,
            ..MirrorStats::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_suffix_is_added_only_when_configured() {
    let primary = echo_server().await;
    let (mirror, mut seen) = recording_server().await;
    let config = MirrorConfig {
        shadow_host_suffix: true,
        ..MirrorConfig::default()
    };
    let layer = MirrorLayer::new(target(client_to::<MirrorBody>(mirror))).config(config);
    let svc = layer.layer(client_to::<TeeBody<Full<Bytes>>>(primary));
    run_sequential(&svc, 1, "x").await;
    assert_eq!(seen.recv().await.unwrap().host, "primary.test-shadow:8080");
}

/// Runs the same requests with no mirror and with the given mirror; responses must be equal
/// and latency unchanged beyond noise. Returns the mirrored run's total time.
async fn compare_with_baseline<M>(
    mirror: M,
    config: MirrorConfig,
    n: usize,
) -> (Duration, MirrorLayer<M>)
where
    M: tower::Service<Request<MirrorBody>, Response = Response<Incoming>> + Clone + Send + 'static,
    M::Future: Send + 'static,
{
    let primary = echo_server().await;
    let bare = client_to::<Full<Bytes>>(primary);
    // Warm the connection pools so neither run pays for a handshake the other does not.
    run_sequential(&bare, 2, "warm-up").await;
    let (baseline, baseline_time) = run_sequential(&bare, n, "payload").await;

    let layer = MirrorLayer::new(target(mirror)).config(config);
    let svc = layer.layer(client_to::<TeeBody<Full<Bytes>>>(primary));
    run_sequential(&svc, 1, "warm-up").await;
    let (mirrored, mirrored_time) = run_sequential(&svc, n, "payload").await;
    assert_eq!(mirrored, baseline);
    assert!(mirrored.iter().all(|(s, b)| *s == 200 && b == "payload"));
    assert_latency_unchanged(baseline_time, mirrored_time);
    (mirrored_time, layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_mirror_does_not_change_the_primary() {
    let hang = serve(|_req: Request<Incoming>| async move {
        std::future::pending::<()>().await;
        Response::new(Full::new(Bytes::new()))
    })
    .await;
    let config = MirrorConfig {
        timeout: Duration::from_secs(3),
        ..MirrorConfig::default()
    };
    let (elapsed, layer) = compare_with_baseline(client_to(hang), config, 20).await;
    assert!(
        elapsed < Duration::from_secs(3),
        "the primary waited for a mirror: {elapsed:?}"
    );
    let counters = layer.counters();
    eventually("hung copies timed out", || counters.snapshot().failed == 21).await;
    assert_eq!(counters.snapshot().completed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mirror_does_not_delay_the_primary() {
    let slow = serve(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Response::new(Full::new(Bytes::from_static(b"late")))
    })
    .await;
    let (elapsed, layer) =
        compare_with_baseline(client_to(slow), MirrorConfig::default(), 20).await;
    assert!(
        elapsed < Duration::from_secs(2),
        "the primary waited for a mirror: {elapsed:?}"
    );
    let counters = layer.counters();
    eventually("slow copies completed", || {
        counters.snapshot().completed == 21
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_mirror_is_counted_failed_and_invisible() {
    // Bind then drop a listener: connecting to its port is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, layer) = compare_with_baseline(client_to(closed), MirrorConfig::default(), 10).await;
    let counters = layer.counters();
    eventually("refused copies failed", || counters.snapshot().failed == 11).await;
}

/// The default panic hook prints (and with RUST_BACKTRACE, symbolizes) every caught panic on
/// the mirror task's thread; that cost belongs to std, not to the layer, so the test keeps it
/// out of the latency comparison. Other panics still reach the default hook.
fn quiet_mirror_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"mirror exploded") {
                default(info);
            }
        }));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erroring_and_panicking_mirrors_are_counted_failed_and_invisible() {
    let erroring = service_fn(|_req: Request<MirrorBody>| async move {
        Err::<Response<Incoming>, _>(std::io::Error::other("mirror is down"))
    });
    let (_, layer) = compare_with_baseline(erroring, MirrorConfig::default(), 10).await;
    let counters = layer.counters();
    eventually("erroring copies failed", || {
        counters.snapshot().failed == 11
    })
    .await;

    quiet_mirror_panics();
    let panicking = service_fn(|_req: Request<MirrorBody>| async move {
        panic!("mirror exploded");
        #[allow(unreachable_code)]
        Err::<Response<Incoming>, Infallible>(unreachable!())
    });
    let (_, layer) = compare_with_baseline(panicking, MirrorConfig::default(), 10).await;
    let counters = layer.counters();
    eventually("panicking copies failed", || {
        counters.snapshot().failed == 11
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_over_the_cap_are_dropped_and_counted_and_permits_come_back() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let gate = serve(move |_req: Request<Incoming>| {
        let mut rx = release_rx.clone();
        async move {
            let _ = rx.wait_for(|open| *open).await;
            Response::new(Full::new(Bytes::new()))
        }
    })
    .await;
    let primary = echo_server().await;
    let config = MirrorConfig {
        max_in_flight: 2,
        ..MirrorConfig::default()
    };
    let layer = MirrorLayer::new(target(client_to::<MirrorBody>(gate)));
    // A handle taken before `config` keeps counting.
    let counters = layer.counters();
    let layer = layer.config(config);
    let svc = layer.layer(client_to::<TeeBody<Full<Bytes>>>(primary));

    let (responses, _) = run_sequential(&svc, 5, "capped").await;
    assert!(responses.iter().all(|(s, b)| *s == 200 && b == "capped"));
    let s = counters.snapshot();
    assert_eq!((s.mirrored, s.dropped_over_cap), (2, 3));

    release_tx.send(true).unwrap();
    eventually("gated copies completed", || {
        counters.snapshot().completed == 2
    })
    .await;
    run_sequential(&svc, 1, "again").await;
    assert_eq!(counters.snapshot().mirrored, 3, "permits were returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_known_to_exceed_the_limit_is_not_mirrored() {
    let primary = echo_server().await;
    let (mirror, mut seen) = recording_server().await;
    let config = MirrorConfig {
        body_limit: 4,
        ..MirrorConfig::default()
    };
    let layer = MirrorLayer::new(target(client_to::<MirrorBody>(mirror))).config(config);
    let counters = layer.counters();
    let svc = layer.layer(client_to::<TeeBody<Full<Bytes>>>(primary));
    let (responses, _) = run_sequential(&svc, 1, "more than four bytes").await;
    assert_eq!(responses[0].1, "more than four bytes");
    let s = counters.snapshot();
    assert_eq!((s.mirrored, s.dropped_body_too_large), (0, 1));
    // Within the limit, the next one is mirrored.
    run_sequential(&svc, 1, "tiny").await;
    assert_eq!(seen.recv().await.unwrap().body.unwrap(), "tiny");
}

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunked(n: usize, size: usize) -> Chunks {
    let frames = (0..n).map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; size]))));
    StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_body_over_the_limit_aborts_only_the_copy() {
    let primary = echo_server().await;
    let (mirror, mut seen) = recording_server().await;
    let config = MirrorConfig {
        body_limit: 64 * 1024,
        ..MirrorConfig::default()
    };
    let layer = MirrorLayer::new(target(client_to::<MirrorBody>(mirror))).config(config);
    let counters = layer.counters();
    let svc = layer.layer(client_to::<TeeBody<Chunks>>(primary));

    // 1 MiB in 16 KiB chunks, with no length known in advance.
    let req = Request::post("http://primary.test/upload")
        .body(chunked(64, 16 * 1024))
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let expected: Vec<u8> = chunked(64, 16 * 1024)
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    assert_eq!(body.len(), 1024 * 1024);
    assert_eq!(
        body.to_vec(),
        expected,
        "the primary got the body unchanged"
    );

    eventually("copy aborted", || {
        counters.snapshot().dropped_body_too_large == 1
    })
    .await;
    let s = counters.snapshot();
    assert_eq!((s.mirrored, s.completed, s.failed), (1, 0, 0));
    // The mirror server never received a complete body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(copy) = seen.try_recv() {
        assert!(
            copy.body.is_err(),
            "mirror got a complete copy of {:?}",
            copy.body.map(|b| b.len())
        );
    }
}

#[tokio::test]
async fn mirror_percentage_samples_requests() {
    let primary = service_fn(|_req: Request<TeeBody<Full<Bytes>>>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let received = Arc::new(Mutex::new(0usize));
    let r = received.clone();
    let mirror = service_fn(move |_req: Request<MirrorBody>| {
        *r.lock().unwrap() += 1;
        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let layer = MirrorLayer::new(vec![
        MirrorTarget {
            service: mirror.clone(),
            percentage: 25.0,
        },
        MirrorTarget {
            service: mirror,
            percentage: 0.0,
        },
    ])
    .config(MirrorConfig {
        max_in_flight: 10_000,
        ..MirrorConfig::default()
    })
    .with_rng(mesh_mirror::RngSource::seeded(11));
    let counters = layer.counters();
    let svc = layer.layer(primary);
    run_sequential(&svc, 4000, "x").await;
    eventually("copies done", || {
        let s = counters.snapshot();
        s.completed == s.mirrored
    })
    .await;
    let s = counters.snapshot();
    // 25% of 4000 = 1000; the standard deviation is ~27, so +-150 is over 5 sigma.
    assert!(
        (850..=1150).contains(&s.mirrored),
        "mirrored {}",
        s.mirrored
    );
    assert_eq!(
        s.skipped_sampling,
        4000 - s.mirrored + 4000,
        "0% target skipped every time"
    );
    assert_eq!(*received.lock().unwrap() as u64, s.mirrored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_is_never_ready_takes_no_part_in_primary_readiness() {
    let (never_ready, _handle) =
        tower_test::mock::pair::<Request<MirrorBody>, Response<Full<Bytes>>>();
    // `_handle` never allows a request: the mirror's poll_ready stays pending forever.
    let config = MirrorConfig {
        timeout: Duration::from_millis(100),
        ..MirrorConfig::default()
    };
    let layer = MirrorLayer::new(target(never_ready)).config(config);
    let counters = layer.counters();
    let primary = service_fn(|req: Request<TeeBody<Full<Bytes>>>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(Response::new(Full::new(body)))
    });
    let mut svc = tower_test::mock::Spawn::new(layer.layer(primary));
    assert!(
        svc.poll_ready().is_ready(),
        "readiness is the primary's alone"
    );
    let resp = svc.call(support::post("still served")).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "still served"
    );
    eventually("stuck copy timed out", || counters.snapshot().failed == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_mirrors_follow_mirror_percentage_and_unknown_targets_fail() {
    use mesh_routing::{RouteLayer, RouteTable, SharedRouteTable, TableOptions, VirtualService};
    let vs = VirtualService::from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /off}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /unknown}}]
    mirror: {host: nowhere}
    route: [{destination: {host: web}}]
  - mirrors:
    - destination: {host: shadow}
    - destination: {host: shadow}
      percentage: {value: 100}
    route: [{destination: {host: web}}]
"#,
    )
    .unwrap();
    let table = SharedRouteTable::new(RouteTable::build(&[vs], &TableOptions::default()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shadow = service_fn(move |req: Request<MirrorBody>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(req.uri().path().to_string());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let layer = MirrorLayer::from_route(move |d| {
        (d.host == "shadow.default.svc.cluster.local").then(|| shadow.clone())
    });
    let counters = layer.counters();
    let primary = service_fn(|_req: Request<TeeBody<Full<Bytes>>>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"primary"))))
    });
    let svc = tower::ServiceBuilder::new()
        .layer(RouteLayer::new(table))
        .layer(layer)
        .service(primary);
    let get = |path: &str| {
        Request::get(format!("http://web{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for path in ["/off", "/unknown", "/both"] {
        let resp = svc.clone().oneshot(get(path)).await.unwrap();
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            "primary"
        );
    }
    eventually("two copies completed", || {
        counters.snapshot().completed == 2
    })
    .await;
    assert_eq!(rx.recv().await.unwrap(), "/both");
    assert_eq!(rx.recv().await.unwrap(), "/both");
    let s = counters.snapshot();
    assert_eq!((s.skipped_sampling, s.failed, s.mirrored), (1, 1, 2));
}
