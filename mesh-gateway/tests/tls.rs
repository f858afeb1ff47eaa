//! TLS ports over real loopback sockets: SNI selection, SIMPLE, MUTUAL (with SAN checks),
//! PASSTHROUGH with the bytes arriving intact at a TLS backend, versions, unknown SNI, bad files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Ca, pem, temp_dir};
use mesh_gateway::tls::{AcceptError, Accepted, CredentialDir, TlsPort, TlsSetupError};
use mesh_gateway::{Gateway, ServerTable};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Writes `<dir>/<name>/tls.crt`, `tls.key` and (optionally) `ca.crt`.
fn write_credential(
    dir: &Path,
    name: &str,
    leaf: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    ca: Option<&Ca>,
) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tls.crt"), pem("CERTIFICATE", &leaf.0[0])).unwrap();
    std::fs::write(d.join("tls.key"), pem("PRIVATE KEY", leaf.1.secret_der())).unwrap();
    if let Some(ca) = ca {
        std::fs::write(d.join("ca.crt"), pem("CERTIFICATE", &ca.der)).unwrap();
    }
}

fn gateway(servers: &str) -> Arc<ServerTable> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: edge}}\nspec:\n  servers:\n{servers}"
    );
    let docs = mesh_routing::parse_documents(&yaml, "gw.yaml", "default").unwrap();
    Arc::new(ServerTable::new(&[
        Gateway::from_document(&docs[0]).unwrap()
    ]))
}

fn client(
    ca: &Ca,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    tls12_only: bool,
) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.roots());
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Accepts one connection on `port`, answers "hello <sni>" on terminated streams, and
/// returns what `accept` said.
async fn serve_once(
    tls: TlsPort,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<String, AcceptError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        match tls.accept(stream).await? {
            Accepted::Terminated {
                mut stream,
                sni,
                server,
                ..
            } => {
                let alpn = stream
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let version = format!("{:?}", stream.get_ref().1.protocol_version());
                stream
                    .write_all(format!("hello {}", sni.unwrap_or_default()).as_bytes())
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                Ok(format!(
                    "terminated {:?} {} {:?} {version}",
                    server.tls.unwrap().mode,
                    server.port,
                    alpn
                ))
            }
            Accepted::Passthrough { hello, .. } => {
                Ok(format!("passthrough {:?}", hello.server_name))
            }
        }
    });
    (addr, task)
}

async fn connect(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
    sni: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn simple_server_is_chosen_by_sni_and_terminates() {
    let ca = Ca::new();
    let dir = temp_dir("tls-simple");
    write_credential(&dir, "a-cert", &ca.leaf(&["a.example.com"]), None);
    write_credential(&dir, "b-cert", &ca.leaf(&["b.example.com"]), None);
    let table = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: SIMPLE, credentialName: a-cert}\n  - port: {number: 443, protocol: HTTPS}\n    hosts: [b.example.com]\n    tls: {mode: SIMPLE, credentialName: b-cert}\n",
    );
    for name in ["a.example.com", "b.example.com"] {
        let port = TlsPort::new(table.clone(), 443, &CredentialDir(dir.clone()), None).unwrap();
        let (addr, server) = serve_once(port).await;
        // The client only trusts the CA and checks the name: the right certificate was served.
        assert_eq!(
            connect(addr, &client(&ca, None, false), name)
                .await
                .unwrap(),
            format!("hello {name}")
        );
        assert_eq!(
            server.await.unwrap().unwrap(),
            "terminated Simple 443 Some(\"h2\") Some(TLSv1_3)"
        );
    }
}

#[tokio::test]
async fn unknown_sni_closes_the_handshake() {
    let ca = Ca::new();
    let dir = temp_dir("tls-unknown");
    write_credential(&dir, "a-cert", &ca.leaf(&["a.example.com"]), None);
    let table = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: SIMPLE, credentialName: a-cert}\n",
    );
    let (addr, server) =
        serve_once(TlsPort::new(table, 443, &CredentialDir(dir), None).unwrap()).await;
    assert!(
        connect(addr, &client(&ca, None, false), "other.example.com")
            .await
            .is_err()
    );
    assert!(
        matches!(server.await.unwrap(), Err(AcceptError::UnknownSni(Some(name))) if name == "other.example.com")
    );
}

