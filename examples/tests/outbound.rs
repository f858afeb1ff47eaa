//! The sidecar outbound listener end to end: routing by Host with `mesh` VirtualServices,
//! ServiceEntry hosts without a VirtualService, REGISTRY_ONLY and ALLOW_ANY passthrough.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use support::{TempDir, backend, get, start};

fn config(v1: SocketAddr, v2: SocketAddr, mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default}}
spec:
  outboundTrafficPolicy: {{mode: {mode}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v2}}}}]
  - route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {p1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {p2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings}}
spec:
  hosts: [ratings.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 9090, name: http-admin, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {p2}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
",
        p1 = v1.port(),
        p2 = v2.port()
    )
}

fn outbound_flags(port: u16) -> Vec<String> {
    vec!["--outbound".into(), format!("127.0.0.1:{port}")]
}

#[tokio::test]
async fn registry_only_routes_known_hosts_and_refuses_others_with_502() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let (outside, outside_seen) = backend("outside").await;
    let dir = TempDir::new("out-registry-only");
    let (proxy, port) = start(&dir, outbound_flags, |_| config(v1, v2, "REGISTRY_ONLY")).await;

    // A `mesh` VirtualService routes by Host (port 80 in the Host, as a client sends it).
    let (status, _, body) = get(port, "reviews.default.svc.cluster.local", "/r").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /r"));
    // A ServiceEntry host without a VirtualService goes to its endpoints (no port in the
    // Host: port 80 of a service with several).
    let (status, _, body) = get(port, "ratings.example.com", "/x").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v2 /x"));
    // An unregistered host: 502, and it never reaches anything.
    let (status, _, _) = get(port, &format!("127.0.0.1:{}", outside.port()), "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let (status, _, _) = get(port, "evil.example.org", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(outside_seen.lock().unwrap().is_empty());

    let stats = get(proxy.admin_addr().port(), "admin", "/stats/prometheus")
        .await
        .2;
    assert!(
        stats.contains("mesh_policy_denials_total{policy=\"registry_only\"} 2"),
        "{stats}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn allow_any_passes_unknown_hosts_through_to_the_host_given() {
    let (v1, _) = backend("v1").await;
    let (v2, _) = backend("v2").await;
    let (outside, outside_seen) = backend("outside").await;
    let dir = TempDir::new("out-allow-any");
    let (proxy, port) = start(&dir, outbound_flags, |_| config(v1, v2, "ALLOW_ANY")).await;

    let host = format!("127.0.0.1:{}", outside.port());
    let (status, _, body) = get(port, &host, "/anything?q=1").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "outside /anything")
    );
    assert_eq!(outside_seen.lock().unwrap()[0].1, host);
    // Header routing still applies to mesh hosts.
    let (status, _, body) = get(port, "reviews.default.svc.cluster.local", "/r").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1 /r"));
    proxy.shutdown().await;
}
