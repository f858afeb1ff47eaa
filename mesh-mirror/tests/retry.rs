//! Retries and timeouts against real loopback servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use mesh_mirror::{ReplayBody, RetryLayer, RouteTimeoutLayer};
use mesh_routing::{RetryCondition, RetryOn, RetryPolicy};
use tower::{Layer as _, ServiceExt as _};

use support::{client_to, post, serve};

/// A server answering with `statuses` in turn (the last one forever), after `delay`, and
/// recording every request body it read.
async fn scripted(
    statuses: &[u16],
    delay: Duration,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let statuses: Arc<[u16]> = statuses.into();
    let log = seen.clone();
    let addr = serve(move |req: Request<Incoming>| {
        let (log, statuses) = (log.clone(), statuses.clone());
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(body);
                log.len()
            };
            tokio::time::sleep(delay).await;
            let status = statuses[(n - 1).min(statuses.len() - 1)];
            let mut resp = Response::new(Full::new(Bytes::from(format!("try {n}"))));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp
        }
    })
    .await;
    (addr, seen)
}

fn policy(attempts: u32, retry_on: &str, per_try: Option<Duration>) -> RetryPolicy {
    let mut on = RetryOn::default();
    for token in retry_on.split(',') {
        match token.parse::<u16>() {
            Ok(code) => {
                on.conditions.push(RetryCondition::RetriableStatusCodes);
                on.status_codes.push(code);
            }
            Err(_) => on.conditions.push(RetryCondition::parse(token).unwrap()),
        }
    }
    RetryPolicy {
        attempts,
        per_try_timeout: per_try,
        retry_on: on,
        retry_remote_localities: false,
    }
}

fn retry_layer(p: RetryPolicy) -> RetryLayer {
    RetryLayer::new(p).backoff(Duration::from_millis(1))
}

