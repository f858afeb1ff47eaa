//! The ServiceEntry registry behind mesh-mirror's upstream: subsets by label over real
//! loopback servers, DNS refresh, and original-destination (resolution NONE) lookups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_gateway::{Bundle, ServiceEntryRegistry};
use mesh_mirror::{
    DestinationRules, EndpointAddress, ServiceRegistry, SharedDestinationRules, Upstream,
};
use mesh_routing::Destination;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A server answering its name.
async fn server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| async move {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(name))))
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned(),
            );
        }
    });
    addr
}

#[tokio::test]
async fn destination_rule_subsets_select_service_entry_endpoints_by_label() {
    let (v1, v2) = (server("v1").await, server("v2").await);
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.internal]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews.internal
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
",
        v1.port(),
        v2.port()
    );
    let bundle = Bundle::load(&yaml, "t.yaml", "default").unwrap();
    let registry: Arc<dyn ServiceRegistry> =
        Arc::new(ServiceEntryRegistry::new(&bundle.service_entries));
    let rules =
        SharedDestinationRules::new(DestinationRules::new(bundle.destination_rules.clone()));
    let upstream: Upstream<Full<Bytes>> = Upstream::new(rules, registry);
    let send = |subset: &str| {
        let mut req = http::Request::get("http://reviews.internal:9080/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut().insert(Destination {
            host: "reviews.internal".into(),
            subset: Some(subset.into()),
            port: Some(9080),
        });
        upstream.clone().oneshot(req)
    };
    for _ in 0..5 {
        let resp = send("v2").await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v2");
        let resp = send("v1").await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v1");
    }
    // A subset whose labels select nothing: Envoy's 503.
    let resp = send("v3").await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        mesh_mirror::NO_HEALTHY_UPSTREAM
    );
}

#[tokio::test]
async fn dns_endpoints_are_resolved_in_the_background() {
    let bundle = Bundle::load(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n  endpoints: [{address: localhost, weight: 2}]\n",
        "t.yaml",
        "default",
    )
    .unwrap();
    let registry = ServiceEntryRegistry::new(&bundle.service_entries);
    let before = registry.endpoints("api.example.com", Some(443)).unwrap();
    assert_eq!(
        before.endpoints[0].address,
        EndpointAddress::Dns {
            host: "localhost".into(),
            port: 443
        }
    );
    let refresh = registry.spawn_dns_refresh(std::time::Duration::from_millis(20));
    let mut after = registry.endpoints("api.example.com", Some(443)).unwrap();
    for _ in 0..100 {
        if after.version != before.version {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = registry.endpoints("api.example.com", Some(443)).unwrap();
    }
    refresh.abort();
    assert_ne!(
        after.version, before.version,
        "the refresh must publish a new snapshot"
    );
    assert!(after.endpoints.iter().all(|e| matches!(e.address, EndpointAddress::Socket(a) if a.ip().is_loopback() && a.port() == 443)));
    assert_eq!(after.endpoints[0].weight, 2);
}

#[test]
fn resolution_none_passes_the_requested_host_through_and_wildcards_match() {
    let bundle = Bundle::load(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: wild}\nspec:\n  hosts: ['*.partner.example']\n  ports: [{number: 80, name: http-web, protocol: HTTP}, {number: 50051, name: grpc, protocol: GRPC}]\n",
        "t.yaml",
        "default",
    )
    .unwrap();
    let registry = ServiceEntryRegistry::new(&bundle.service_entries);
    let got = registry.endpoints("Api.Partner.Example", None).unwrap();
    assert_eq!(
        got.endpoints[0].address,
        EndpointAddress::Dns {
            host: "api.partner.example".into(),
            port: 80
        }
    );
    assert!(
        registry
            .endpoints("api.partner.example", Some(50051))
            .unwrap()
            .protocol
            .is_http2()
    );
    assert!(
        registry
            .endpoints("api.partner.example", Some(8080))
            .is_none(),
        "unknown port"
    );
    assert!(
        registry.endpoints("partner.example", None).is_none(),
        "the bare domain is not covered by *."
    );
}

#[test]
fn repeated_lookups_share_one_snapshot_until_the_version_moves() {
    let bundle = Bundle::load(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web}\nspec:\n  hosts: [web.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}, {address: 127.0.0.2}]\n",
        "t.yaml",
        "default",
    )
    .unwrap();
    let registry = ServiceEntryRegistry::new(&bundle.service_entries);
    let first = registry.endpoints("web.internal", Some(80)).unwrap();
    let second = registry.endpoints("web.internal", Some(80)).unwrap();
    // Called once per request: the second lookup must not rebuild the endpoints.
    assert!(std::sync::Arc::ptr_eq(&first.endpoints, &second.endpoints));
    assert_eq!(first.version, second.version);
    // Other ports and unknown hosts are answered on their own.
    assert!(registry.endpoints("web.internal", Some(81)).is_none());
    assert!(registry.endpoints("other.internal", Some(80)).is_none());
    assert_eq!(
        registry
            .endpoints("web.internal", None)
            .unwrap()
            .endpoints
            .len(),
        2
    );
}
