//! Shared pieces of the data-plane tests: loopback backends, a client, temp config dirs and
//! an in-process proxy started on free ports.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod grpc;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser as _;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_examples::proxy::{Cli, Proxy, RunningProxy, StartError};
use tokio::net::TcpListener;

/// What a backend saw: (path, host header) per request.
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A loopback HTTP backend answering `NAME PATH`; `/slow...` answers after 600 ms.
pub async fn backend(name: &'static str) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let host = (req.headers().get("host"))
                        .map(|h| h.to_str().unwrap_or("").to_string())
                        .unwrap_or_default();
                    log.lock().unwrap().push((path.clone(), host));
                    if path.starts_with("/slow") {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "{name} {path}"
                    )))))
                }
            });
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .into_owned(),
            );
        }
    });
    (addr, seen)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mesh-dataplane-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a proxy in-process with `flags(port)` (plus `--no-access-log`,
/// `--admin 127.0.0.1:0`, `--bind 127.0.0.1`) and `config(port)` written to `dir`, for a
/// fresh free port. Retries once when the port was taken in between.
pub async fn start(
    dir: &TempDir,
    flags: impl Fn(u16) -> Vec<String>,
    config: impl Fn(u16) -> String,
) -> (RunningProxy, u16) {
    for attempt in 0..2 {
        let port = free_port();
        dir.write("config.yaml", &config(port));
        let mut args = vec![
            "mesh-proxy".to_string(),
            "--no-access-log".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--config".into(),
            dir.path().display().to_string(),
        ];
        args.extend(flags(port));
        let run = Cli::try_parse_from(args).unwrap().run;
        match Proxy::start(run).await {
            Ok(p) => return (p, port),
            Err(StartError::Bind { .. }) if attempt == 0 => continue,
            Err(e) => panic!("proxy did not start: {e}"),
        }
    }
    unreachable!()
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` on `port` with `Host: host`; (status, location, body). Bounded by 10 s.
pub async fn get(port: u16, host: &str, path: &str) -> (StatusCode, String, String) {
    let req = Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let location = (resp.headers().get("location"))
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `f` every 20 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test CA writing SPIFFE SVIDs as PEM files into a directory.
pub struct Pki {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    der: Vec<u8>,
    /// The CA certificate (the trust bundle) file.
    pub bundle: PathBuf,
}

impl Pki {
    pub fn new(dir: &TempDir) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test root");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let bundle = dir.write("ca.pem", &cert.pem());
        Self {
            key,
            params,
            der: cert.der().to_vec(),
            bundle,
        }
    }

    /// A server certificate for `dns` written as `NAME.crt`/`NAME.key`; returns the paths.
    pub fn server_cert(&self, dir: &TempDir, name: &str, dns: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![dns.to_string()]).unwrap();
        let cert = params
            .signed_by(&key, &rcgen::Issuer::from_params(&self.params, &self.key))
            .unwrap();
        (
            dir.write(&format!("{name}.crt"), &cert.pem()),
            dir.write(&format!("{name}.key"), &key.serialize_pem()),
        )
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> Vec<u8> {
        self.der.clone()
    }

    /// A TLS client trusting this CA only (HTTP/1.1 ALPN).
    pub fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone().into()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Writes an SVID for `spiffe_id` as `NAME.pem` and `NAME.key`; returns the flags
    /// `--cert --key --trust-bundle` for it.
    pub fn svid_flags(&self, dir: &TempDir, name: &str, spiffe_id: &str) -> Vec<String> {
        use rcgen::{
            CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // As Istio's SVIDs: the identity is the URI SAN, the subject is empty.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        let cert_path = dir.write(&format!("{name}.pem"), &cert.pem());
        let key_path = dir.write(&format!("{name}.key"), &key.serialize_pem());
        vec![
            "--cert".into(),
            cert_path.display().to_string(),
            "--key".into(),
            key_path.display().to_string(),
            "--trust-bundle".into(),
            self.bundle.display().to_string(),
        ]
    }
}

/// GET `path` over TLS with SNI and Host `host` to `127.0.0.1:port`; `None` when the TLS
/// connection is refused or closed. Bounded by 10 s.
pub async fn get_tls(
    tls: &tokio_rustls::TlsConnector,
    port: u16,
    host: &str,
    path: &str,
) -> Option<(StatusCode, String)> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let stream = tls.connect(name, tcp).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("TLS request timed out")
}

/// A TLS server side presenting the PEM `cert` chain and `key` (no client auth, no ALPN).
pub fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject as _;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A loopback HTTPS backend with `cert`/`key`, answering `NAME PATH`.
pub async fn tls_backend(name: &'static str, cert: &Path, key: &Path) -> SocketAddr {
    let acceptor = tls_acceptor(cert, key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let text = format!("{name} {}", req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}
