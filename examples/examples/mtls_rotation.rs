//! mTLS with SPIFFE identities and rotation without restarts: `mesh-identity` in a hyper server.
//!
//! Generates two roots (A and B) and X.509-SVIDs with rcgen, serves HTTP over mTLS on loopback
//! with rustls configs from `Credentials` (`PeerIdentityLayer` hands the client's verified
//! SPIFFE ID to the handler, which echoes it), and keeps handshaking from a client while both
//! sides rotate: trust A -> A+B, SVIDs from B, trust B only. Prints the peer ID the server saw
//! and the handshake counts of every phase, then shows that a client still on A is refused.
//!
//! `cargo run -p mesh-examples --example mtls_rotation`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use mesh_identity::{
    BundleSet, ClientAuth, Credentials, IdMatcher, PeerIdentity, PeerIdentityLayer, Svid,
    TrustBundle, server_peer_identity,
};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::{ServiceBuilder, service_fn};

type Error = Box<dyn std::error::Error + Send + Sync>;

const SERVER: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/productpage";

/// A root CA made for the example; a real mesh gets its SVIDs from a CA such as istiod.
struct Root {
    key: KeyPair,
    params: CertificateParams,
    cert: CertificateDer<'static>,
}

impl Root {
    fn new() -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self { key, params, cert })
    }

    /// An X.509-SVID for `id`: the SPIFFE ID as the only URI SAN, usable by clients and servers.
    fn svid(&self, id: &str) -> Result<Svid, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(id.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        let (chain, key) = (cert.pem(), key.serialize_pem());
        Ok(Svid::from_pem(chain.as_bytes(), key.as_bytes())?)
    }
}

/// The trust bundle of `cluster.local` with these roots.
fn trust(roots: &[&Root]) -> Result<BundleSet, Error> {
    let roots = roots.iter().map(|r| r.cert.clone()).collect();
    let bundle = TrustBundle::from_roots("cluster.local".parse()?, roots)?;
    Ok(BundleSet::single(bundle))
}

/// The handler: answers with the peer identity `PeerIdentityLayer` put into the request.
async fn echo_peer(
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let who = req.extensions().get::<PeerIdentity>();
    let who = who.map_or("anonymous".to_owned(), |p| p.0.to_string());
    Ok(http::Response::new(Full::from(who)))
}

/// Serves HTTP over mTLS: each request is answered with the peer SPIFFE ID the handler sees.
async fn serve(credentials: &Credentials, failures: Arc<AtomicUsize>) -> Result<SocketAddr, Error> {
    let peers = IdMatcher::MemberOf("cluster.local".parse()?);
    let config = credentials.server_config(ClientAuth::Required(peers))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, failures) = (acceptor.clone(), failures.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, SeqCst);
                    return;
                };
                let svc = ServiceBuilder::new()
                    .layer(PeerIdentityLayer::new(server_peer_identity(&tls)))
                    .service(service_fn(echo_peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One new connection, one mTLS handshake, one request; returns the ID the server saw.
async fn whoami(connector: &TlsConnector, addr: SocketAddr) -> Result<String, Error> {
    let tcp = TcpStream::connect(addr).await?;
    // The verifier checks the server's SPIFFE ID, never this name.
    let name = ServerName::try_from("reviews")?;
    let tls = connector.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("http://reviews/").body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (a, b) = (Root::new()?, Root::new()?);
    let server = Credentials::new(a.svid(SERVER)?, trust(&[&a])?);
    let client = Credentials::new(a.svid(CLIENT)?, trust(&[&a])?);
    let server_failures = Arc::new(AtomicUsize::new(0));
    let addr = serve(&server, server_failures.clone()).await?;
    // The configs read the credentials at each handshake, so rotations need no new config.
    let connector = TlsConnector::from(Arc::new(
        client.client_config(IdMatcher::Exact(SERVER.parse()?))?,
    ));
    println!("mTLS server {addr} as {SERVER}");
    println!("server saw peer: {}", whoami(&connector, addr).await?);

    // Handshakes run without pause while the main task rotates both sides.
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]); // ok, failed
    let driver = tokio::spawn({
        let (counts, connector) = (counts.clone(), connector.clone());
        async move {
            loop {
                let failed = whoami(&connector, addr).await.is_err();
                counts[usize::from(failed)].fetch_add(1, SeqCst);
            }
        }
    });
    const PHASES: [&str; 4] = ["start: all A", "trust A+B", "SVIDs from B", "trust B only"];
    for (phase, name) in PHASES.into_iter().enumerate() {
        for (side, id) in [(&server, SERVER), (&client, CLIENT)] {
            match phase {
                1 => side.rotate_bundles(trust(&[&a, &b])?),
                2 => side.rotate_svid(b.svid(id)?),
                3 => side.rotate_bundles(trust(&[&b])?),
                _ => {}
            }
        }
        let before = counts.each_ref().map(|c| c.load(SeqCst));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let [ok, failed] = [0, 1].map(|i| counts[i].load(SeqCst) - before[i]);
        println!("{name:<14} handshakes ok {ok:>3}, failed {failed}");
    }
    // Read before stopping the driver: an aborted handshake is not a rotation failure.
    let [ok, failed] = counts.each_ref().map(|c| c.load(SeqCst));
    let server_failed = server_failures.load(SeqCst);
    driver.abort();
    println!("total: {ok} ok, failed: {failed} client-side, {server_failed} server-side");
    println!("server saw peer: {}", whoami(&connector, addr).await?);

    let stale = Credentials::new(a.svid(CLIENT)?, trust(&[&a])?);
    let stale = TlsConnector::from(Arc::new(stale.client_config(IdMatcher::Any)?));
    match whoami(&stale, addr).await {
        Ok(who) => return Err(format!("a client on root A got through as {who}").into()),
        Err(e) => println!("a client still on root A is refused: {e}"),
    }
    if failed + server_failed > 0 {
        return Err("handshakes failed during rotation".into());
    }
    Ok(())
}
