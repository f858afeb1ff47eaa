//! Per-route weighted dispatch behind the router: shares follow weights, destination header
//! operations apply, and requests without a route pass through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use mesh_mirror::{RngSource, RouteDispatchLayer};
use mesh_routing::{
    Destination, RouteLayer, RouteTable, SharedRouteTable, TableOptions, UnknownHost,
    load_virtual_services,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
      headers: {request: {set: {x-version: v1}}, response: {add: {x-served-by: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 10
      headers: {request: {set: {x-version: v2}}, response: {add: {x-served-by: v2}}}
    - destination: {host: reviews, subset: v3}
      weight: 0
";

fn stack(
    seed: u64,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<mesh_routing::RouteBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let table = SharedRouteTable::new(RouteTable::build(
        &load_virtual_services(VS, "vs", "default").unwrap(),
        &TableOptions::default(),
    ));
    ServiceBuilder::new()
        .layer(RouteLayer::new(table).unknown_host(UnknownHost::Forward))
        .layer(RouteDispatchLayer::with_rng(RngSource::seeded(seed)))
        .service(service_fn(|req: http::Request<()>| async move {
            let subset = req
                .extensions()
                .get::<Destination>()
                .map(|d| d.subset.clone().unwrap_or_default())
                .unwrap_or_else(|| "none".into());
            let header = req
                .headers()
                .get("x-version")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            assert!(
                header.is_empty() || header == subset,
                "request headers follow the chosen destination"
            );
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(subset))))
        }))
}

#[tokio::test]
async fn shares_follow_weights_and_weight_zero_is_never_chosen() {
    let svc = stack(7);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..20_000 {
        let resp = svc
            .clone()
            .oneshot(http::Request::get("http://reviews/").body(()).unwrap())
            .await
            .unwrap();
        let served = resp.headers()["x-served-by"].to_str().unwrap().to_string();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(
            body,
            served.as_bytes(),
            "response headers follow the chosen destination"
        );
        *counts.entry(served).or_insert(0u32) += 1;
    }
    // 18,000 expected for v1; binomial sd ~42, so +-300 is seven sigma.
    assert!((17_700..=18_300).contains(&counts["v1"]), "{counts:?}");
    assert!(!counts.contains_key("v3"), "{counts:?}");
}

#[tokio::test]
async fn requests_without_a_route_pass_through() {
    let resp = stack(1)
        .oneshot(http::Request::get("http://ratings/").body(()).unwrap())
        .await
        .unwrap();
    assert!(resp.headers().get("x-served-by").is_none());
    assert_eq!(
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
        "none"
    );
}
