//! Hostile clients against mesh-proxy: every spelling of a denied path is denied (path
//! normalization before authorization, the normalized path forwarded), malformed paths get
//! 400, and MeshConfig `pathNormalization` changes what is merged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Pki, TempDir, backend, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin, /admin/*]}}]}]
";

/// The status line's code for `GET target` sent as written.
async fn status_of(port: u16, target: &str) -> u16 {
    let run = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!("GET {target} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
}

async fn inbound(
    dir: &TempDir,
    app: std::net::SocketAddr,
    mesh_config: Option<&str>,
) -> (mesh_examples::proxy::RunningProxy, u16) {
    let pki = Pki::new(dir);
    let web = pki.svid_flags(dir, "web", "spiffe://cluster.local/ns/default/sa/web");
    let mesh_config = mesh_config.map(|text| dir.write("mesh.cfg", text));
    start(
        dir,
        |port| {
            let mut f = vec![
                "--inbound".to_string(),
                format!("127.0.0.1:{port}"),
                "--inbound-target".into(),
                app.to_string(),
            ];
            f.extend(web.iter().cloned());
            if let Some(m) = &mesh_config {
                f.extend(["--mesh-config".to_string(), m.display().to_string()]);
            }
            f
        },
        |_| POLICIES.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_denied_path_is_denied_and_upstreams_see_normalized_paths() {
    let (app, seen) = backend("app").await;
    let dir = TempDir::new("hostile-paths");
    let (proxy, port) = inbound(&dir, app, None).await;
    for target in [
        "/admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/%2e/admin",
        "/%2E%2e/admin/x",
        "/admin/%2e",
    ] {
        assert_eq!(
            status_of(port, target).await,
            403,
            "{target} was not denied"
        );
    }
    // Malformed percent-encoding and an encoded NUL: 400, never forwarded.
    for target in ["/a%zz", "/%", "/x%00y"] {
        assert_eq!(status_of(port, target).await, 400, "{target}");
    }
    // Under BASE (Istio's default) slashes are not merged, as in Istio.
    assert_eq!(status_of(port, "//admin").await, 200);
    // Allowed requests reach the app normalized, query kept.
    assert_eq!(status_of(port, "/public/./a/../b?q=%2e").await, 200);
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(paths, ["//admin", "/public/b"], "the app saw other paths");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_slashes_and_decoding_follow_the_mesh_config() {
    let (app, seen) = backend("app").await;
    let dir = TempDir::new("hostile-merge");
    let (proxy, port) = inbound(
        &dir,
        app,
        Some("pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}\n"),
    )
    .await;
    for target in [
        "//admin",
        "/x//..//admin",
        "/%2fadmin",
        "/public%2f..%2fadmin",
    ] {
        assert_eq!(
            status_of(port, target).await,
            403,
            "{target} was not denied"
        );
    }
    assert_eq!(status_of(port, "/a//b%2fc").await, 200);
    assert_eq!(seen.lock().unwrap()[0].0, "/a/b/c");
    proxy.shutdown().await;

    // NONE: forwarded as received (Istio's documented, vulnerable choice).
    let (app, seen) = backend("app").await;
    let dir = TempDir::new("hostile-none");
    let (proxy, port) = inbound(
        &dir,
        app,
        Some("pathNormalization: {normalization: NONE}\n"),
    )
    .await;
    assert_eq!(status_of(port, "/./admin").await, 200);
    assert_eq!(seen.lock().unwrap()[0].0, "/./admin");
    proxy.shutdown().await;
}
