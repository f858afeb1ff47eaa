//! mTLS handshakes with our verifiers: identity checks, STRICT/PERMISSIVE, resumption,
//! multi-cluster and federated trust. In-memory unless the behaviour needs sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Ca, handshake};
use mesh_identity::{
    BundleSet, ClientAuth, Credentials, IdMatcher, PeerRejected, SpiffeId, SpiffeServerVerifier,
    Svid, TrustBundle, VerifyError, peer_id,
};
use rustls::{CertificateError, ClientConfig};
use rustls_pki_types::CertificateDer;

const SERVER: &str = "spiffe://td/ns/default/sa/server";
const CLIENT: &str = "spiffe://td/ns/default/sa/client";

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn creds(ca: &Ca, uri: &str, bundles: BundleSet) -> Credentials {
    Credentials::new(ca.svid(uri), bundles)
}

fn rejection(err: &rustls::Error) -> PeerRejected {
    PeerRejected::from_rustls(err)
        .cloned()
        .unwrap_or_else(|| panic!("not a PeerRejected: {err:?}"))
}

struct Pair {
    client: Arc<ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

fn pair(client: &Credentials, expect: IdMatcher, server: &Credentials, auth: ClientAuth) -> Pair {
    Pair {
        client: Arc::new(client.client_config(expect).unwrap()),
        server: Arc::new(server.server_config(auth).unwrap()),
    }
}

#[test]
fn both_sides_learn_the_verified_peer_id() {
    let ca = Ca::root("root");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(&ca, SERVER, ca.bundle_set("td"));
    let p = pair(
        &c,
        IdMatcher::Exact(id(SERVER)),
        &s,
        ClientAuth::Required(IdMatcher::Any),
    );
    let (cc, sc) = handshake(&p.client, &p.server).unwrap();
    assert_eq!(peer_id(&cc), Some(id(SERVER)));
    assert_eq!(peer_id(&sc), Some(id(CLIENT)));
}

#[test]
fn client_refuses_a_server_with_an_unexpected_id() {
    let ca = Ca::root("root");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(
        &ca,
        "spiffe://td/ns/default/sa/impostor",
        ca.bundle_set("td"),
    );
    let p = pair(
        &c,
        IdMatcher::Exact(id(SERVER)),
        &s,
        ClientAuth::Required(IdMatcher::Any),
    );
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        rejection(&err),
        PeerRejected::NotAllowed(id("spiffe://td/ns/default/sa/impostor"))
    );
}

#[test]
fn server_refuses_a_client_with_a_disallowed_id() {
    let ca = Ca::root("root");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(&ca, SERVER, ca.bundle_set("td"));
    let allowed = IdMatcher::Exact(id("spiffe://td/ns/default/sa/someone-else"));
    let p = pair(&c, IdMatcher::Any, &s, ClientAuth::Required(allowed));
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(rejection(&err), PeerRejected::NotAllowed(id(CLIENT)));
}

#[test]
fn server_name_is_not_checked_only_the_spiffe_id() {
    // The in-memory driver connects to "workload.invalid", which is in no certificate.
    let ca = Ca::root("root");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(&ca, SERVER, ca.bundle_set("td"));
    let p = pair(
        &c,
        IdMatcher::Exact(id(SERVER)),
        &s,
        ClientAuth::Required(IdMatcher::Any),
    );
    assert!(handshake(&p.client, &p.server).is_ok());
}

fn anonymous_client(trust: &Credentials, expect: IdMatcher) -> Arc<ClientConfig> {
    let verifier = SpiffeServerVerifier::new(trust.clone(), expect);
    Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(trust.provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
    )
}

