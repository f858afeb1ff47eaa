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
    let head = format!("GET {target} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
    raw_status(port, &head).await
}

/// The status code answering `head`, sent as written.
async fn raw_status(port: u16, head: &str) -> u16 {
    let run = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
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
    // A reload to BASE applies to the next request.
    dir.write("mesh.cfg", "pathNormalization: {normalization: BASE}\n");
    proxy.request_reload();
    support::eventually("BASE in force", || async {
        status_of(port, "/./admin").await == 403
    })
    .await;
    proxy.shutdown().await;
}

/// A Gateway on `port` routing `a.example` to `a` and `b.example` to `b`.
fn gateway_config(port: u16, a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a}}
spec:
  hosts: [a.example]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: a.internal}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b}}
spec:
  hosts: [b.example]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: b.internal}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backends}}
spec:
  hosts: [a.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {pa}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b}}
spec:
  hosts: [b.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {pb}}}}}]
",
        pa = a.port(),
        pb = b.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_per_request_and_the_absolute_form_wins() {
    let (a, a_seen) = backend("a").await;
    let (b, b_seen) = backend("b").await;
    let dir = TempDir::new("hostile-host");
    let (proxy, port) = start(&dir, |_| vec![], |p| gateway_config(p, a, b)).await;
    let two = "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(port, two).await, 400);
    let none = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(port, none).await, 400);
    // HTTP/1.0 may omit Host (no route takes it here: 404, not 400).
    assert_eq!(raw_status(port, "GET / HTTP/1.0\r\n\r\n").await, 404);
    let absolute =
        "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(port, absolute).await, 200);
    assert!(
        b_seen.lock().unwrap().is_empty(),
        "routed by Host instead of the target"
    );
    assert_eq!(
        a_seen.lock().unwrap()[0],
        ("/x".to_string(), "a.example".to_string())
    );
    proxy.shutdown().await;
}

