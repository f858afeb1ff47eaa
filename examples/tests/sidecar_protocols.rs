//! The sidecar listeners with real peers: gRPC (tonic) from an outbound listener over
//! auto-mTLS to an inbound listener in front of a gRPC app, local replies as `grpc-status`
//! on both sides, an Istio sidecar's ALPN on the inbound side, `x-forwarded-client-cert`
//! for the app, HTTP/2 to the app, and TCP through the inbound listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_examples::proxy::RunningProxy;
use mesh_identity::{BundleSet, Credentials, IdMatcher, Svid, TrustBundle};
use support::grpc::{self, msg};
use support::{Pki, TempDir, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";
const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";

/// STRICT mTLS; sleep may call everything but `Slow`.
const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-slow, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/test.Echo/Slow]}}]}]
";

/// The client side: `echo` (a GRPC port) at the inbound listener, labelled for auto-mTLS,
/// and REGISTRY_ONLY.
fn client_config(inbound: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {{grpc: {inbound}}}
    labels: {{security.istio.io/tlsMode: istio}}
    serviceAccount: web
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"
    )
}

/// An inbound listener with `--inbound-protocol protocol` in front of `app`, as sa/web.
async fn inbound(
    dir: &TempDir,
    pki: &Pki,
    app: SocketAddr,
    protocol: &str,
    policies: &'static str,
) -> (RunningProxy, u16) {
    let web = pki.svid_flags(dir, "web", WEB);
    let protocol = protocol.to_string();
    start(
        dir,
        move |port| {
            let mut f = vec![
                "--inbound".to_string(),
                format!("127.0.0.1:{port}"),
                "--inbound-target".into(),
                app.to_string(),
                "--inbound-protocol".into(),
                protocol.clone(),
            ];
            f.extend(web.iter().cloned());
            f
        },
        |_| policies.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_from_outbound_over_auto_mtls_to_an_inbound_grpc_app() {
    let app = grpc::server("app").await;
    let dirs = (
        TempDir::new("sc-grpc-server"),
        TempDir::new("sc-grpc-client"),
    );
    let pki = Pki::new(&dirs.0);
    let (server, inbound_port) = inbound(&dirs.0, &pki, app, "GRPC", POLICIES).await;
    let sleep = pki.svid_flags(&dirs.1, "sleep", SLEEP);
    let (client, outbound) = start(
        &dirs.1,
        |port| {
            let mut f = vec!["--outbound".to_string(), format!("127.0.0.1:{port}")];
            f.extend(sleep.iter().cloned());
            f
        },
        |_| client_config(inbound_port),
    )
    .await;

    let mut c = grpc::client(outbound, "echo.default.svc.cluster.local:50051").await;
    let reply = grpc::unary(
        &mut c,
        "/test.Echo/Unary",
        tonic::Request::new(msg("hi", 1)),
    )
    .await
    .unwrap();
    assert_eq!(reply, msg("app: hi", 1));
    let (items, status) = grpc::count(&mut c, 1000).await;
    assert_eq!(items.len(), 1000);
    assert_eq!(status.metadata().get(grpc::TRAILER).unwrap(), "1000");
    assert_eq!(grpc::chat(&mut c, 20).await.len(), 20);

    // The inbound side's RBAC denial reaches the caller as PERMISSION_DENIED.
    let e = grpc::unary(&mut c, "/test.Echo/Slow", tonic::Request::new(msg("x", 0)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::PermissionDenied, "RBAC: access denied")
    );

    // REGISTRY_ONLY on the outbound side: 502 -> UNAVAILABLE.
    let mut other = grpc::client(outbound, "unknown.example.org").await;
    let e = grpc::unary(
        &mut other,
        "/test.Echo/Unary",
        tonic::Request::new(msg("x", 0)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    client.shutdown().await;
    server.shutdown().await;
}

/// The TLS client side of a mesh workload with `id`'s SVID, checking the server is `server`.
fn mesh_client(
    pki: &Pki,
    dir: &TempDir,
    id: &str,
    server: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let flags = pki.svid_flags(dir, "client", id);
    let read = |i: usize| std::fs::read(&flags[i]).unwrap();
    let svid = Svid::from_pem(&read(1), &read(3)).unwrap();
    let bundle = TrustBundle::from_pem("cluster.local".parse().unwrap(), &read(5)).unwrap();
    let creds = Credentials::new(svid, BundleSet::single(bundle));
    let mut config = creds
        .client_config(IdMatcher::Exact(server.parse().unwrap()))
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Log = Arc<Mutex<Vec<(Version, http::HeaderMap)>>>;

/// An HTTP/1.1 + HTTP/2 app that records what it was sent.
async fn recording_app() -> (SocketAddr, Log) {
    let log = Log::default();
    let seen = log.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push((req.version(), req.headers().clone()));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
                }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    (addr, log)
}

const PERMISSIVE: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: PERMISSIVE}}
";

/// An HTTP/1.1 GET over `io`; the status.
async fn get_over<I>(io: I, xfcc: &str) -> StatusCode
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/x")
        .header("host", "web.default.svc.cluster.local")
        .header("x-forwarded-client-cert", xfcc)
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_sidecar_alpn_handshakes_and_the_app_learns_the_peer_from_xfcc() {
    let (app, seen) = recording_app().await;
    let dir = TempDir::new("sc-xfcc");
    let pki = Pki::new(&dir);
    let (server, port) = inbound(&dir, &pki, app, "HTTP2", PERMISSIVE).await;

    // What an Envoy sidecar offers for an HTTP/1.1 cluster.
    let tls = mesh_client(
        &pki,
        &dir,
        SLEEP,
        WEB,
        &[b"istio-http/1.1", b"istio", b"http/1.1"],
    );
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream = tls.connect("web".try_into().unwrap(), tcp).await.unwrap();
    assert!(stream.get_ref().1.alpn_protocol().is_some());
    assert_eq!(get_over(stream, "By=spoofed").await, StatusCode::OK);

    // Plaintext (PERMISSIVE): a client's own XFCC never reaches the app.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(
        get_over(tcp, "By=spoofed;URI=spiffe://cluster.local/ns/x/sa/admin").await,
        StatusCode::OK
    );

    // Only `istio` (what Envoy offers for TCP, after istio-peer-exchange): still a handshake.
    let tls = mesh_client(&pki, &dir, SLEEP, WEB, &[b"istio-peer-exchange", b"istio"]);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream = tls.connect("web".try_into().unwrap(), tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"istio"[..]));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    // --inbound-protocol HTTP2: the app is spoken to in HTTP/2 whatever the client used.
    assert!(seen.iter().all(|(v, _)| *v == Version::HTTP_2));
    let xfcc = seen[0].1["x-forwarded-client-cert"]
        .to_str()
        .unwrap()
        .to_string();
    let (spoofed, ours) = xfcc.split_once(',').unwrap();
    assert_eq!(spoofed, "By=spoofed");
    assert!(ours.starts_with(&format!("By={WEB};Hash=")), "{ours}");
    assert!(
        ours.ends_with(&format!(";Subject=\"\";URI={SLEEP}")),
        "{ours}"
    );
    assert!(!seen[1].1.contains_key("x-forwarded-client-cert"));
    server.shutdown().await;
}

