//! The routing layer in front of a plain `service_fn`: what it answers itself, what it changes
//! on the way in and out, and what it hands to inner layers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mesh_routing::{
    MatchedRoute, RouteLayer, RouteTable, SharedRouteTable, TableOptions, UnknownHost,
    load_virtual_services,
};
use tower::{Layer, ServiceExt, service_fn};

fn layer(http: &str) -> RouteLayer {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [svc]\n  http:\n{http}"
    );
    let vss = load_virtual_services(&yaml, "t.yaml", "default").unwrap();
    RouteLayer::new(SharedRouteTable::new(RouteTable::build(
        &vss,
        &TableOptions::default(),
    )))
}

/// What the upstream saw, echoed back in response headers.
async fn echo(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::builder()
        .header("x-seen-uri", req.uri().to_string())
        .header(
            "x-seen-host",
            req.headers()
                .get("host")
                .cloned()
                .unwrap_or_else(|| "-".parse().unwrap()),
        )
        .header("x-upstream", "set-by-upstream");
    for (k, v) in req.headers() {
        if k.as_str().starts_with("x-req-") {
            resp = resp.header(format!("x-seen-{}", k.as_str()), v);
        }
    }
    let route = req
        .extensions()
        .get::<MatchedRoute>()
        .map(|m| m.route().name().unwrap_or("unnamed").to_string());
    resp = resp.header("x-seen-route", route.unwrap_or_else(|| "none".into()));
    Ok(resp
        .body(Full::new(Bytes::from_static(b"upstream")))
        .unwrap())
}

async fn send(
    layer: &RouteLayer,
    req: http::request::Builder,
) -> (StatusCode, http::HeaderMap, String) {
    let svc = layer.layer(service_fn(echo));
    let resp = svc
        .oneshot(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(path: &str) -> http::request::Builder {
    Request::get(path).header("host", "svc")
}

#[tokio::test]
async fn forwarded_requests_carry_the_matched_route() {
    let l = layer("  - name: main\n    route: [{destination: {host: svc}}]\n");
    let (status, h, body) = send(&l, get("/")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "upstream");
    assert_eq!(h["x-seen-route"], "main");
}

#[tokio::test]
async fn unmatched_route_is_404_and_unknown_host_is_configurable() {
    let l = layer("  - match: [{uri: {exact: /only}}]\n    route: [{destination: {host: svc}}]\n");
    assert_eq!(send(&l, get("/other")).await.0, 404);
    assert_eq!(
        send(&l, Request::get("/").header("host", "nope")).await.0,
        404
    );
    let forward = l.unknown_host(UnknownHost::Forward);
    let (status, h, _) = send(&forward, Request::get("/").header("host", "nope")).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-route"], "none");
}

#[tokio::test]
async fn prefix_rewrite_replaces_the_matched_prefix_and_keeps_the_query() {
    let l = layer(
        "  - match: [{uri: {prefix: /v1/}}, {uri: {exact: /legacy}}]\n    rewrite: {uri: /api/v2/}\n    route: [{destination: {host: svc}}]\n",
    );
    assert_eq!(
        send(&l, get("/v1/items?page=2")).await.1["x-seen-uri"],
        "/api/v2/items?page=2"
    );
    // The second match block is exact: the whole path is replaced.
    assert_eq!(send(&l, get("/legacy")).await.1["x-seen-uri"], "/api/v2/");
}

#[tokio::test]
async fn regex_rewrite_and_authority_rewrite() {
    let l = layer(
        "  - rewrite:\n      uriRegexRewrite: {match: '^/svc/([^/]+)/(.*)$', rewrite: '/\\2?from=\\1'}\n      authority: backend.internal\n    route: [{destination: {host: svc}}]\n",
    );
    let (_, h, _) = send(&l, get("/svc/users/list")).await;
    assert_eq!(h["x-seen-uri"], "/list?from=users");
    assert_eq!(h["x-seen-host"], "backend.internal");
}

#[tokio::test]
async fn request_and_response_header_operations() {
    let l = layer(
        "  - headers:\n      request: {set: {x-req-a: set}, add: {x-req-b: added}, remove: [x-req-c]}\n      response: {set: {x-upstream: overridden}, add: {x-resp: r}, remove: [x-seen-route]}\n    route: [{destination: {host: svc}}]\n",
    );
    let (_, h, _) = send(
        &l,
        get("/")
            .header("x-req-a", "orig")
            .header("x-req-b", "orig")
            .header("x-req-c", "gone"),
    )
    .await;
    assert_eq!(h["x-seen-x-req-a"], "set");
    assert_eq!(h.get_all("x-seen-x-req-b").iter().count(), 2);
    assert!(h.get("x-seen-x-req-c").is_none());
    assert_eq!(h["x-upstream"], "overridden");
    assert_eq!(h["x-resp"], "r");
    assert!(h.get("x-seen-route").is_none());
}

#[tokio::test]
async fn host_header_set_is_an_authority_rewrite() {
    let l = layer(
        "  - headers: {request: {set: {host: other.example}}}\n    route: [{destination: {host: svc}}]\n",
    );
    assert_eq!(send(&l, get("/")).await.1["x-seen-host"], "other.example");
}

#[tokio::test]
async fn redirects_build_location_from_the_request() {
    let l = layer(
        "  - match: [{uri: {prefix: /old}}]\n    redirect: {uri: /new}\n  - match: [{uri: {prefix: /secure}}]\n    redirect: {scheme: https, redirectCode: 308}\n  - match: [{uri: {prefix: /moved}}]\n    redirect: {authority: other.example, port: 8443}\n  - match: [{uri: {prefix: /q}}]\n    redirect: {uri: '/r?x=1'}\n",
    );
    let (s, h, _) = send(&l, get("/old/page?a=1")).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (StatusCode::MOVED_PERMANENTLY, "http://svc/new?a=1")
    );
    let (s, h, _) = send(&l, Request::get("/secure").header("host", "svc:80")).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (StatusCode::PERMANENT_REDIRECT, "https://svc/secure")
    );
    let (_, h, _) = send(&l, get("/moved")).await;
    assert_eq!(h["location"], "http://other.example:8443/moved");
    let (_, h, _) = send(&l, get("/q?dropped=1")).await;
    assert_eq!(h["location"], "http://svc/r?x=1");
}

