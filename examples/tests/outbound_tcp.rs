//! The sidecar's outbound TCP listeners: a ServiceEntry's TCP port bound on its VIP (or the
//! outbound IP), VirtualService `tcp:` routes with weights, subsets and `destinationSubnets`,
//! auto-mTLS to an inbound listener that only lets sa/sleep in, and a DestinationRule's
//! `tls: SIMPLE` originating TLS on a TCP egress.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Pki, TempDir, free_port, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A TCP app that answers each read with `NAME:` and what it read.
async fn tcp_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut buf).await {
                    let reply = [name.as_bytes(), b":", &buf[..n]].concat();
                    if n == 0 || tcp.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Writes `ping` to `addr` and returns the answer.
async fn ping(addr: SocketAddr) -> String {
    let run = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 256];
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_weights_subsets_and_destination_subnets() {
    let (v1, v2) = (tcp_app("v1").await, tcp_app("v2").await);
    let dir = TempDir::new("otcp-routes");
    let (db_port, cache_port) = (free_port(), free_port());
    let config = move |_| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [127.0.0.71, 127.0.0.72]
  ports: [{{number: {db_port}, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {p1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {p2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db.default.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.default.svc.cluster.local]
  tcp:
  - match: [{{destinationSubnets: [127.0.0.72/32]}}]
    route: [{{destination: {{host: db.default.svc.cluster.local, subset: v1}}}}]
  - route:
    - {{destination: {{host: db.default.svc.cluster.local, subset: v1}}, weight: 0}}
    - {{destination: {{host: db.default.svc.cluster.local, subset: v2}}, weight: 100}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cache}}
spec:
  hosts: [cache.default.svc.cluster.local]
  ports: [{{number: {cache_port}, name: redis, protocol: REDIS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{redis: {p1}}}}}]
",
            p1 = v1.port(),
            p2 = v2.port()
        )
    };
    let (proxy, _) = start(
        &dir,
        |port| vec!["--outbound".to_string(), format!("127.0.0.1:{port}")],
        config,
    )
    .await;
    // The VIP the subnet does not name: the weighted route, weight 0 never chosen.
    let vip = SocketAddr::from(([127, 0, 0, 71], db_port));
    for _ in 0..20 {
        assert_eq!(ping(vip).await, "v2:ping");
    }
    // The other VIP: the destinationSubnets route.
    assert_eq!(
        ping(SocketAddr::from(([127, 0, 0, 72], db_port))).await,
        "v1:ping"
    );
    // A service without addresses: on the outbound IP at its port, to the service itself.
    assert_eq!(
        ping(SocketAddr::from(([127, 0, 0, 1], cache_port))).await,
        "v1:ping"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_an_istio_endpoint_is_auto_mtls() {
    let app = tcp_app("app").await;
    let dirs = (TempDir::new("otcp-server"), TempDir::new("otcp-client"));
    let pki = Pki::new(&dirs.0);
    let web = pki.svid_flags(&dirs.0, "web", "spiffe://cluster.local/ns/default/sa/web");
    // Plaintext has no principal and is refused: only mTLS as sa/sleep gets through.
    let policies = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sleep-only, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]
";
    let (server, inbound) = start(
        &dirs.0,
        |port| {
            let mut f = vec![
                "--inbound".to_string(),
                format!("127.0.0.1:{port}"),
                "--inbound-target".into(),
                app.to_string(),
                "--inbound-protocol".into(),
                "TCP".into(),
            ];
            f.extend(web.iter().cloned());
            f
        },
        |_| policies.to_string(),
    )
    .await;
    assert_eq!(ping(SocketAddr::from(([127, 0, 0, 1], inbound))).await, "");

    let sleep = pki.svid_flags(
        &dirs.1,
        "sleep",
        "spiffe://cluster.local/ns/default/sa/sleep",
    );
    let port = free_port();
    let (client, _) = start(
        &dirs.1,
        |p| {
            let mut f = vec!["--outbound".to_string(), format!("127.0.0.1:{p}")];
            f.extend(sleep.iter().cloned());
            f
        },
        |_| {
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.default.svc.cluster.local]
  addresses: [127.0.0.73]
  ports: [{{number: {port}, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{tcp: {inbound}}}
    labels: {{security.istio.io/tlsMode: istio}}
    serviceAccount: web
"
            )
        },
    )
    .await;
    assert_eq!(
        ping(SocketAddr::from(([127, 0, 0, 73], port))).await,
        "app:ping"
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// A TLS server (certificate `cert`/`key`) answering each read with `tls:` and what it read;
/// `handshakes` counts the handshakes that completed.
async fn tls_tcp_app(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let acceptor = support::tls_acceptor(cert, key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&[b"tls:", &buf[..n]].concat()).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                }
            });
        }
    });
    (addr, handshakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_rule_originates_tls_on_a_tcp_egress() {
    // Issue 15's defect: `tls: SIMPLE` on a TCP egress used to send plaintext.
    let dir = TempDir::new("otcp-simple");
    let pki = Pki::new(&dir);
    let (cert, key) = pki.server_cert(&dir, "db", "db.external.example");
    let (server, handshakes) = tls_tcp_app(&cert, &key).await;
    let service_port = free_port();
    let ca = pki.bundle.display().to_string();
    let config = move |_| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.external.example]
  ports: [{{number: {service_port}, name: tcp, protocol: TCP}}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {p}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db.external.example
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: '{ca}', sni: db.external.example}}
",
            p = server.port()
        )
    };
    let (proxy, _) = start(
        &dir,
        |port| vec!["--outbound".to_string(), format!("127.0.0.1:{port}")],
        config,
    )
    .await;
    // The app speaks plaintext to the proxy; the server, which only speaks TLS, answers.
    let listener = SocketAddr::from(([127, 0, 0, 1], service_port));
    assert_eq!(ping(listener).await, "tls:ping");
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    proxy.shutdown().await;
}