/// A TCP app that answers every read with `echo:` and what it read.
async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0
                        || tcp
                            .write_all(&[b"echo:", &buf[..n]].concat())
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

const TCP_POLICIES: &str = "apiVersion: security.istio.io/v1
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_inbound_authorizes_each_connection_and_copies_bytes() {
    let app = tcp_echo().await;
    let dir = TempDir::new("sc-tcp");
    let pki = Pki::new(&dir);
    let (server, port) = inbound(&dir, &pki, app, "TCP", TCP_POLICIES).await;

    let tls = mesh_client(&pki, &dir, SLEEP, WEB, &[b"istio"]);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut stream = tls.connect("web".try_into().unwrap(), tcp).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"echo:ping");

    // Plaintext has no principal: the ALLOW policy does not match, the connection is closed.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = plain.write_all(b"ping").await;
    let n = tokio::time::timeout(Duration::from_secs(10), plain.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "a denied connection got {:?}", &buf[..n]);

    // Another workload's SVID: denied as well.
    let other = mesh_client(
        &pki,
        &dir,
        "spiffe://cluster.local/ns/default/sa/other",
        WEB,
        &[b"istio"],
    );
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut stream = other.connect("web".try_into().unwrap(), tcp).await.unwrap();
    let _ = stream.write_all(b"ping").await;
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    server.shutdown().await;
}
