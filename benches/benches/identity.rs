//! mTLS handshakes per second over an in-memory transport, with mesh-identity's SPIFFE
//! verifiers against rustls's stock WebPki verifiers on the same keys, and SVID chain
//! verification time.
//!
//! `cargo bench -p mesh-benches --bench identity`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_identity::{
    BundleSet, ClientAuth, Credentials, IdMatcher, PeerRole, SpiffeId, Svid, TrustBundle,
    verify_svid_chain,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::Resumption;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

const DNS_NAME: &str = "server.mesh.test";

struct Ca {
    key: KeyPair,
    params: CertificateParams,
    cert: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str, parent: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Distinct names, so path building does not try the wrong issuer first.
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = match parent {
            None => params.self_signed(&key),
            Some(p) => params.signed_by(&key, &Issuer::from_params(&p.params, &p.key)),
        }
        .unwrap();
        Ca {
            cert: cert.der().clone(),
            key,
            params,
        }
    }

    /// A leaf with one URI SAN (the SPIFFE ID) and a DNS SAN, so both verifiers accept it.
    fn leaf(&self, uri: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![DNS_NAME.to_owned()]).unwrap();
        let uri = uri.try_into().unwrap();
        params.subject_alt_names.push(SanType::URI(uri));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }
}

fn svid(parts: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)) -> Svid {
    Svid::from_der(parts.0.clone(), parts.1.clone_key()).unwrap()
}

/// Runs one full handshake through memory buffers.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = ServerName::try_from(DNS_NAME).unwrap();
    let mut c = ClientConnection::new(Arc::clone(client), name).unwrap();
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    let mut buf = Vec::with_capacity(8 * 1024);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
    black_box((c, s));
}

struct Setup {
    root: Ca,
    server: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    client: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/server";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";

fn setup() -> Setup {
    let root = Ca::new("root", None);
    Setup {
        server: root.leaf(SERVER_ID),
        client: root.leaf(CLIENT_ID),
        root,
    }
}

fn spiffe_configs(s: &Setup) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let bundle =
        TrustBundle::from_roots("cluster.local".parse().unwrap(), vec![s.root.cert.clone()])
            .unwrap();
    let bundles = BundleSet::single(bundle);
    let server = Credentials::new(svid(&s.server), bundles.clone());
    let client = Credentials::new(svid(&s.client), bundles);
    let expected: SpiffeId = SERVER_ID.parse().unwrap();
    let client_cfg = client.client_config(IdMatcher::Exact(expected)).unwrap();
    let server_cfg = server
        .server_config(ClientAuth::Required(IdMatcher::Any))
        .unwrap();
    (Arc::new(client_cfg), Arc::new(server_cfg))
}

/// rustls's stock verifiers (DNS name check on the server, WebPKI chain checks both ways),
/// with resumption disabled as in ours so every handshake is a full one.
fn stock_configs(s: &Setup) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(s.root.cert.clone()).unwrap();
    let roots = Arc::new(roots);
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .unwrap();
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(s.server.0.clone(), s.server.1.clone_key())
        .unwrap();
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(s.client.0.clone(), s.client.1.clone_key())
        .unwrap();
    client.resumption = Resumption::disabled();
    (Arc::new(client), Arc::new(server))
}

fn handshakes(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("mtls_handshake");
    group.throughput(Throughput::Elements(1));
    let (client, server) = spiffe_configs(&s);
    group.bench_function("spiffe_verifiers", |b| {
        b.iter(|| handshake(&client, &server))
    });
    let (client, server) = stock_configs(&s);
    group.bench_function("rustls_webpki_verifiers", |b| {
        b.iter(|| handshake(&client, &server))
    });
    group.finish();
}

fn chain_verification(c: &mut Criterion) {
    let root = Ca::new("root", None);
    let inter = Ca::new("cluster-ca", Some(&root));
    let bundles = BundleSet::single(
        TrustBundle::from_roots("cluster.local".parse().unwrap(), vec![root.cert.clone()]).unwrap(),
    );
    let direct = root.leaf(CLIENT_ID).0;
    let mut via_intermediate = inter.leaf(CLIENT_ID).0;
    via_intermediate.push(inter.cert.clone());
    let now = UnixTime::now();
    let mut group = c.benchmark_group("svid_chain_verify");
    group.throughput(Throughput::Elements(1));
    for (name, chain) in [
        ("leaf_only", &direct),
        ("with_intermediate", &via_intermediate),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| verify_svid_chain(black_box(chain), &bundles, PeerRole::Client, now).unwrap())
        });
    }
    group.finish();
    c.bench_function("spiffe_id_parse", |b| {
        b.iter(|| black_box(CLIENT_ID).parse::<SpiffeId>())
    });
}

criterion_group!(benches, handshakes, chain_verification);
criterion_main!(benches);
