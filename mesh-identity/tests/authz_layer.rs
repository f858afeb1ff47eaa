//! The authorization layer over HTTP requests, composed with the peer identity layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mesh_identity::authz::{
    AuthorizationLayer, AuthorizationPolicy, Authorizer, ConnectionInfo, DENIED_BODY,
};
use mesh_identity::{PeerIdentity, PeerIdentityLayer};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn policy(spec: serde_json::Value) -> AuthorizationPolicy {
    AuthorizationPolicy::from_spec("default", "p", &spec).unwrap()
}

async fn call(
    layer: &AuthorizationLayer,
    peer: Option<&str>,
    req: http::Request<()>,
    hits: &Arc<AtomicUsize>,
) -> http::Response<String> {
    let hits = Arc::clone(hits);
    let svc = ServiceBuilder::new()
        .layer(PeerIdentityLayer::new(
            peer.map(|p| PeerIdentity(p.parse().unwrap())),
        ))
        .layer(layer.clone())
        .service(service_fn(move |_req: http::Request<()>| {
            hits.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new("hello".to_owned())) }
        }));
    svc.oneshot(req).await.unwrap()
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(path)
        .header("host", "reviews:9080")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn denied_requests_get_403_rbac_access_denied_and_never_reach_the_service() {
    let layer = AuthorizationLayer::new(Authorizer::new(vec![policy(json!({
        "rules": [{"from": [{"source": {"principals": ["td/ns/default/sa/sleep"]}}]}]
    }))]));
    let hits = Arc::new(AtomicUsize::new(0));

    let res = call(
        &layer,
        Some("spiffe://td/ns/default/sa/other"),
        get("/"),
        &hits,
    )
    .await;
    assert_eq!(res.status(), http::StatusCode::FORBIDDEN);
    assert_eq!(res.body(), DENIED_BODY);
    assert_eq!(res.body(), "RBAC: access denied");
    let res = call(&layer, None, get("/"), &hits).await;
    assert_eq!(res.status(), http::StatusCode::FORBIDDEN);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let res = call(
        &layer,
        Some("spiffe://td/ns/default/sa/sleep"),
        get("/"),
        &hits,
    )
    .await;
    assert_eq!(res.status(), http::StatusCode::OK);
    assert_eq!(res.body(), "hello");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_head_and_connection_info_feed_the_policy() {
    let layer = AuthorizationLayer::new(Authorizer::new(vec![policy(json!({
        "action": "DENY",
        "rules": [{
            "to": [{"operation": {"methods": ["POST"], "paths": ["/admin/*"], "hosts": ["reviews"], "ports": ["9080"]}}],
            "when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}],
        }]
    }))]));
    let hits = Arc::new(AtomicUsize::new(0));
    let post = |path: &str, ip: &str| {
        let mut r = http::Request::post(path)
            .header("host", "reviews:9080")
            .body(())
            .unwrap();
        r.extensions_mut().insert(ConnectionInfo {
            remote: format!("{ip}:5555").parse().unwrap(),
            local: "127.0.0.1:9080".parse().unwrap(),
            original_client: None,
            sni: None,
        });
        r
    };
    let res = call(&layer, None, post("/admin/x?y=1", "10.0.0.9"), &hits).await;
    assert_eq!(res.status(), http::StatusCode::FORBIDDEN);
    let res = call(&layer, None, post("/admin/x", "192.168.0.9"), &hits).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    let res = call(&layer, None, post("/public", "10.0.0.9"), &hits).await;
    assert_eq!(res.status(), http::StatusCode::OK);
}

#[tokio::test]
async fn policies_swap_atomically_for_new_requests() {
    let layer = AuthorizationLayer::new(Authorizer::new(vec![]));
    let hits = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        call(&layer, None, get("/"), &hits).await.status(),
        http::StatusCode::OK
    );
    layer
        .shared()
        .store(Arc::new(Authorizer::new(vec![policy(json!({}))])));
    assert_eq!(
        call(&layer, None, get("/"), &hits).await.status(),
        http::StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn denied_grpc_calls_get_permission_denied_trailers_only() {
    let layer = AuthorizationLayer::new(Authorizer::new(vec![policy(json!({
        "rules": [{"from": [{"source": {"principals": ["td/ns/default/sa/sleep"]}}]}]
    }))]));
    let hits = Arc::new(AtomicUsize::new(0));
    let req = http::Request::post("/pkg.Svc/Call")
        .header("host", "reviews:9080")
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    let res = call(&layer, Some("spiffe://td/ns/default/sa/other"), req, &hits).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(res.headers()["grpc-message"], DENIED_BODY);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert!(res.body().is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
