//! What real clients send, end to end through mesh-proxy on loopback: HTTP/2 over TLS (ALPN
//! `h2` first, as browsers offer it) and h2c to HTTP/1.1 and HTTP/2 upstreams, HTTP/1.0,
//! gRPC (tonic client and server: unary, server and bidirectional streaming, trailers, and
//! every local reply as a `grpc-status`), WebSocket (tokio-tungstenite, over HTTP/1.1 and as
//! RFC 8441 extended CONNECT over HTTP/2) with back-pressure and idle timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use support::grpc::{self, msg};
use support::{Pki, TempDir, free_port, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    uri: String,
    headers: http::HeaderMap,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An HTTP/1.1 + HTTP/2 backend that records each request and answers `ok`.
async fn inspecting_backend() -> (SocketAddr, Log) {
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
                    seen.lock().unwrap().push(Seen {
                        version: req.version(),
                        uri: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
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

struct Backends {
    h1: SocketAddr,
    h2: SocketAddr,
    grpc: SocketAddr,
    ws: SocketAddr,
}

/// A Gateway with an HTTP port and an HTTPS port (SIMPLE, `*.example.com`), and hosts:
/// `h1.example.com` (an HTTP/1.1 port), `h2.example.com` (an HTTP2 port), `grpc.example.com`
/// (a GRPC port; `/test.Echo/Slow` with a 300 ms route timeout), `ws.example.com`
/// (WebSocket, idle timeout 300 ms under `/idle`), and `broken.example.com` for the local
/// replies (an empty cluster, a fault abort, a one-request pool).
fn gateway_config(port: u16, tls_port: u16, crt: &str, key: &str, b: &Backends) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ['*']
  - port: {{number: {tls_port}, name: https, protocol: HTTPS}}
    hosts: ['*.example.com']
    tls: {{mode: SIMPLE, serverCertificate: '{crt}', privateKey: '{key}'}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hosts}}
spec:
  hosts: [h1.example.com, h2.example.com, ws.example.com]
  gateways: [gw]
  http:
  - match: [{{authority: {{prefix: h1.}}}}]
    headers: {{request: {{add: {{x-route-added: added}}}}}}
    route: [{{destination: {{host: h1.internal}}}}]
  - match: [{{authority: {{prefix: h2.}}}}]
    route: [{{destination: {{host: h2.internal}}}}]
  - match: [{{uri: {{prefix: /idle}}}}]
    route: [{{destination: {{host: ws-idle.internal}}}}]
  - route: [{{destination: {{host: ws.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: grpc}}
spec:
  hosts: [grpc.example.com]
  gateways: [gw]
  http:
  - match: [{{uri: {{exact: /test.Echo/Slow}}}}]
    timeout: 300ms
    route: [{{destination: {{host: grpc.internal}}}}]
  - match: [{{uri: {{prefix: /test.Echo/}}}}]
    route: [{{destination: {{host: grpc.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: broken}}
spec:
  hosts: [broken.example.com]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /test.Echo/Unary}}, headers: {{x-case: {{exact: empty}}}}}}]
    route: [{{destination: {{host: grpc.internal, subset: nobody}}}}]
  - match: [{{uri: {{prefix: /test.Echo/Unary}}, headers: {{x-case: {{exact: abort}}}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: grpc.internal}}}}]
  - match: [{{uri: {{exact: /test.Echo/Slow}}, headers: {{x-case: {{exact: deadline}}}}}}]
    route: [{{destination: {{host: grpc.internal}}}}]
  - match: [{{uri: {{exact: /test.Echo/Slow}}}}]
    route: [{{destination: {{host: grpc-one.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backends}}
spec:
  hosts: [h1.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {h1}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: h2}}
spec:
  hosts: [h2.internal]
  ports: [{{number: 80, name: http2, protocol: HTTP2}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http2: {h2}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: grpc}}
spec:
  hosts: [grpc.internal, grpc-one.internal]
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {grpc}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ws}}
spec:
  hosts: [ws.internal, ws-idle.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ws}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: grpc}}
spec:
  host: grpc.internal
  subsets: [{{name: nobody, labels: {{version: nobody}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: one}}
spec:
  host: grpc-one.internal
  trafficPolicy: {{connectionPool: {{http: {{http2MaxRequests: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: idle}}
spec:
  host: ws-idle.internal
  trafficPolicy: {{connectionPool: {{tcp: {{idleTimeout: 300ms}}}}}}
",
        h1 = b.h1.port(),
        h2 = b.h2.port(),
        grpc = b.grpc.port(),
        ws = b.ws.port(),
    )
}

struct Gateway {
    _proxy: mesh_examples::proxy::RunningProxy,
    port: u16,
    tls_port: u16,
    pki: Pki,
    h1_log: Log,
    h2_log: Log,
    flooded: Arc<std::sync::atomic::AtomicU64>,
    _dirs: (TempDir, TempDir),
}

async fn gateway() -> Gateway {
    let dir = TempDir::new("proto-gw");
    let certs = TempDir::new("proto-gw-certs");
    let pki = Pki::new(&certs);
    let (crt, key) = pki.server_cert(&certs, "wildcard", "*.example.com");
    let (h1, h1_log) = inspecting_backend().await;
    let (h2, h2_log) = inspecting_backend().await;
    let grpc = grpc::server("echo").await;
    let (ws, flooded) = support::ws::echo_server().await;
    let b = Backends { h1, h2, grpc, ws };
    let tls_port = free_port();
    let (crt, key) = (crt.display().to_string(), key.display().to_string());
    let (proxy, port) = start(
        &dir,
        |_| vec![],
        |p| gateway_config(p, tls_port, &crt, &key, &b),
    )
    .await;
    Gateway {
        _proxy: proxy,
        port,
        tls_port,
        pki,
        h1_log,
        h2_log,
        flooded,
        _dirs: (dir, certs),
    }
}

/// An HTTP/2 client connection (prior knowledge) over `io`.
async fn h2_client<I>(io: I) -> hyper::client::conn::http2::SendRequest<Full<Bytes>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn body_text(resp: Response<Incoming>) -> String {
    String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_reach_http1_upstreams_over_h2c_and_alpn_h2() {
    let gw = gateway().await;

    // h2c (curl --http2-prior-knowledge).
    let mut h2c = h2_client(TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap()).await;
    let req = Request::get("http://h1.example.com/a?b=1")
        .header("te", "trailers")
        .body(Full::default())
        .unwrap();
    let resp = h2c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_text(resp).await, "ok");

    // TLS with ALPN h2 first, as a browser offers it.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.pki.ca_der().into()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", gw.tls_port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("h1.example.com".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = h2_client(tls).await;
    let resp = h2
        .send_request(
            Request::get("https://h1.example.com/tls")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let seen = gw.h1_log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        // The upstream speaks HTTP/1.1 and sees the client's authority as its one Host.
        assert_eq!(s.version, Version::HTTP_11);
        assert_eq!(s.headers.get_all("host").iter().count(), 1);
        assert_eq!(s.headers["host"], "h1.example.com");
    }
    assert_eq!(seen[0].uri, "/a?b=1");
    assert_eq!(seen[0].headers["te"], "trailers");
    assert_eq!(seen[1].uri, "/tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_0_clients_are_answered() {
    let gw = gateway().await;
    let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    tcp.write_all(b"GET /old HTTP/1.0\r\nHost: h1.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // HTTP/1.0 without keep-alive: the proxy closes after the response.
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{answer}"
    );
    assert!(answer.ends_with("ok"), "{answer}");
    let seen = gw.h1_log.lock().unwrap().clone();
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].headers["host"], "h1.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_reach_http2_upstreams_with_authority_not_host() {
    let gw = gateway().await;
    let (status, _, body) = support::get(gw.port, "h2.example.com", "/p").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let mut h2c = h2_client(TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap()).await;
    let resp = h2c
        .send_request(
            Request::get("http://h2.example.com/q")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = gw.h2_log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (s, path) in seen.iter().zip(["/p", "/q"]) {
        assert_eq!(s.version, Version::HTTP_2);
        // `:authority` is the client's host, never the endpoint address, and no Host beside it.
        assert_eq!(s.uri, format!("http://h2.example.com{path}"));
        assert!(!s.headers.contains_key("host"), "{:?}", s.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_bidi_and_trailers_through_the_gateway() {
    let gw = gateway().await;
    let mut c = grpc::client(gw.port, "grpc.example.com").await;
    let reply = grpc::unary(
        &mut c,
        "/test.Echo/Unary",
        tonic::Request::new(msg("hi", 7)),
    )
    .await
    .unwrap();
    assert_eq!(reply, msg("echo: hi", 7));

    let (items, status) = grpc::count(&mut c, 1000).await;
    assert_eq!(items.len(), 1000);
    assert!(items.iter().enumerate().all(|(i, m)| m.n as usize == i));
    // The upstream's status and custom metadata arrive as trailers after the messages.
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "counted");
    assert_eq!(status.metadata().get(grpc::TRAILER).unwrap(), "1000");

    // Bidirectional, one message at a time: nothing on the way may wait for the stream's end.
    let echoes = grpc::chat(&mut c, 50).await;
    assert_eq!(echoes.len(), 50);
    assert_eq!(echoes[49], msg("echo: 49", 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_local_replies_carry_envoys_grpc_status() {
    let gw = gateway().await;
    let mut c = grpc::client(gw.port, "broken.example.com").await;
    let call = |case: &'static str| {
        let mut req = tonic::Request::new(msg("x", 0));
        req.metadata_mut().insert("x-case", case.parse().unwrap());
        req
    };
    // No route: 404 NR -> UNIMPLEMENTED.
    let e = grpc::unary(&mut c, "/test.Echo/Unknown", call("none"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // No healthy upstream: 503 UH -> UNAVAILABLE with Envoy's text.
    let e = grpc::unary(&mut c, "/test.Echo/Unary", call("empty"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unavailable, "no healthy upstream")
    );
    // Fault abort with httpStatus 503.
    let e = grpc::unary(&mut c, "/test.Echo/Unary", call("abort"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unavailable, "fault filter abort")
    );
    // grpc-timeout honoured when the route has none: 504 UT -> UNAVAILABLE. (A raw HTTP/2
    // client: tonic would arm its own timer for the header and answer first.)
    let started = Instant::now();
    let mut h2 = h2_client(TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap()).await;
    let req = Request::post("http://broken.example.com/test.Echo/Slow")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-case", "deadline")
        .header("grpc-timeout", "200m")
        .body(Full::new(grpc::frame(&msg("x", 2000))))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert_eq!(resp.headers()["grpc-message"], "upstream request timeout");
    // The route's own timeout (300 ms).
    let mut slow = grpc::client(gw.port, "grpc.example.com").await;
    let started = Instant::now();
    let e = grpc::unary(
        &mut slow,
        "/test.Echo/Slow",
        tonic::Request::new(msg("x", 2000)),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unavailable, "upstream request timeout")
    );
    // Pool overflow: a second call while the one-request pool is busy.
    let first = tokio::spawn({
        let mut c = grpc::client(gw.port, "broken.example.com").await;
        async move {
            grpc::unary(
                &mut c,
                "/test.Echo/Slow",
                tonic::Request::new(msg("x", 500)),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let e = grpc::unary(&mut c, "/test.Echo/Slow", tonic::Request::new(msg("x", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().ends_with("reset reason: overflow"), "{e:?}");
    assert_eq!(e.metadata().get("x-envoy-overloaded").unwrap(), "true");
    assert!(first.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_close_and_backpressure_through_the_gateway() {
    let gw = gateway().await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.example.com/chat", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..1000 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::text(format!("m{i}")));
    }
    // The close handshake passes both ways.
    ws.close(None).await.unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("close handshake failed: {e}"),
        }
    }

    // The upgrade is a request in Istio's metrics: 101.
    let stats = support::get(gw._proxy.admin_addr().port(), "admin", "/stats/prometheus")
        .await
        .2;
    assert!(
        (stats.lines())
            .any(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"101\"")),
        "{stats}"
    );

    // A client that stops reading: the upstream can send only what the buffers on the way
    // hold, never an unbounded amount.
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://ws.example.com/flood", tcp)
        .await
        .unwrap();
    ws.send(Message::text("flood")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = gw.flooded.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = gw.flooded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < 64 << 20,
        "the upstream pushed {sent} bytes to a client that reads nothing"
    );
    assert_eq!(sent, later, "the upstream was not held back");
    // And reading again drains it.
    let m = ws.next().await.unwrap().unwrap();
    assert_eq!(m.len(), 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_idle_timeout_closes_the_tunnel() {
    let gw = gateway().await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://ws.example.com/idle", tcp)
        .await
        .unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    let started = Instant::now();
    // Silence: the DestinationRule's tcp.idleTimeout (300 ms) closes the tunnel.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

fn clone_connect(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(Full::default());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    if let Some(p) = req.extensions().get::<hyper::ext::Protocol>() {
        copy.extensions_mut().insert(p.clone());
    }
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect_reaches_an_http1_server() {
    let gw = gateway().await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let mut h2 = h2_client(tcp).await;
    let mut req = Request::connect("http://ws.example.com/chat")
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(Full::default())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) may not have arrived yet.
    let mut resp = None;
    for _ in 0..50 {
        match h2.send_request(clone_connect(&req)).await {
            Ok(r) => {
                resp = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let resp = resp.expect("extended CONNECT was never accepted");
    assert_eq!(resp.status(), StatusCode::OK);
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    for i in 0..100 {
        ws.send(Message::binary(vec![i as u8; 100])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![i as u8; 100])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_unknown_upgrades_are_refused_h2c_is_ignored() {
    let gw = gateway().await;
    let send = |head: &'static str| async move {
        let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let answer =
        send("CONNECT db.example.com:5432 HTTP/1.1\r\nHost: db.example.com:5432\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = send(
        "GET / HTTP/1.1\r\nHost: h1.example.com\r\nConnection: upgrade\r\nUpgrade: spdy/3.1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // h2c upgrade requests are served as plain HTTP/1.1.
    let answer = send(
        "GET /h2c HTTP/1.1\r\nHost: h1.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = gw.h1_log.lock().unwrap().clone();
    let h2c = seen.iter().find(|s| s.uri == "/h2c").unwrap();
    assert!(!h2c.headers.contains_key("upgrade"));
    assert!(!h2c.headers.contains_key("http2-settings"));
}

mod hop_by_hop {
    use super::*;
    use proptest::prelude::*;

    const HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "upgrade",
    ];

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "x-[a-z]{1,8}".prop_map(|s| s),
            1 => proptest::sample::select(&HOP[..]).prop_map(str::to_string),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// What the upstream receives equals what the client sent, minus the HTTP/1.1
        /// hop-by-hop headers (and those `Connection` names), plus what the route adds.
        #[test]
        fn upstream_gets_the_end_to_end_headers_plus_the_routes(
            headers in proptest::collection::vec(
                (header_name(), prop_oneof![3 => "[a-z0-9]{1,6}", 1 => Just("trailers".to_string())]),
                0..8,
            ),
            named in proptest::collection::vec("x-[a-z]{1,8}", 0..2),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let gw = gateway().await;
                let mut req = Request::get(format!("http://127.0.0.1:{}/p", gw.port))
                    .header("host", "h1.example.com");
                let mut sent = http::HeaderMap::new();
                for (name, value) in &headers {
                    if name == "upgrade" || name == "connection" {
                        continue; // upgrade semantics are tested above
                    }
                    req = req.header(name.as_str(), value.as_str());
                    sent.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
                }
                if !named.is_empty() {
                    req = req.header("connection", named.join(", "));
                }
                let resp = support::client().request(req.body(Full::default()).unwrap()).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let seen = gw.h1_log.lock().unwrap()[0].headers.clone();
                let mut want: Vec<(String, String)> = sent
                    .iter()
                    .filter(|(n, _)| !HOP.contains(&n.as_str()))
                    .filter(|(n, _)| !named.iter().any(|x| x == n.as_str()))
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                // `te` passes once, as `te: trailers`, when any value named trailers.
                if sent.get_all("te").iter().any(|v| v == "trailers") {
                    want.push(("te".into(), "trailers".into()));
                }
                want.push(("x-route-added".into(), "added".into()));
                want.sort();
                let added_by_proxy = ["host", "x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-envoy-external-address", "content-length"];
                let mut got: Vec<(String, String)> = seen
                    .iter()
                    .filter(|(n, _)| !added_by_proxy.contains(&n.as_str()))
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                got.sort();
                assert_eq!(got, want);
            });
        }
    }
}