#[test]
fn strict_requires_a_client_certificate_and_permissive_does_not() {
    let ca = Ca::root("root");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(&ca, SERVER, ca.bundle_set("td"));
    let anon = anonymous_client(&c, IdMatcher::Any);

    let strict = Arc::new(
        s.server_config(ClientAuth::Required(IdMatcher::Any))
            .unwrap(),
    );
    let err = handshake(&anon, &strict).unwrap_err();
    assert_eq!(err, rustls::Error::NoCertificatesPresented);

    let permissive = Arc::new(
        s.server_config(ClientAuth::Optional(IdMatcher::Any))
            .unwrap(),
    );
    let (_, sc) = handshake(&anon, &permissive).unwrap();
    assert_eq!(peer_id(&sc), None);

    // A certificate presented under PERMISSIVE is still verified.
    let stranger = Ca::root("stranger");
    let bad = creds(&stranger, CLIENT, ca.bundle_set("td"));
    let bad_client = Arc::new(bad.client_config(IdMatcher::Any).unwrap());
    let err = handshake(&bad_client, &permissive).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn a_second_connection_is_fully_verified_again() {
    // Resumption would let the second handshake skip certificate verification; after the
    // client stops trusting the server's root, the reconnect must fail.
    let ca = Ca::root("root");
    let other = Ca::root("other");
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = creds(&ca, SERVER, ca.bundle_set("td"));
    let p = pair(
        &c,
        IdMatcher::Exact(id(SERVER)),
        &s,
        ClientAuth::Required(IdMatcher::Any),
    );
    let (mut cc, mut sc) = handshake(&p.client, &p.server).unwrap();
    // Let the client receive anything the server sends after the handshake (tickets).
    let mut buf = Vec::new();
    sc.write_tls(&mut buf).unwrap();
    cc.read_tls(&mut buf.as_slice()).unwrap();
    cc.process_new_packets().unwrap();

    c.rotate_bundles(other.bundle_set("td"));
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    // Same from the server's side.
    c.rotate_bundles(ca.bundle_set("td"));
    handshake(&p.client, &p.server).unwrap();
    s.rotate_bundles(other.bundle_set("td"));
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn expired_svid_is_refused_then_replaced_in_place() {
    let ca = Ca::root("root");
    let (chain, key) = ca.leaf_with(|p| {
        p.subject_alt_names = vec![common::uri_san(SERVER)];
        p.not_before = rcgen::date_time_ymd(2010, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    let expired = Svid::from_der(chain, key).unwrap();
    assert!(expired.is_expired(rustls_pki_types::UnixTime::now()));
    let c = creds(&ca, CLIENT, ca.bundle_set("td"));
    let s = Credentials::new(expired, ca.bundle_set("td"));
    let p = pair(
        &c,
        IdMatcher::Exact(id(SERVER)),
        &s,
        ClientAuth::Required(IdMatcher::Any),
    );
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );

    // Same configs, new SVID: the next handshake succeeds.
    s.rotate_svid(ca.svid(SERVER));
    handshake(&p.client, &p.server).unwrap();
}

fn pem(der: &CertificateDer<'_>) -> String {
    common::certs_pem(std::slice::from_ref(der))
}

/// One cluster of Istio's plug-in CA layout, with its files as PEM text.
struct Cluster {
    ca: Ca,
    /// root-cert.pem
    root_cert: String,
    /// cert-chain.pem: the intermediate, then the root.
    cert_chain: String,
}

fn cluster(root: &Ca, name: &str) -> Cluster {
    let ca = root.intermediate(name);
    Cluster {
        root_cert: pem(&root.cert),
        cert_chain: pem(&ca.cert) + &pem(&root.cert),
        ca,
    }
}

/// A workload of `cluster` loaded the way a proxy would: leaf PEM + the cluster's
/// cert-chain.pem, trust from root-cert.pem.
fn workload(cluster: &Cluster, uri: &str) -> Credentials {
    let (chain, key) = cluster.ca.leaf(uri);
    let chain_pem = pem(&chain[0]) + &cluster.cert_chain;
    let key_pem = common::key_pem(&key);
    let svid = Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let bundle = TrustBundle::from_pem(
        "cluster.local".parse().unwrap(),
        cluster.root_cert.as_bytes(),
    )
    .unwrap();
    Credentials::new(svid, BundleSet::single(bundle))
}

#[test]
fn plug_in_ca_clusters_under_one_root_accept_each_other() {
    let root = Ca::root("mesh-root");
    let east = cluster(&root, "east");
    let west = cluster(&root, "west");
    let a = workload(&east, "spiffe://cluster.local/ns/shop/sa/cart");
    let b = workload(&west, "spiffe://cluster.local/ns/shop/sa/pay");
    assert_eq!(a.svid().chain().len(), 3);
    let any = || ClientAuth::Required(IdMatcher::Any);
    let td = || IdMatcher::MemberOf("cluster.local".parse().unwrap());
    handshake(
        &pair(&a, td(), &b, any()).client,
        &pair(&a, td(), &b, any()).server,
    )
    .unwrap();
    let p = pair(&b, td(), &a, any());
    let (cc, sc) = handshake(&p.client, &p.server).unwrap();
    assert_eq!(
        peer_id(&cc).unwrap().to_string(),
        "spiffe://cluster.local/ns/shop/sa/cart"
    );
    assert_eq!(
        peer_id(&sc).unwrap().to_string(),
        "spiffe://cluster.local/ns/shop/sa/pay"
    );

    // A workload whose cluster CA hangs off a different root is refused by both roles.
    let rogue_root = Ca::root("rogue-root");
    let rogue = workload(
        &cluster(&rogue_root, "rogue"),
        "spiffe://cluster.local/ns/shop/sa/cart",
    );
    let p = pair(&rogue, td(), &b, any());
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let p = pair(&b, td(), &rogue, any());
    let err = handshake(&p.client, &p.server).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn federated_domains_accept_each_other_only_where_allowed() {
    let a_root = Ca::root("a-root");
    let b_root = Ca::root("b-root");
    let mut federated = a_root.bundle_set("a.example");
    federated.insert(b_root.bundle("b.example"));

    let server = Credentials::new(a_root.svid("spiffe://a.example/api"), federated.clone());
    // The server admits its own domain plus exactly one identity of the federated domain.
    let allowed = IdMatcher::AnyOf(vec![
        IdMatcher::MemberOf("a.example".parse().unwrap()),
        IdMatcher::Exact(id("spiffe://b.example/billing")),
    ]);
    let server_cfg = Arc::new(server.server_config(ClientAuth::Required(allowed)).unwrap());
    let client = |root: &Ca, uri: &str| {
        let c = Credentials::new(root.svid(uri), federated.clone());
        Arc::new(
            c.client_config(IdMatcher::Exact(id("spiffe://a.example/api")))
                .unwrap(),
        )
    };

    handshake(&client(&b_root, "spiffe://b.example/billing"), &server_cfg).unwrap();
    handshake(&client(&a_root, "spiffe://a.example/web"), &server_cfg).unwrap();
    let err = handshake(&client(&b_root, "spiffe://b.example/intruder"), &server_cfg).unwrap_err();
    assert_eq!(
        rejection(&err),
        PeerRejected::NotAllowed(id("spiffe://b.example/intruder"))
    );
    // b's CA cannot mint identities in a.
    let err = handshake(&client(&b_root, "spiffe://a.example/web"), &server_cfg).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    // Without b's bundle, b's identities are unknown even if the matcher would allow them.
    let lonely = Credentials::new(
        a_root.svid("spiffe://a.example/api"),
        a_root.bundle_set("a.example"),
    );
    let cfg = Arc::new(
        lonely
            .server_config(ClientAuth::Required(IdMatcher::Any))
            .unwrap(),
    );
    let err = handshake(&client(&b_root, "spiffe://b.example/billing"), &cfg).unwrap_err();
    assert_eq!(
        rejection(&err),
        PeerRejected::Verify(VerifyError::NoBundle("b.example".parse().unwrap()))
    );
}
