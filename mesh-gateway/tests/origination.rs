//! TLS origination from DestinationRule `tls` settings, through mesh-mirror's upstream, to a
//! real HTTPS server on loopback: SNI, CA and SAN checks, MUTUAL client certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Ca, pem, temp_dir as dir};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_gateway::origination::TlsOrigination;
use mesh_gateway::{Bundle, ServiceEntryRegistry};
use mesh_mirror::{DestinationRules, ServiceRegistry, SharedDestinationRules, Upstream};
use mesh_routing::Destination;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// An HTTPS server that answers with the SNI it saw; with `client_ca`, it requires client certs.
async fn https_server(ca: &Ca, client_ca: Option<&Ca>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let (chain, key) = ca.leaf(&["api.example.com"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(c) => {
            let mut roots = RootCertStore::empty();
            roots.add(c.der.clone()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                seen.lock().unwrap().push(sni.clone());
                let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                    let sni = sni.clone();
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                            "secure hello via {sni}"
                        )))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A ServiceEntry for api.example.com on `addr` and a DestinationRule with `tls`.
async fn send(addr: SocketAddr, tls: &str) -> Result<(u16, String), String> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: api}}\nspec:\n  hosts: [api.example.com]\n  ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{https: {}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: api}}\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls: {tls}\n",
        addr.port()
    );
    let bundle = Bundle::load(&yaml, "t.yaml", "default").unwrap();
    let registry: Arc<dyn ServiceRegistry> =
        Arc::new(ServiceEntryRegistry::new(&bundle.service_entries));
    let rules =
        SharedDestinationRules::new(DestinationRules::new(bundle.destination_rules.clone()));
    let upstream: Upstream<Full<Bytes>, TlsOrigination> =
        Upstream::with_connector(rules, registry, TlsOrigination::new());
    // Plain HTTP in; the upstream originates TLS.
    let mut req = http::Request::get("http://api.example.com/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut().insert(Destination {
        host: "api.example.com".into(),
        subset: None,
        port: Some(443),
    });
    match upstream.oneshot(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Ok((
                status,
                String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
                    .into_owned(),
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn simple_originates_tls_with_sni_and_ca_check() {
    let ca = Ca::new();
    let d = dir("orig-simple");
    std::fs::write(d.join("ca.pem"), pem("CERTIFICATE", &ca.der)).unwrap();
    let (addr, seen) = https_server(&ca, None).await;
    let ca_path = d.join("ca.pem").display().to_string();
    let got = send(
        addr,
        &format!("{{mode: SIMPLE, caCertificates: '{ca_path}'}}"),
    )
    .await
    .unwrap();
    assert_eq!(got, (200, "secure hello via api.example.com".to_string()));
    assert_eq!(seen.lock().unwrap().as_slice(), ["api.example.com"]);
    // The SAN check passes with the right name and fails with another.
    let ok = send(
        addr,
        &format!(
            "{{mode: SIMPLE, caCertificates: '{ca_path}', subjectAltNames: [api.example.com]}}"
        ),
    )
    .await;
    assert_eq!(ok.unwrap().0, 200);
    assert!(send(addr, &format!("{{mode: SIMPLE, caCertificates: '{ca_path}', subjectAltNames: [other.example.com]}}")).await.is_err());
    // An explicit SNI that the certificate does not cover fails the name check.
    assert!(
        send(
            addr,
            &format!("{{mode: SIMPLE, caCertificates: '{ca_path}', sni: wrong.example.com}}")
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn a_server_under_another_ca_is_refused() {
    let (server_ca, our_ca) = (Ca::new(), Ca::new());
    let d = dir("orig-wrongca");
    std::fs::write(d.join("ca.pem"), pem("CERTIFICATE", &our_ca.der)).unwrap();
    let (addr, _) = https_server(&server_ca, None).await;
    let err = send(
        addr,
        &format!(
            "{{mode: SIMPLE, caCertificates: '{}'}}",
            d.join("ca.pem").display()
        ),
    )
    .await
    .unwrap_err();
    // A connect failure (the TLS handshake), not a reset after the request was sent.
    assert!(
        err.contains("connecting to") && err.contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let ca = Ca::new();
    let d = dir("orig-mutual");
    std::fs::write(d.join("ca.pem"), pem("CERTIFICATE", &ca.der)).unwrap();
    let (chain, key) = ca.leaf(&["client.example.com"]);
    std::fs::write(d.join("client.pem"), pem("CERTIFICATE", &chain[0])).unwrap();
    std::fs::write(d.join("client.key"), pem("PRIVATE KEY", key.secret_der())).unwrap();
    let (addr, _) = https_server(&ca, Some(&ca)).await;
    let ca_path = d.join("ca.pem").display().to_string();
    let mutual = format!(
        "{{mode: MUTUAL, caCertificates: '{ca_path}', clientCertificate: '{}', privateKey: '{}'}}",
        d.join("client.pem").display(),
        d.join("client.key").display()
    );
    assert_eq!(send(addr, &mutual).await.unwrap().0, 200);
    // Without a client certificate the server refuses the handshake.
    assert!(
        send(
            addr,
            &format!("{{mode: SIMPLE, caCertificates: '{ca_path}'}}")
        )
        .await
        .is_err()
    );
}

#[test]
fn unusable_settings_are_errors_not_plaintext() {
    use mesh_gateway::origination::{OriginationError, client_config};
    use mesh_mirror::{ClientTls, TlsMode};
    let base = ClientTls {
        mode: TlsMode::Simple,
        client_certificate: None,
        private_key: None,
        ca_certificates: Some("/nonexistent/ca.pem".into()),
        credential_name: None,
        subject_alt_names: Vec::new(),
        sni: None,
        insecure_skip_verify: false,
    };
    assert!(matches!(
        client_config(&base, None, false),
        Err(OriginationError::File { .. })
    ));
    assert!(matches!(
        client_config(
            &ClientTls {
                insecure_skip_verify: true,
                ..base.clone()
            },
            None,
            false
        ),
        Err(OriginationError::InsecureSkipVerify)
    ));
    assert!(matches!(
        client_config(
            &ClientTls {
                mode: TlsMode::IstioMutual,
                ..base.clone()
            },
            None,
            false
        ),
        Err(OriginationError::NoMeshIdentity)
    ));
    assert!(matches!(
        client_config(
            &ClientTls {
                mode: TlsMode::Disable,
                ..base
            },
            None,
            false
        ),
        Ok(None)
    ));
}
