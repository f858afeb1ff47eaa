//! Route actions end to end through mesh-proxy's gateway listener: faults, retries, redirects,
//! direct responses, rewrites and header operations, CORS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use support::{TempDir, backend, client, start};
use tokio::net::TcpListener;

/// A backend that answers 503 to every other request (first one fails), counting requests,
/// and echoes `x-req` and the path.
async fn flaky() -> (SocketAddr, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    let status = if n % 2 == 0 { 503 } else { 200 };
                    let x = req
                        .headers()
                        .get("x-req")
                        .map(|v| v.to_str().unwrap_or("").to_string())
                        .unwrap_or_default();
                    let body = format!("flaky {} x-req={x}", req.uri().path());
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("x-from", "flaky")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    (addr, count)
}

fn config(port: u16, web: SocketAddr, flaky: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ['*.example.com']}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: actions}}
spec:
  hosts: [app.example.com]
  gateways: [public]
  http:
  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: web.internal}}}}]
  - match: [{{uri: {{prefix: /delay}}}}]
    fault: {{delay: {{fixedDelay: 300ms, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: web.internal}}}}]
  - match: [{{uri: {{prefix: /retry}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
    route: [{{destination: {{host: flaky.internal}}}}]
  - match: [{{uri: {{prefix: /noretry}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: flaky.internal}}}}]
  - match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new, redirectCode: 308}}
  - match: [{{uri: {{exact: /teapot}}}}]
    directResponse: {{status: 418, body: {{string: short and stout}}}}
  - match: [{{uri: {{prefix: /api/v1/}}}}]
    rewrite: {{uri: /v2/}}
    headers:
      request: {{set: {{x-req: from-proxy}}}}
      response: {{set: {{x-resp: set-by-route}}, remove: [x-from]}}
    route: [{{destination: {{host: flaky.internal}}}}]
    retries: {{attempts: 3, retryOn: 5xx}}
  - match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy: {{allowOrigins: [{{exact: 'https://app.example.com'}}], allowMethods: [GET, POST], maxAge: 1h}}
    route: [{{destination: {{host: web.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {w}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: flaky}}
spec:
  hosts: [flaky.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {f}}}}}]
",
        w = web.port(),
        f = flaky.port()
    )
}

async fn send(req: http::request::Builder) -> (StatusCode, http::HeaderMap, String) {
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client().request(req.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("timed out")
    .expect("request failed");
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_actions_through_the_proxy() {
    let (web, web_seen) = backend("web").await;
    let (flaky_addr, flaky_count) = flaky().await;
    let dir = TempDir::new("actions");
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, web, flaky_addr)).await;
    let req = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("host", "app.example.com")
    };

    // Fault abort: answered by the proxy, never reaching the backend.
    let (status, _, body) = send(req("GET", "/abort")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "fault filter abort")
    );
    assert!(web_seen.lock().unwrap().is_empty());

    // Fault delay: forwarded after at least the configured delay.
    let started = std::time::Instant::now();
    let (status, _, body) = send(req("GET", "/delay")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web /delay"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // Retries: the first try gets 503, the retry 200; without retries the 503 reaches the client.
    let (status, _, body) = send(req("GET", "/retry")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "flaky /retry x-req=")
    );
    assert_eq!(flaky_count.load(Ordering::SeqCst), 2);
    let (status, _, _) = send(req("GET", "/noretry")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Redirect and direct response.
    let (status, headers, _) = send(req("GET", "/old/page?q=1")).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "http://app.example.com/new?q=1");
    let (status, _, body) = send(req("GET", "/teapot")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::IM_A_TEAPOT, "short and stout")
    );

    // Rewrite and header operations both ways.
    let (status, headers, body) = send(req("GET", "/api/v1/items")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "flaky /v2/items x-req=from-proxy")
    );
    assert_eq!(headers["x-resp"], "set-by-route");
    assert!(headers.get("x-from").is_none());

    // CORS: an allowed preflight is answered by the proxy; a disallowed origin is forwarded.
    let preflight = req("OPTIONS", "/cors")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST");
    let (status, headers, _) = send(preflight).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-max-age"], "3600");
    let (status, headers, body) =
        send(req("GET", "/cors").header("origin", "https://evil.example")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web /cors"));
    assert!(headers.get("access-control-allow-origin").is_none());

    proxy.shutdown().await;
}