async fn send<S, B>(svc: S, req: Request<B>) -> (StatusCode, Bytes)
where
    S: tower::Service<Request<B>, Response = Response<Incoming>, Error = tower::BoxError>,
{
    let resp = svc.oneshot(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_status_is_retried_with_the_same_body() {
    let (addr, seen) = scripted(&[503, 503, 200], Duration::ZERO).await;
    let svc = retry_layer(policy(2, "5xx", None)).layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    let (status, body) = send(svc, post("replay me")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, Bytes::from_static(b"try 3"))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Bytes::from_static(b"replay me"); 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_attempts_and_returns_the_last_response() {
    let (addr, seen) = scripted(&[503], Duration::ZERO).await;
    let svc = retry_layer(policy(2, "gateway-error", None))
        .layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    let (status, body) = send(svc, post("x")).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"try 3")
        )
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_response_returned_for_want_of_attempts_is_marked_urx() {
    use mesh_mirror::RetryLimitReached;
    let marked = |resp: &Response<Incoming>| resp.extensions().get::<RetryLimitReached>().is_some();
    // Retriable every time: the last 503 is returned because the attempts ran out.
    let (addr, _) = scripted(&[503], Duration::ZERO).await;
    let svc = retry_layer(policy(1, "503", None)).layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    let resp = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(marked(&resp));
    // A retry that succeeded, and an answer retryOn does not cover, are not marked.
    for (statuses, retry_on) in [(&[503, 200][..], "503"), (&[500][..], "503")] {
        let (addr, _) = scripted(statuses, Duration::ZERO).await;
        let svc = retry_layer(policy(1, retry_on, None))
            .layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
        assert!(
            !marked(&svc.oneshot(post("x")).await.unwrap()),
            "{statuses:?}"
        );
    }
    // No retries configured: nothing ran out.
    let (addr, _) = scripted(&[503], Duration::ZERO).await;
    let svc = retry_layer(policy(0, "503", None)).layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    assert!(!marked(&svc.oneshot(post("x")).await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_outside_retry_on_is_not_retried() {
    let (addr, seen) = scripted(&[500, 200], Duration::ZERO).await;
    // Only 503 is retriable: a 500 is returned as is.
    let svc = retry_layer(policy(3, "503", None)).layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    let (status, _) = send(svc, post("x")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_only_when_configured() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    for (retry_on, expected_tries) in [("connect-failure", 3), ("503", 1)] {
        let tries = Arc::new(Mutex::new(0));
        let counted = tries.clone();
        let client = client_to::<ReplayBody<Full<Bytes>>>(closed).map_request(move |r| {
            *counted.lock().unwrap() += 1;
            r
        });
        let svc = retry_layer(policy(2, retry_on, None)).layer(client);
        let err = svc.oneshot(post("x")).await.unwrap_err();
        assert!(err.to_string().contains("client error"), "{err}");
        assert_eq!(*tries.lock().unwrap(), expected_tries, "retryOn {retry_on}");
    }
}

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_buffer_limit_is_sent_once_whole_and_not_retried() {
    let (addr, seen) = scripted(&[503, 200], Duration::ZERO).await;
    let svc = retry_layer(policy(2, "5xx", None))
        .buffer_limit(1024)
        .layer(client_to::<ReplayBody<Chunks>>(addr));
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..16)
        .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i as u8; 256]))))
        .collect();
    let expected: Vec<u8> = (0..16).flat_map(|i| vec![b'a' + i as u8; 256]).collect();
    let req = Request::post("http://primary.test/")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let (status, _) = send(svc, req).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not retried, yet not failed"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].to_vec(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_are_retried_on_gateway_error_then_answered_504() {
    let (addr, seen) = scripted(&[200], Duration::from_secs(2)).await;
    let retry = retry_layer(policy(2, "gateway-error", Some(Duration::from_millis(100))));
    let svc = RouteTimeoutLayer::from_route()
        .layer(retry.layer(client_to::<ReplayBody<Full<Bytes>>>(addr)));
    let start = Instant::now();
    let resp = svc.oneshot(post("slow")).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "gave up before the server answered"
    );
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "upstream request timeout");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_not_retried_when_504_is_not_retriable() {
    let (addr, seen) = scripted(&[200], Duration::from_secs(2)).await;
    let retry = retry_layer(policy(2, "503", Some(Duration::from_millis(100))));
    let svc = RouteTimeoutLayer::from_route()
        .layer(retry.layer(client_to::<ReplayBody<Full<Bytes>>>(addr)));
    let resp = svc.oneshot(post("slow")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_spans_all_tries_and_answers_504() {
    let (addr, seen) = scripted(&[503], Duration::from_millis(150)).await;
    let retry = retry_layer(policy(10, "5xx", None));
    let svc = RouteTimeoutLayer::fixed(Duration::from_millis(400))
        .layer(retry.layer(client_to::<ReplayBody<Full<Bytes>>>(addr)));
    let start = Instant::now();
    let resp = svc.oneshot(post("x")).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(elapsed < Duration::from_millis(1400), "took {elapsed:?}");
    let tries = seen.lock().unwrap().len();
    assert!(
        (2..=4).contains(&tries),
        "{tries} tries within the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_response_is_not_touched_by_the_route_timeout() {
    let (addr, _) = scripted(&[201], Duration::ZERO).await;
    let svc =
        RouteTimeoutLayer::fixed(Duration::from_secs(5)).layer(client_to::<Full<Bytes>>(addr));
    let resp = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "try 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_default_policy_retries_grpc_unavailable() {
    let tries = Arc::new(Mutex::new(0u32));
    let counted = tries.clone();
    let addr = serve(move |_req: Request<Incoming>| {
        let counted = counted.clone();
        async move {
            let n = {
                let mut t = counted.lock().unwrap();
                *t += 1;
                *t
            };
            // A trailers-only gRPC error on the first try, success on the second.
            let code = if n == 1 { "14" } else { "0" };
            let mut resp = Response::new(Full::new(Bytes::new()));
            resp.headers_mut()
                .insert("grpc-status", code.parse().unwrap());
            resp
        }
    })
    .await;
    let svc =
        retry_layer(RetryPolicy::istio_default()).layer(client_to::<ReplayBody<Full<Bytes>>>(addr));
    let resp = svc.oneshot(post("rpc")).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "0");
    assert_eq!(*tries.lock().unwrap(), 2);
}

/// A request extension the inner service must see on every try.
#[derive(Clone, Debug, PartialEq)]
struct Marker(u32);

/// Records the `Marker` of each try, hands the extensions back when `hand_back` says so, and
/// forwards to `addr`.
fn marking_client(
    addr: std::net::SocketAddr,
    give_back: bool,
    markers: Arc<Mutex<Vec<Option<Marker>>>>,
) -> impl tower::Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<Incoming>,
    Error = tower::BoxError,
    Future: Send,
> + Clone {
    let client = client_to::<ReplayBody<Full<Bytes>>>(addr);
    tower::service_fn(move |mut req: Request<ReplayBody<Full<Bytes>>>| {
        markers
            .lock()
            .unwrap()
            .push(req.extensions().get::<Marker>().cloned());
        if give_back {
            mesh_mirror::hand_back(&mut req);
            assert!(
                req.extensions().is_empty(),
                "hand_back takes every extension"
            );
        }
        let call = client.clone().oneshot(req);
        async move { call.await.map_err(tower::BoxError::from) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_back_extensions_reach_every_retry() {
    let (addr, seen) = scripted(&[503, 503, 200], Duration::ZERO).await;
    let markers = Arc::new(Mutex::new(Vec::new()));
    let svc = retry_layer(policy(2, "5xx", None))
        .extensions_handed_back()
        .layer(marking_client(addr, true, markers.clone()));
    let mut req = post("replay me");
    req.extensions_mut().insert(Marker(7));
    let (status, body) = send(svc, req).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, Bytes::from_static(b"try 3"))
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(*markers.lock().unwrap(), vec![Some(Marker(7)); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_not_handed_back_mean_no_retry() {
    let (addr, seen) = scripted(&[503, 200], Duration::ZERO).await;
    let markers = Arc::new(Mutex::new(Vec::new()));
    let svc = retry_layer(policy(2, "5xx", None))
        .extensions_handed_back()
        .layer(marking_client(addr, false, markers.clone()));
    let mut req = post("once");
    req.extensions_mut().insert(Marker(1));
    let (status, _) = send(svc, req).await;
    // The kept copy has no extensions to retry with: the first answer stands.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_extensions_are_copied_for_every_retry() {
    let (addr, _) = scripted(&[503, 503, 200], Duration::ZERO).await;
    let markers = Arc::new(Mutex::new(Vec::new()));
    let svc =
        retry_layer(policy(2, "5xx", None)).layer(marking_client(addr, false, markers.clone()));
    let mut req = post("copied");
    req.extensions_mut().insert(Marker(3));
    let (status, _) = send(svc, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*markers.lock().unwrap(), vec![Some(Marker(3)); 3]);
}