/// Reads until the peer closes; how long that took (`None`: still open after 10 s).
async fn closed_after(tcp: &mut TcpStream) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let run = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .ok()?;
    Some(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_and_the_connection_cap_holds() {
    let (a, _) = backend("a").await;
    let (b, _) = backend("b").await;
    let dir = TempDir::new("hostile-timeouts");
    let flags = |_| {
        [
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "300ms",
            "--max-connections",
            "4",
        ]
        .map(String::from)
        .to_vec()
    };
    let (proxy, port) = start(&dir, flags, |p| gateway_config(p, a, b)).await;

    // The cap: four open connections; a fifth is reset at once and counted, the four serve.
    let mut buf = [0u8; 1024];
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // On loopback the reset can beat connect() itself to the caller.
    if let Ok(mut fifth) = TcpStream::connect(("127.0.0.1", port)).await {
        let _ = fifth
            .write_all(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .await;
        let took = closed_after(&mut fifth)
            .await
            .expect("the fifth connection was served");
        assert!(took < Duration::from_secs(1));
    }
    let conn = &mut held[0];
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    let stats = support::get(proxy.admin_addr().port(), "admin", "/stats/prometheus")
        .await
        .2;
    let refused = format!("mesh_listener_connections_refused_total{{listener=\"gateway:{port}\"}}");
    let line = stats
        .lines()
        .find(|l| l.starts_with(&refused))
        .unwrap_or_else(|| panic!("{stats}"));
    assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
    // Slowloris: a head that never ends is cut off after the header-read timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Slow: ")
        .await
        .unwrap();
    let took = closed_after(&mut slow)
        .await
        .expect("a slowloris connection stayed open");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Keep-alive: after a request, an idle connection is closed after the idle timeout
    // (300 ms), not by hyper's header-read timer (1 s), which also runs while an HTTP/1
    // connection waits for its next head.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Timed from before the request: the proxy cannot close sooner than the idle timeout
    // after its answer, however late this task gets to read it on a busy machine.
    let sent = std::time::Instant::now();
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_after(&mut idle)
        .await
        .expect("an idle connection stayed open");
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(900),
        "{took:?}"
    );

    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_too() {
    let (a, _) = backend("a").await;
    let (b, _) = backend("b").await;
    let dir = TempDir::new("hostile-h2-idle");
    let flags = |_| ["--idle-timeout", "500ms"].map(String::from).to_vec();
    let (proxy, port) = start(&dir, flags, |p| gateway_config(p, a, b)).await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://a.example/x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let started = std::time::Instant::now();
    // The proxy sends GOAWAY once idle; the client's connection task then ends.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("an idle HTTP/2 connection stayed open")
        .unwrap()
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_and_a_huge_target_431() {
    let (a, _) = backend("a").await;
    let (b, _) = backend("b").await;
    let dir = TempDir::new("hostile-bodies");
    let (proxy, port) = start(&dir, |_| vec![], |p| gateway_config(p, a, b)).await;
    let bad_chunk = "POST /x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nbad\r\n0\r\n\r\n";
    assert_eq!(raw_status(port, bad_chunk).await, 400);
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        "a".repeat(61 * 1024)
    );
    assert_eq!(raw_status(port, &long).await, 431);
    proxy.shutdown().await;
}

/// A backend answering with the `name` header it received (`-` for none).
async fn header_echo(name: &'static str) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let v = (req.headers().get(name))
                        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(v)),
                    ))
                },
            );
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sanitize_client_supplied_xfcc_unless_configured_otherwise() {
    let app = header_echo("x-forwarded-client-cert").await;
    let get_xfcc = |port: u16| async move {
        let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
            .header("host", "a.example")
            .header(
                "x-forwarded-client-cert",
                "By=spoofed;URI=spiffe://cluster.local/ns/x/sa/admin",
            )
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        let resp = support::client().request(req).await.unwrap();
        use http_body_util::BodyExt as _;
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    };
    let dir = TempDir::new("hostile-xfcc");
    let (proxy, port) = start(&dir, |_| vec![], |p| gateway_config(p, app, app)).await;
    // SANITIZE_SET (Istio's gateway default): no client certificate, so no XFCC at all.
    assert_eq!(get_xfcc(port).await, "-");
    proxy.shutdown().await;

    let dir = TempDir::new("hostile-xfcc-forward");
    let mc = dir.write(
        "mesh.cfg",
        "defaultConfig: {gatewayTopology: {forwardClientCertDetails: ALWAYS_FORWARD_ONLY}}\n",
    );
    let flags = move |_| vec!["--mesh-config".to_string(), mc.display().to_string()];
    let (proxy, port) = start(&dir, flags, |p| gateway_config(p, app, app)).await;
    assert!(get_xfcc(port).await.starts_with("By=spoofed"));
    // Back to the default by a reload: sanitized again.
    dir.write("mesh.cfg", "defaultConfig: {}\n");
    proxy.request_reload();
    support::eventually("SANITIZE_SET in force", || async {
        get_xfcc(port).await == "-"
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn num_trusted_proxies_picks_the_external_address_and_follows_reloads() {
    let app = header_echo("x-envoy-external-address").await;
    let external = |port: u16| async move {
        let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
            .header("host", "a.example")
            // A client, then a proxy in front of ours; the peer is loopback (internal).
            .header("x-forwarded-for", "198.51.100.9, 203.0.113.7")
            .header("x-envoy-external-address", "192.0.2.66")
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        let resp = support::client().request(req).await.unwrap();
        use http_body_util::BodyExt as _;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let dir = TempDir::new("hostile-trusted-hops");
    let mc = dir.write(
        "mesh.cfg",
        "defaultConfig: {gatewayTopology: {numTrustedProxies: 1}}\n",
    );
    let flags = {
        let mc = mc.clone();
        move |_| vec!["--mesh-config".to_string(), mc.display().to_string()]
    };
    let (proxy, port) = start(&dir, flags, |p| gateway_config(p, app, app)).await;
    // One trusted hop: the client is the rightmost XFF entry; the forged header is gone.
    assert_eq!(external(port).await, "203.0.113.7");

    // Two hops after a reload: the entry before it.
    std::fs::write(
        &mc,
        "defaultConfig: {gatewayTopology: {numTrustedProxies: 2}}\n",
    )
    .unwrap();
    proxy.request_reload();
    support::eventually("numTrustedProxies 2 in force", || async {
        external(port).await == "198.51.100.9"
    })
    .await;

    // None: the client is the loopback peer, internal, so no external address at all.
    std::fs::write(&mc, "defaultConfig: {}\n").unwrap();
    proxy.request_reload();
    support::eventually("numTrustedProxies 0 in force", || async {
        external(port).await == "-"
    })
    .await;
    proxy.shutdown().await;
}