#[tokio::test]
async fn direct_response_answers_locally() {
    let l = layer(
        "  - directResponse: {status: 418, body: {string: teapot}}\n    headers: {response: {set: {x-direct: '1'}}}\n",
    );
    let (s, h, body) = send(&l, get("/")).await;
    assert_eq!((s, body.as_str()), (StatusCode::IM_A_TEAPOT, "teapot"));
    assert_eq!(h["x-direct"], "1");
    let l = layer("  - directResponse: {status: 200, body: {bytes: aGVsbG8=}}\n");
    assert_eq!(send(&l, get("/")).await.2, "hello");
}

#[tokio::test]
async fn fault_abort_at_100_percent_never_reaches_upstream_and_0_percent_never_aborts() {
    let l = layer(
        "  - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n    route: [{destination: {host: svc}}]\n",
    );
    let (s, _, body) = send(&l, get("/")).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "fault filter abort")
    );
    // Missing percentage means 0%.
    let l =
        layer("  - fault: {abort: {httpStatus: 503}}\n    route: [{destination: {host: svc}}]\n");
    for _ in 0..50 {
        assert_eq!(send(&l, get("/")).await.0, 200);
    }
}

#[tokio::test]
async fn fault_abort_percentage_is_sampled() {
    let l = layer(
        "  - fault: {abort: {httpStatus: 500, percentage: {value: 30}}}\n    route: [{destination: {host: svc}}]\n",
    );
    let mut aborted = 0;
    for _ in 0..2000 {
        if send(&l, get("/")).await.0 == 500 {
            aborted += 1;
        }
    }
    // 30% of 2000 = 600; binomial sd ~20, so +-120 is six sigma.
    assert!((480..=720).contains(&aborted), "aborted {aborted} of 2000");
}

#[tokio::test]
async fn grpc_abort_answers_200_with_grpc_status() {
    let l = layer(
        "  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: svc}}]\n",
    );
    let (s, h, _) = send(&l, get("/")).await;
    assert_eq!(s, 200);
    assert_eq!(h["grpc-status"], "14");
}

#[tokio::test(start_paused = true)]
async fn fault_delay_holds_the_request_before_forwarding() {
    let l = layer(
        "  - fault: {delay: {fixedDelay: 5s, percentage: {value: 100}}}\n    route: [{destination: {host: svc}}]\n",
    );
    let start = tokio::time::Instant::now();
    let (s, _, _) = send(&l, get("/")).await;
    assert_eq!(s, 200);
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_and_actual_requests_decorated() {
    let l = layer(
        "  - corsPolicy:\n      allowOrigins: [{exact: 'https://app.example'}, {regex: 'https://.*\\.trusted\\.example'}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-token]\n      exposeHeaders: [x-total]\n      maxAge: 24h\n      allowCredentials: true\n    route: [{destination: {host: svc}}]\n",
    );
    let preflight = Request::options("/")
        .header("host", "svc")
        .header("origin", "https://a.trusted.example")
        .header("access-control-request-method", "POST");
    let (s, h, body) = send(&l, preflight).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        h["access-control-allow-origin"],
        "https://a.trusted.example"
    );
    assert_eq!(h["access-control-allow-methods"], "GET,POST");
    assert_eq!(h["access-control-max-age"], "86400");
    let (_, h, body) = send(&l, get("/").header("origin", "https://app.example")).await;
    assert_eq!(body, "upstream");
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-expose-headers"], "x-total");
    // A disallowed origin is forwarded untouched.
    let (_, h, body) = send(&l, get("/").header("origin", "https://evil.example")).await;
    assert_eq!(body, "upstream");
    assert!(h.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn swapping_the_table_changes_routing_for_new_requests() {
    let mk = |name: &str| {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [svc]\n  http:\n  - name: {name}\n    route: [{{destination: {{host: svc}}}}]\n"
        );
        RouteTable::build(
            &load_virtual_services(&yaml, "t", "default").unwrap(),
            &TableOptions::default(),
        )
    };
    let shared = SharedRouteTable::new(mk("before"));
    let l = RouteLayer::new(shared.clone());
    assert_eq!(send(&l, get("/")).await.1["x-seen-route"], "before");
    shared.store(mk("after"));
    assert_eq!(send(&l, get("/")).await.1["x-seen-route"], "after");
}

#[tokio::test]
async fn listener_port_stands_in_for_a_missing_extension() {
    let http = "  - name: on8080\n    match: [{port: 8080}]\n    route: [{destination: {host: svc}}]\n  - name: other\n    route: [{destination: {host: svc}}]\n";
    let route_of = |h: &http::HeaderMap| h["x-seen-route"].to_str().unwrap().to_string();
    let (_, h, _) = send(&layer(http).listener_port(8080), get("/")).await;
    assert_eq!(route_of(&h), "on8080");
    let (_, h, _) = send(&layer(http).listener_port(9090), get("/")).await;
    assert_eq!(route_of(&h), "other");
    // A ListenerPort extension set by the server wins over the declared port.
    let mut req = get("/").body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(mesh_routing::ListenerPort(9090));
    let svc = layer(http).listener_port(8080).layer(service_fn(echo));
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(route_of(resp.headers()), "other");
}
