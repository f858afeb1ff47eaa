//! Gateway TLS ports end to end: SIMPLE termination into the HTTP routing stack, SNI/Host
//! consistency (421), PASSTHROUGH by SNI to a TLS backend, and unknown SNIs refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;

use http::StatusCode;
use support::{Pki, TempDir, backend, get_tls, start, tls_backend};

fn config(port: u16, crt: &Path, key: &Path, web: SocketAddr, secret: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ['*.example.com']
    tls: {{mode: SIMPLE, serverCertificate: '{crt}', privateKey: '{key}'}}
  - port: {{number: {port}, name: tls, protocol: TLS}}
    hosts: [secret.internal.net]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: ['*.example.com']
  gateways: [public]
  http:
  - route: [{{destination: {{host: web.internal}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secret}}
spec:
  hosts: [secret.internal.net]
  gateways: [public]
  tls:
  - match: [{{port: {port}, sniHosts: [secret.internal.net]}}]
    route: [{{destination: {{host: secret.internal.net, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {web_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secret}}
spec:
  hosts: [secret.internal.net]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {secret_port}}}}}]
",
        crt = crt.display(),
        key = key.display(),
        web_port = web.port(),
        secret_port = secret.port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_terminates_passthrough_forwards_unknown_sni_is_refused() {
    let dir = TempDir::new("gw-tls");
    let certs = TempDir::new("gw-tls-certs");
    let pki = Pki::new(&certs);
    let (crt, key) = pki.server_cert(&certs, "wildcard", "*.example.com");
    let (secret_crt, secret_key) = pki.server_cert(&certs, "secret", "secret.internal.net");
    let (web, _) = backend("web").await;
    let secret = tls_backend("secret", &secret_crt, &secret_key).await;
    let (proxy, port) = start(&dir, |_| vec![], |p| config(p, &crt, &key, web, secret)).await;
    let client = pki.client();

    // SIMPLE: terminated here, routed by the HTTP stack.
    let (status, body) = get_tls(&client, port, "shop.example.com", "/cart")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web /cart"));

    // PASSTHROUGH: the backend's own certificate answers, through the gateway.
    let (status, body) = get_tls(&client, port, "secret.internal.net", "/s")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "secret /s"));

    // No server for the SNI: the handshake is closed.
    assert!(get_tls(&client, port, "other.org", "/").await.is_none());

    proxy.shutdown().await;
}
