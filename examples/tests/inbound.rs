//! The sidecar inbound listener end to end, reached from a second mesh-proxy's outbound
//! listener with auto-mTLS: STRICT refuses plaintext, the peer's SPIFFE ID drives
//! AuthorizationPolicy (403), and the server's ID is checked against the serviceAccount.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use mesh_examples::proxy::RunningProxy;
use support::{Pki, TempDir, backend, get, start};

const INBOUND_POLICIES: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
    to: [{operation: {paths: ['/ok*']}}]
";

/// The client side's registry: `web` (and `impostor`, claiming another service account) at
/// the inbound listener, labelled for auto-mTLS.
fn client_config(inbound: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {inbound}}}
    labels: {{security.istio.io/tlsMode: istio}}
    serviceAccount: web
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: impostor}}
spec:
  hosts: [impostor.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {inbound}}}
    labels: {{security.istio.io/tlsMode: istio}}
    serviceAccount: billing
"
    )
}

/// The server side (inbound in front of `app`) and the client side (outbound), with SVIDs
/// for `sa/web` and `sa/sleep`.
async fn mesh(
    dirs: &(TempDir, TempDir),
    app: SocketAddr,
) -> (RunningProxy, u16, RunningProxy, u16) {
    let pki = Pki::new(&dirs.0);
    let web = pki.svid_flags(&dirs.0, "web", "spiffe://cluster.local/ns/default/sa/web");
    let sleep = pki.svid_flags(
        &dirs.1,
        "sleep",
        "spiffe://cluster.local/ns/default/sa/sleep",
    );
    let (server, inbound) = start(
        &dirs.0,
        |port| {
            let mut f = vec![
                "--inbound".to_string(),
                format!("127.0.0.1:{port}"),
                "--inbound-target".into(),
                app.to_string(),
            ];
            f.extend(web.iter().cloned());
            f
        },
        |_| INBOUND_POLICIES.to_string(),
    )
    .await;
    let (client, outbound) = start(
        &dirs.1,
        |port| {
            let mut f = vec!["--outbound".to_string(), format!("127.0.0.1:{port}")];
            f.extend(sleep.iter().cloned());
            f
        },
        |_| client_config(inbound),
    )
    .await;
    (server, inbound, client, outbound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mtls_to_strict_inbound_with_authorization() {
    let (app, seen) = backend("web").await;
    let dirs = (TempDir::new("in-server"), TempDir::new("in-client"));
    let (server, _, client, outbound) = mesh(&dirs, app).await;

    // sleep -> web over auto-mTLS: allowed path.
    let (status, _, body) = get(outbound, "web.default.svc.cluster.local", "/ok/1").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web /ok/1"));
    assert_eq!(seen.lock().unwrap()[0].1, "web.default.svc.cluster.local");

    // A path no ALLOW rule covers: 403 from the inbound side, counted there.
    let (status, _, body) = get(outbound, "web.default.svc.cluster.local", "/admin").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "RBAC: access denied")
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a denied request reached the app"
    );
    let stats = get(server.admin_addr().port(), "admin", "/stats/prometheus")
        .await
        .2;
    assert!(
        stats.contains("mesh_policy_denials_total{policy=\"authorization\"} 1"),
        "{stats}"
    );
    // Istio's labels on the server side: the peer's and its own SPIFFE IDs, over mTLS.
    let allowed = (stats.lines())
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
        .unwrap_or_else(|| panic!("{stats}"));
    for label in [
        "reporter=\"destination\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/web\"",
        "destination_workload_namespace=\"default\"",
        "connection_security_policy=\"mutual_tls\"",
    ] {
        assert!(allowed.contains(label), "{label} missing: {allowed}");
    }

    // The server is sa/web, not the sa/billing the endpoint claims: no connection, 503.
    let (status, _, _) = get(outbound, "impostor.default.svc.cluster.local", "/ok").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.lock().unwrap().len(), 1);

    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_inbound_refuses_plaintext() {
    let (app, seen) = backend("web").await;
    let dirs = (
        TempDir::new("in-plain-server"),
        TempDir::new("in-plain-client"),
    );
    let (server, inbound, client, _) = mesh(&dirs, app).await;

    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", inbound)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /ok HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    })
    .await
    .unwrap();
    assert_eq!(answer, "", "plaintext got an answer under STRICT");
    assert!(seen.lock().unwrap().is_empty());

    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_takes_plaintext_and_policies_follow_reloads() {
    let (app, seen) = backend("web").await;
    let dir = TempDir::new("in-permissive");
    let pki = Pki::new(&dir);
    let web = pki.svid_flags(&dir, "web", "spiffe://cluster.local/ns/default/sa/web");
    let policies = |paths: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec: {{mtls: {{mode: PERMISSIVE}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web, namespace: default}}
spec:
  action: ALLOW
  rules: [{{to: [{{operation: {{paths: ['{paths}']}}}}]}}]
"
        )
    };
    let (proxy, inbound) = start(
        &dir,
        |port| {
            let mut f = vec![
                "--inbound".to_string(),
                format!("127.0.0.1:{port}"),
                "--inbound-target".into(),
                app.to_string(),
            ];
            f.extend(web.iter().cloned());
            f
        },
        |_| policies("/ok*"),
    )
    .await;

    // Plaintext is accepted; the policy allows /ok* and nothing else.
    assert_eq!(get(inbound, "web", "/ok").await.2, "web /ok");
    let (status, _, body) = get(inbound, "web", "/public").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "RBAC: access denied")
    );

    dir.write("config.yaml", &policies("/public*"));
    proxy.request_reload();
    support::eventually("the new policy", || async {
        get(inbound, "web", "/public").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(get(inbound, "web", "/ok").await.0, StatusCode::FORBIDDEN);
    assert_eq!(seen.lock().unwrap()[0].1, "web");
    proxy.shutdown().await;
}
