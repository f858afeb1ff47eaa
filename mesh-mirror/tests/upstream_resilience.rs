//! The upstream over real loopback servers: connection-pool overflow, outlier ejection and
//! return, locality failover driven by ejection, HTTP/2 to the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::Full;
use mesh_mirror::{
    DestinationRule, DestinationRules, Locality, PortProtocol, ProxyLocation, RngSource,
    SharedDestinationRules, StaticRegistry, Upstream,
};

use support::backend::{Backend, HOST, PORT, send, to_reviews};
use support::eventually;

fn upstream(dr: &str, registry: &StaticRegistry) -> Upstream<Full<Bytes>> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n{dr}"
    );
    let rules = DestinationRules::new([DestinationRule::from_yaml(&yaml).unwrap()]);
    Upstream::new(
        SharedDestinationRules::new(rules),
        Arc::new(registry.clone()),
    )
    .with_rng(&RngSource::seeded(11))
}

#[tokio::test]
async fn requests_beyond_connections_and_pending_get_503_at_once() {
    let b = Backend::gated("slow").await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![b.endpoint()]);
    let up = upstream(
        "  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n",
        &registry,
    );
    let first = tokio::spawn({
        let up = up.clone();
        async move { send(&up, to_reviews(None, &[])).await }
    });
    eventually("first request reached the backend", || b.hits() == 1).await;
    let second = tokio::spawn({
        let up = up.clone();
        async move { send(&up, to_reviews(None, &[])).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !second.is_finished(),
        "the second request waits in the pending queue"
    );
    // The third finds the connection busy and the queue full: refused while the others wait.
    let (status, body, overloaded) = send(&up, to_reviews(None, &[])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        overloaded && body.ends_with("reset reason: overflow"),
        "{body}"
    );
    assert_eq!(
        b.hits(),
        1,
        "the second request is queued, not sent on a new connection"
    );
    b.release(2);
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    assert_eq!(second.await.unwrap().0, StatusCode::OK);
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn http2_max_requests_bounds_requests_in_flight() {
    let b = Backend::gated("h2").await;
    let registry = StaticRegistry::new();
    registry.set_with_protocol(HOST, PORT, PortProtocol::Http2, vec![b.endpoint()]);
    let up = upstream(
        "  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 2}}}\n",
        &registry,
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let up = up.clone();
        held.push(tokio::spawn(async move {
            send(&up, to_reviews(None, &[])).await
        }));
    }
    eventually("two requests in flight", || b.hits() == 2).await;
    let (status, _, overloaded) = send(&up, to_reviews(None, &[])).await;
    assert_eq!(
        (status, overloaded),
        (StatusCode::SERVICE_UNAVAILABLE, true)
    );
    b.release(2);
    for h in held {
        assert_eq!(h.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(
        b.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "multiplexed on one connection"
    );
    assert!(
        b.versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| *v == Version::HTTP_2)
    );
}

#[tokio::test]
async fn failing_endpoint_is_ejected_and_comes_back() {
    let good = Backend::start("good").await;
    let bad = Backend::start("bad").await;
    bad.set_status(StatusCode::INTERNAL_SERVER_ERROR);
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![good.endpoint(), bad.endpoint()]);
    let up = upstream(
        "  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 300ms, maxEjectionPercent: 100}\n",
        &registry,
    );
    // Round robin alternates until the third consecutive 500 ejects `bad`.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(send(&up, to_reviews(None, &[])).await.0.as_u16());
    }
    let ejected_at = std::time::Instant::now();
    assert_eq!(statuses, [200, 500, 200, 500, 200, 500]);
    for _ in 0..20 {
        let (status, body, _) = send(&up, to_reviews(None, &[])).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "good"),
            "bad is ejected"
        );
    }
    assert_eq!(bad.hits(), 3);
    // An endpoint update (same endpoints, new version) does not forgive the ejection.
    registry.set(HOST, PORT, vec![bad.endpoint(), good.endpoint()]);
    for _ in 0..5 {
        assert_eq!(send(&up, to_reviews(None, &[])).await.1, "good");
    }
    // It recovers; after baseEjectionTime it is back in the rotation.
    bad.set_status(StatusCode::OK);
    let start = std::time::Instant::now();
    let mut back = false;
    while !back {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "never came back"
        );
        back = send(&up, to_reviews(None, &[])).await.1 == "bad";
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Lower bound only (the ejection happened just before `ejected_at`), with slack for load.
    assert!(
        ejected_at.elapsed() >= std::time::Duration::from_millis(200),
        "back before its time"
    );
}

#[tokio::test]
async fn locality_failover_follows_outlier_ejection() {
    let local = Backend::start("local").await;
    let same_region = Backend::start("same-region").await;
    let remote = Backend::start("remote").await;
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![
            local.endpoint().locality("us-east/zone-a/rack1"),
            same_region.endpoint().locality("us-east/zone-b/rack1"),
            remote.endpoint().locality("eu-west/zone-a/rack1"),
        ],
    );
    let up = upstream(
        "  trafficPolicy:\n    outlierDetection: {consecutiveGatewayErrors: 2, baseEjectionTime: 1m, maxEjectionPercent: 100}\n",
        &registry,
    )
    .with_proxy_location(ProxyLocation { locality: Locality::parse("us-east/zone-a/rack1"), ..Default::default() });
    for _ in 0..10 {
        assert_eq!(send(&up, to_reviews(None, &[])).await.1, "local");
    }
    local.set_status(StatusCode::SERVICE_UNAVAILABLE);
    for _ in 0..2 {
        assert_eq!(
            send(&up, to_reviews(None, &[])).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    for _ in 0..10 {
        assert_eq!(
            send(&up, to_reviews(None, &[])).await.1,
            "same-region",
            "zone failover"
        );
    }
    same_region.set_status(StatusCode::BAD_GATEWAY);
    for _ in 0..2 {
        send(&up, to_reviews(None, &[])).await;
    }
    for _ in 0..10 {
        assert_eq!(
            send(&up, to_reviews(None, &[])).await.1,
            "remote",
            "region failover"
        );
    }
    assert_eq!(local.hits(), 12);
}

#[tokio::test]
async fn h2_upgrade_policy_and_grpc_ports_speak_http2() {
    let b = Backend::start("h").await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![b.endpoint()]);
    let plain = upstream("", &registry);
    send(&plain, to_reviews(None, &[])).await;
    let upgrade = upstream(
        "  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}\n",
        &registry,
    );
    send(&upgrade, to_reviews(None, &[])).await;
    registry.set_with_protocol(HOST, PORT, PortProtocol::Grpc, vec![b.endpoint()]);
    send(&plain, to_reviews(None, &[])).await;
    let versions = b.versions.lock().unwrap().clone();
    assert_eq!(
        versions,
        [Version::HTTP_11, Version::HTTP_2, Version::HTTP_2]
    );
}