#[tokio::test]
async fn mutual_requires_a_client_certificate_with_an_allowed_san() {
    let ca = Ca::new();
    let dir = temp_dir("tls-mutual");
    write_credential(&dir, "m", &ca.leaf(&["m.example.com"]), Some(&ca));
    let table = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [m.example.com]\n    tls: {mode: MUTUAL, credentialName: m, subjectAltNames: [allowed.client]}\n",
    );
    let tls = || TlsPort::new(table.clone(), 443, &CredentialDir(dir.clone()), None).unwrap();

    let (addr, server) = serve_once(tls()).await;
    assert!(
        connect(addr, &client(&ca, None, false), "m.example.com")
            .await
            .is_err(),
        "no client cert"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AcceptError::Handshake(_))
    ));

    let (addr, server) = serve_once(tls()).await;
    assert!(
        connect(
            addr,
            &client(&ca, Some(ca.leaf(&["other.client"])), false),
            "m.example.com"
        )
        .await
        .is_err(),
        "wrong SAN"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AcceptError::Handshake(_))
    ));

    let (addr, server) = serve_once(tls()).await;
    let got = connect(
        addr,
        &client(&ca, Some(ca.leaf(&["allowed.client"])), false),
        "m.example.com",
    )
    .await
    .unwrap();
    assert_eq!(got, "hello m.example.com");
    assert!(
        server
            .await
            .unwrap()
            .unwrap()
            .starts_with("terminated Mutual")
    );
}

#[tokio::test]
async fn passthrough_bytes_reach_the_backend_intact() {
    let ca = Ca::new();
    // The backend terminates TLS itself; the gateway never sees plaintext.
    let (chain, key) = ca.leaf(&["db.example.com"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let backend_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = backend.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(Arc::new(backend_config))
            .accept(tcp)
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"backend got ").await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.shutdown().await.unwrap();
    });

    let table = gateway(
        "  - port: {number: 443, protocol: TLS}\n    hosts: [db.example.com]\n    tls: {mode: PASSTHROUGH}\n",
    );
    let port = TlsPort::new(table, 443, &CredentialDir(PathBuf::new()), None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(Accepted::Passthrough {
            mut stream, hello, ..
        }) = port.accept(tcp).await
        else {
            panic!("expected passthrough")
        };
        assert_eq!(hello.server_name.as_deref(), Some("db.example.com"));
        let mut upstream = TcpStream::connect(backend_addr).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
    });

    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client(&ca, None, false)
        .connect(ServerName::try_from("db.example.com").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping!").await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "backend got ping!");
}

#[tokio::test]
async fn protocol_versions_are_honoured() {
    let ca = Ca::new();
    let dir = temp_dir("tls-versions");
    write_credential(&dir, "v", &ca.leaf(&["v.example.com"]), None);
    let table = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [v.example.com]\n    tls: {mode: SIMPLE, credentialName: v, maxProtocolVersion: TLSV1_2}\n",
    );
    let (addr, server) =
        serve_once(TlsPort::new(table.clone(), 443, &CredentialDir(dir.clone()), None).unwrap())
            .await;
    connect(addr, &client(&ca, None, false), "v.example.com")
        .await
        .unwrap();
    assert!(server.await.unwrap().unwrap().ends_with("Some(TLSv1_2)"));

    let table13 = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [v.example.com]\n    tls: {mode: SIMPLE, credentialName: v, minProtocolVersion: TLSV1_3}\n",
    );
    let (addr, server) =
        serve_once(TlsPort::new(table13, 443, &CredentialDir(dir), None).unwrap()).await;
    assert!(
        connect(addr, &client(&ca, None, true), "v.example.com")
            .await
            .is_err(),
        "a TLS 1.2-only client is refused"
    );
    assert!(matches!(
        server.await.unwrap(),
        Err(AcceptError::Handshake(_))
    ));
}

#[test]
fn missing_or_bad_credential_files_name_the_file() {
    let dir = temp_dir("tls-bad");
    let table = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: [x.example.com]\n    tls: {mode: SIMPLE, credentialName: nope}\n",
    );
    let err = TlsPort::new(table.clone(), 443, &CredentialDir(dir.clone()), None).unwrap_err();
    assert!(
        matches!(&err, TlsSetupError::File { path, .. } if path.ends_with("nope/tls.crt")),
        "{err}"
    );
    std::fs::create_dir_all(dir.join("nope")).unwrap();
    std::fs::write(dir.join("nope/tls.crt"), "not pem").unwrap();
    let err = TlsPort::new(table.clone(), 443, &CredentialDir(dir.clone()), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no CERTIFICATE block",
            dir.join("nope/tls.crt").display()
        )
    );
    let istio = gateway(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: ISTIO_MUTUAL}\n",
    );
    assert!(matches!(
        TlsPort::new(istio, 443, &CredentialDir(dir), None),
        Err(TlsSetupError::NoMeshIdentity)
    ));
}
