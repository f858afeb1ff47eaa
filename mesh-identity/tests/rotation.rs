//! Rotation without restarts, over loopback TCP: root rotation A -> A+B -> B with handshakes
//! running throughout, and an expired SVID replaced through the file watcher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Ca, certs_pem, key_pem, temp_dir};
use mesh_identity::{
    BundleFile, BundleSet, ClientAuth, Credentials, FileSources, FileWatcher, IdMatcher,
    TrustBundle, WatchError,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const SERVER: &str = "spiffe://td/ns/default/sa/server";
const CLIENT: &str = "spiffe://td/ns/default/sa/client";

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        Self {
            dir: temp_dir(name),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes via rename, as secret volume updates do, so a poll never sees half a file.
    fn write(&self, name: &str, contents: &str) {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    fn write_svid(&self, ca: &Ca, uri: &str) {
        let (chain, key) = ca.leaf(uri);
        self.write("cert.pem", &certs_pem(&chain));
        self.write("key.pem", &key_pem(&key));
    }

    fn sources(&self) -> FileSources {
        FileSources {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            bundles: vec![BundleFile {
                trust_domain: None,
                path: self.path("bundle"),
            }],
        }
    }
}

fn bundle(roots: &[&Ca]) -> BundleSet {
    let roots = roots.iter().map(|ca| ca.cert.clone()).collect();
    BundleSet::single(TrustBundle::from_roots("td".parse().unwrap(), roots).unwrap())
}

/// Serves TLS on a loopback port: each connection reads 4 bytes and answers "pong".
async fn serve(acceptor: TlsAcceptor, server_failures: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let failures = Arc::clone(&server_failures);
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let mut buf = [0u8; 4];
                        if tls.read_exact(&mut buf).await.is_ok() {
                            let _ = tls.write_all(b"pong").await;
                            let _ = tls.shutdown().await;
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    addr
}

/// One full exchange; returns the server's leaf certificate.
async fn exchange(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("server.invalid").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"pong");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_a_to_ab_to_b_fails_no_handshake() {
    let a = Ca::root("root-a");
    let b = Ca::root("root-b");

    // Server: driven by its files and a watcher. Client: driven by the API.
    let files = Files::new("rotation");
    files.write_svid(&a, SERVER);
    files.write("bundle", &certs_pem(std::slice::from_ref(&a.cert)));
    let (server, mut watcher) = FileWatcher::load(files.sources()).unwrap();
    let client = Credentials::new(a.svid(CLIENT), bundle(&[&a]));

    let server_cfg = server
        .server_config(ClientAuth::Required(IdMatcher::Any))
        .unwrap();
    let client_cfg = client
        .client_config(IdMatcher::Exact(SERVER.parse().unwrap()))
        .unwrap();
    let server_failures = Arc::new(AtomicUsize::new(0));
    let addr = serve(
        TlsAcceptor::from(Arc::new(server_cfg)),
        Arc::clone(&server_failures),
    )
    .await;
    let connector = TlsConnector::from(Arc::new(client_cfg));

    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (ok, failed, stop, connector) = (
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&stop),
            connector.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match exchange(&connector, addr).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
    };
    let wait_for_progress = || {
        let ok = Arc::clone(&ok);
        async move {
            let start = ok.load(Ordering::SeqCst);
            while ok.load(Ordering::SeqCst) < start + 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    wait_for_progress().await;
    // Phase 1: both sides trust A and B.
    files.write("bundle", &certs_pem(&[a.cert.clone(), b.cert.clone()]));
    assert!(watcher.poll_once().unwrap());
    client.rotate_bundles(bundle(&[&a, &b]));
    wait_for_progress().await;
    // Phase 2: both sides present SVIDs from B.
    files.write_svid(&b, SERVER);
    assert!(watcher.poll_once().unwrap());
    client.rotate_svid(b.svid(CLIENT));
    wait_for_progress().await;
    // Phase 3: A is dropped; the server's bundle now comes as SPIFFE JSON.
    files.write("bundle", &bundle(&[&b]).iter().next().unwrap().to_json());
    assert!(watcher.poll_once().unwrap());
    client.rotate_bundles(bundle(&[&b]));
    wait_for_progress().await;

    stop.store(true, Ordering::SeqCst);
    driver.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "client-side handshake failures"
    );
    assert_eq!(
        server_failures.load(Ordering::SeqCst),
        0,
        "server-side handshake failures"
    );
    assert!(ok.load(Ordering::SeqCst) >= 80);

    // The rotation really happened: the server now presents its B leaf, and A is distrusted.
    let leaf = exchange(&connector, addr).await.unwrap();
    assert_eq!(leaf, server.svid().chain()[0]);
    let stale = Credentials::new(a.svid(CLIENT), bundle(&[&a]));
    let stale = TlsConnector::from(Arc::new(stale.client_config(IdMatcher::Any).unwrap()));
    assert!(exchange(&stale, addr).await.is_err());
}

#[tokio::test]
async fn expired_svid_file_replaced_in_place_is_picked_up() {
    let ca = Ca::root("root");
    let files = Files::new("expired");
    let (chain, key) = ca.leaf_with(|p| {
        p.subject_alt_names = vec![common::uri_san(SERVER)];
        p.not_before = rcgen::date_time_ymd(2010, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    files.write("cert.pem", &certs_pem(&chain));
    files.write("key.pem", &key_pem(&key));
    files.write("bundle", &certs_pem(std::slice::from_ref(&ca.cert)));
    let (server, mut watcher) = FileWatcher::load(files.sources()).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(
        server
            .server_config(ClientAuth::Required(IdMatcher::Any))
            .unwrap(),
    ));
    let addr = serve(acceptor, Arc::new(AtomicUsize::new(0))).await;
    let client = Credentials::new(ca.svid(CLIENT), ca.bundle_set("td"));
    let connector = TlsConnector::from(Arc::new(client.client_config(IdMatcher::Any).unwrap()));

    let err = exchange(&connector, addr).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");

    assert!(!watcher.poll_once().unwrap(), "nothing changed yet");
    files.write_svid(&ca, SERVER);
    assert!(watcher.poll_once().unwrap());
    exchange(&connector, addr).await.unwrap();
}

#[test]
fn invalid_files_are_rejected_and_the_old_material_kept() {
    let ca = Ca::root("root");
    let files = Files::new("invalid");
    files.write_svid(&ca, SERVER);
    files.write("bundle", &certs_pem(std::slice::from_ref(&ca.cert)));
    let (creds, mut watcher) = FileWatcher::load(files.sources()).unwrap();
    let before = creds.svid().chain()[0].clone();

    // A key from another SVID: what a torn update looks like.
    let (_, other_key) = ca.leaf(SERVER);
    let (new_chain, _) = ca.leaf(SERVER);
    files.write("cert.pem", &certs_pem(&new_chain));
    files.write("key.pem", &key_pem(&other_key));
    assert!(matches!(
        watcher.poll_once(),
        Err(WatchError::Svid {
            source: mesh_identity::SvidError::KeyMismatch,
            ..
        })
    ));
    assert_eq!(creds.svid().chain()[0], before);

    files.write("bundle", "not a bundle");
    files.write_svid(&ca, SERVER);
    assert!(matches!(
        watcher.poll_once(),
        Err(WatchError::Bundle { .. })
    ));
    assert_eq!(creds.svid().chain()[0], before);

    std::fs::remove_file(Path::new(&files.path("bundle"))).unwrap();
    assert!(matches!(watcher.poll_once(), Err(WatchError::Io { .. })));

    files.write("bundle", &certs_pem(std::slice::from_ref(&ca.cert)));
    assert!(watcher.poll_once().unwrap());
    assert_ne!(creds.svid().chain()[0], before);
}
