//! Gateway HTTP servers end to end: mesh-proxy in-process with a Gateway, VirtualServices,
//! ServiceEntries and DestinationRules pointing at loopback backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use support::{TempDir, backend, eventually, get, start};

/// A Gateway on `port` for `*.example.com` (plus `secure.example.com` redirected to https)
/// and `web.internal` with subsets v1/v2 at `v1`/`v2`; `routes` is the VirtualService's
/// `http:` list.
fn config(port: u16, v1: SocketAddr, v2: SocketAddr, routes: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ['*.example.com']
  - port: {{number: {port}, name: http-secure, protocol: HTTP}}
    hosts: [secure.example.com]
    tls: {{httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web.example.com]
  gateways: [public]
  http:
{routes}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {p1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {p2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web.internal
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
",
        p1 = v1.port(),
        p2 = v2.port()
    )
}

const SPLIT: &str = "  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: web.internal, subset: v2}}]
  - route:
    - {destination: {host: web.internal, subset: v1}, weight: 50}
    - {destination: {host: web.internal, subset: v2}, weight: 50}";

const ONLY_V1: &str = "  - route: [{destination: {host: web.internal, subset: v1}}]";
const ONLY_V2: &str = "  - route: [{destination: {host: web.internal, subset: v2}}]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_by_host_and_path_and_splits_by_weight() {
    let (v1, _) = backend("v1").await;
    let (v2, v2_seen) = backend("v2").await;
    let dir = TempDir::new("gw-routing");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, v1, v2, SPLIT)).await;

    let (status, _, body) = get(port, "web.example.com", "/v2/items").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v2 /v2/items"));
    // The upstream sees the original Host.
    assert_eq!(v2_seen.lock().unwrap()[0].1, "web.example.com");

    let mut counts = (0, 0);
    for _ in 0..60 {
        let (status, _, body) = get(port, "web.example.com", "/").await;
        assert_eq!(status, StatusCode::OK);
        match body.as_str() {
            "v1 /" => counts.0 += 1,
            "v2 /" => counts.1 += 1,
            other => panic!("unexpected body {other:?}"),
        }
    }
    // 50/50 random over 60 requests: both sides get traffic (P(miss) ~ 2^-59).
    assert!(counts.0 > 0 && counts.1 > 0, "split {counts:?}");

    proxy.shutdown().await;
}

#[tokio::test]
async fn unknown_host_is_404_and_https_redirect_is_301() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let dir = TempDir::new("gw-404");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, v1, v2, ONLY_V1)).await;

    let (status, _, _) = get(port, "nobody.other.org", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A host the server accepts but no VirtualService serves: also 404.
    let (status, _, _) = get(port, "other.example.com", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, location, _) = get(port, "secure.example.com", "/login?next=/a").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location, "https://secure.example.com/login?next=/a");

    // /ready counts the gateway listener.
    let admin = proxy.admin_addr().port();
    let (status, _, _) = get(admin, "admin", "/ready").await;
    assert_eq!(status, StatusCode::OK);
    proxy.shutdown().await;
}

/// `port` matches compare against the Gateway port the request arrived on.
#[tokio::test]
async fn port_match_selects_by_the_listener_port() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let dir = TempDir::new("gw-port-match");
    let second = std::sync::Mutex::new(0);
    let (proxy, port) = start(
        &dir,
        |_| vec![],
        |p| {
            let q = support::free_port();
            *second.lock().unwrap() = q;
            let routes = format!(
                "  - match: [{{port: {q}}}]\n    route: [{{destination: {{host: web.internal, subset: v2}}}}]\n{ONLY_V1}"
            );
            let extra = format!(
                "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: internal}}\nspec:\n  servers:\n  - port: {{number: {q}, name: http, protocol: HTTP}}\n    hosts: ['*.example.com']\n"
            );
            config(p, v1, v2, &routes).replace("gateways: [public]", "gateways: [public, internal]")
                + &extra
        },
    )
    .await;
    let q = *second.lock().unwrap();
    let (status, _, body) = get(port, "web.example.com", "/a").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /a"));
    let (status, _, body) = get(q, "web.example.com", "/a").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v2 /a"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_routing_without_failing_in_flight_requests() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let dir = TempDir::new("gw-reload");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, v1, v2, ONLY_V1)).await;
    assert_eq!(get(port, "web.example.com", "/").await.2, "v1 /");

    // A slow request in flight across the swap, and steady traffic around it.
    let slow = tokio::spawn(async move { get(port, "web.example.com", "/slow").await });
    let steady = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(get(port, "web.example.com", "/").await.0);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    dir.write("config.yaml", &config(port, v1, v2, ONLY_V2));
    proxy.request_reload();
    eventually("routing to v2", || async {
        get(port, "web.example.com", "/").await.2 == "v2 /"
    })
    .await;

    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /slow"));
    let statuses = steady.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(proxy.proxy().current().generation, 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_then_refuses() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let dir = TempDir::new("gw-shutdown");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, v1, v2, ONLY_V1)).await;

    let slow = tokio::spawn(async move { get(port, "web.example.com", "/slow").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.shutdown().await;
    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /slow"));
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the gateway port still accepts after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_reach_the_shadow_and_route_timeout_is_504() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let (shadow, shadow_seen) = backend("shadow").await;
    let dir = TempDir::new("gw-mirror");
    let routes = "  - match: [{uri: {prefix: /slow}}]
    timeout: 150ms
    route: [{destination: {host: web.internal, subset: v1}}]
  - mirror: {host: shadow.internal}
    route: [{destination: {host: web.internal, subset: v1}}]";
    let shadow_entry = format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shadow}}
spec:
  hosts: [shadow.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        shadow.port()
    );
    let (proxy, port) = start(
        &dir,
        |_| vec![],
        |p| config(p, v1, v2, routes) + &shadow_entry,
    )
    .await;

    for _ in 0..5 {
        let (status, _, body) = get(port, "web.example.com", "/m").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /m"));
    }
    eventually("5 mirrored copies", || async {
        shadow_seen.lock().unwrap().len() == 5
    })
    .await;

    let (status, _, _) = get(port, "web.example.com", "/slow").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_503_flagged_uf_and_urx_after_istios_retries() {
    let (v1, _) = backend("v1").await;
    let closed = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let dir = TempDir::new("gw-uf");
    let routes = "  - match: [{uri: {prefix: /once}}]\n    retries: {attempts: 0}\n    route: [{destination: {host: web.internal, subset: v2}}]\n".to_string() + ONLY_V2;
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, v1, closed, &routes)).await;

    let (status, _, body) = get(port, "web.example.com", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with("upstream connect error"), "{body}");
    // Without retries nothing ran out: `UF` alone.
    let (status, _, _) = get(port, "web.example.com", "/once").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let stats = get(proxy.admin_addr().port(), "admin", "/stats/prometheus")
        .await
        .2;
    let line = |flags: &str| {
        let flags = format!("response_flags=\"{flags}\"");
        (stats.lines())
            .find(|l| l.starts_with("istio_requests_total{") && l.contains(&flags))
            .unwrap_or_else(|| panic!("no {flags} in {stats}"))
    };
    // Istio's default policy retried the connect failure twice, then gave up: Envoy's flags.
    let retried = line("UF,URX");
    assert!(retried.contains("response_code=\"503\""), "{retried}");
    assert!(
        retried.contains("destination_service=\"web.internal\""),
        "{retried}"
    );
    assert!(line("UF").ends_with(" 1"), "{}", line("UF"));
    proxy.shutdown().await;
}