#[tokio::test]
async fn connection_failure_counts_toward_ejection() {
    let good = Backend::start("good").await;
    // A port nothing listens on: bind, note the address, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let registry = StaticRegistry::new();
    registry.set(
        HOST,
        PORT,
        vec![good.endpoint(), mesh_mirror::Endpoint::new(dead)],
    );
    let up = upstream(
        "  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutiveGatewayErrors: 1, baseEjectionTime: 1m, maxEjectionPercent: 100}\n",
        &registry,
    );
    let mut errors = 0;
    for _ in 0..10 {
        use tower::ServiceExt as _;
        match up.clone().oneshot(to_reviews(None, &[])).await {
            Ok(resp) => assert_eq!(resp.status(), StatusCode::OK),
            Err(e) => {
                assert!(
                    matches!(e, mesh_mirror::UpstreamError::Connect { .. }),
                    "{e}"
                );
                assert_eq!(e.response_flag(), "UF");
                errors += 1;
            }
        }
    }
    assert_eq!(
        errors, 1,
        "one connect failure, then the dead endpoint is ejected"
    );
}

#[tokio::test]
async fn connections_are_reused_and_closed_after_max_requests_per_connection() {
    let b = Backend::start("b").await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![b.endpoint()]);
    // Keep-alive: ten sequential requests on one connection.
    let up = upstream(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        &registry,
    );
    for _ in 0..10 {
        assert_eq!(send(&up, to_reviews(None, &[])).await.0, StatusCode::OK);
    }
    assert_eq!(b.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    // maxRequestsPerConnection: 3 -> ten requests need four connections.
    let c = Backend::start("c").await;
    registry.set(HOST, PORT, vec![c.endpoint()]);
    let up = upstream(
        "  trafficPolicy:\n    connectionPool: {http: {maxRequestsPerConnection: 3}}\n",
        &registry,
    );
    for _ in 0..10 {
        assert_eq!(send(&up, to_reviews(None, &[])).await.0, StatusCode::OK);
    }
    assert_eq!(c.conns.load(std::sync::atomic::Ordering::SeqCst), 4);
}

/// A server that reads each request whole, counts it, then closes the connection without an
/// answer: the upstream may have acted on it.
async fn reads_then_resets() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                // Headers, then the 5-byte body.
                loop {
                    let Ok(n) = tcp.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        if buf.len() >= end + 4 + 5 {
                            break;
                        }
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(tcp);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_written_request_is_not_replayed_by_istios_default_policy_but_is_with_reset() {
    use mesh_mirror::{ReplayBody, RetryLayer};
    use mesh_routing::{Destination, RetryCondition, RetryPolicy};
    use tower::{Layer as _, ServiceExt as _};
    let (addr, seen) = reads_then_resets().await;
    let registry = StaticRegistry::new();
    registry.set(HOST, PORT, vec![mesh_mirror::Endpoint::new(addr)]);
    let upstream: Upstream<ReplayBody<Full<Bytes>>> = Upstream::new(
        SharedDestinationRules::new(DestinationRules::new(Vec::new())),
        Arc::new(registry),
    );
    let post = || {
        let mut req = http::Request::post("http://reviews/orders")
            .header("content-length", "5")
            .body(Full::new(Bytes::from_static(b"order")))
            .unwrap();
        req.extensions_mut().insert(Destination {
            host: HOST.into(),
            subset: None,
            port: Some(PORT),
        });
        req
    };
    let layer = |p: RetryPolicy| RetryLayer::new(p).backoff(std::time::Duration::from_millis(1));
    let err = layer(RetryPolicy::istio_default())
        .layer(upstream.clone())
        .oneshot(post())
        .await
        .unwrap_err();
    let err = err.downcast::<mesh_mirror::UpstreamError>().unwrap();
    assert!(
        matches!(*err, mesh_mirror::UpstreamError::Reset(_)),
        "{err}"
    );
    assert_eq!(err.response_flag(), "UC");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the POST was replayed"
    );

    // With `reset` in retryOn the same failure is retried (twice), and the last one says
    // the retries ran out (Envoy's `UC,URX`).
    let mut reset = RetryPolicy::istio_default();
    reset.retry_on.conditions.push(RetryCondition::Reset);
    let err = layer(reset)
        .layer(upstream)
        .oneshot(post())
        .await
        .unwrap_err();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4);
    let err = err.downcast::<mesh_mirror::UpstreamError>().unwrap();
    assert!(
        matches!(*err, mesh_mirror::UpstreamError::RetriesExhausted(_)),
        "{err}"
    );
    assert_eq!(err.response_flag(), "UC,URX");
}
