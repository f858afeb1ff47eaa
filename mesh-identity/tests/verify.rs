//! X.509-SVID chain verification: one test per failure, with generated PKI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ca, uri_san};
use mesh_identity::{BundleSet, IdError, PeerRole, VerifyError, verify_svid_chain};
use rcgen::{BasicConstraints, IsCa, KeyUsagePurpose, SanType, date_time_ymd};
use rustls_pki_types::{CertificateDer, UnixTime};

const ID: &str = "spiffe://td/ns/default/sa/sleep";

fn verify(chain: &[CertificateDer<'_>], bundles: &BundleSet) -> Result<String, VerifyError> {
    verify_svid_chain(chain, bundles, PeerRole::Client, UnixTime::now()).map(|id| id.to_string())
}

#[test]
fn valid_svid_returns_its_id() {
    let ca = Ca::root("root");
    let (chain, _) = ca.leaf(ID);
    assert_eq!(verify(&chain, &ca.bundle_set("td")), Ok(ID.to_owned()));
}

#[test]
fn intermediates_are_followed_to_the_root() {
    let root = Ca::root("root");
    let inter = root.intermediate("cluster-1").intermediate("nested");
    let (chain, _) = inter.leaf(ID);
    assert_eq!(chain.len(), 3);
    assert_eq!(verify(&chain, &root.bundle_set("td")), Ok(ID.to_owned()));
    // Without the intermediates the path cannot be built.
    assert_eq!(
        verify(&chain[..1], &root.bundle_set("td")),
        Err(VerifyError::UnknownAuthority)
    );
}

#[test]
fn each_failure_has_its_own_error() {
    let ca = Ca::root("root");
    let bundles = ca.bundle_set("td");
    let leaf = |edit: &dyn Fn(&mut rcgen::CertificateParams)| ca.leaf_with(|p| edit(p)).0;
    let cases: Vec<(&str, Vec<CertificateDer<'static>>, VerifyError)> = vec![
        ("empty chain", vec![], VerifyError::EmptyChain),
        (
            "no URI SAN",
            leaf(&|p| p.subject_alt_names = vec![SanType::DnsName("a.b".try_into().unwrap())]),
            VerifyError::NoUriSan,
        ),
        (
            "two URI SANs",
            leaf(&|p| p.subject_alt_names = vec![uri_san(ID), uri_san("spiffe://td/other")]),
            VerifyError::MultipleUriSans(2),
        ),
        (
            "not a SPIFFE ID",
            leaf(&|p| p.subject_alt_names = vec![uri_san("https://td/x")]),
            VerifyError::InvalidSpiffeId {
                uri: "https://td/x".into(),
                source: IdError::WrongScheme,
            },
        ),
        (
            "no bundle",
            leaf(&|p| p.subject_alt_names = vec![uri_san("spiffe://elsewhere/x")]),
            VerifyError::NoBundle("elsewhere".parse().unwrap()),
        ),
        (
            "leaf is CA",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }),
            VerifyError::LeafIsCa,
        ),
        (
            "keyCertSign",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.key_usages.push(KeyUsagePurpose::KeyCertSign);
            }),
            VerifyError::LeafCanSign("keyCertSign"),
        ),
        (
            "cRLSign",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.key_usages.push(KeyUsagePurpose::CrlSign);
            }),
            VerifyError::LeafCanSign("cRLSign"),
        ),
        (
            "no digitalSignature",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
            }),
            VerifyError::MissingDigitalSignature,
        ),
        (
            "no key usage extension",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.key_usages = vec![];
            }),
            VerifyError::MissingDigitalSignature,
        ),
        (
            "expired",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.not_before = date_time_ymd(2010, 1, 1);
                p.not_after = date_time_ymd(2020, 1, 1);
            }),
            VerifyError::Expired,
        ),
        (
            "not yet valid",
            leaf(&|p| {
                p.subject_alt_names = vec![uri_san(ID)];
                p.not_before = date_time_ymd(2090, 1, 1);
                p.not_after = date_time_ymd(2095, 1, 1);
            }),
            VerifyError::NotYetValid,
        ),
        (
            "unknown authority",
            Ca::root("stranger").leaf(ID).0,
            VerifyError::UnknownAuthority,
        ),
    ];
    for (name, chain, want) in cases {
        assert_eq!(verify(&chain, &bundles), Err(want), "case {name}");
    }
}

#[test]
fn malformed_certificates_are_reported_with_their_index() {
    let ca = Ca::root("root");
    let bundles = ca.bundle_set("td");
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert!(matches!(
        verify(std::slice::from_ref(&garbage), &bundles),
        Err(VerifyError::MalformedCertificate { index: 0, .. })
    ));
    let (mut chain, _) = ca.leaf(ID);
    chain.push(garbage);
    assert!(matches!(
        verify(&chain, &bundles),
        Err(VerifyError::MalformedCertificate { index: 1, .. })
    ));
}

#[test]
fn a_bundle_only_vouches_for_its_own_trust_domain() {
    let a = Ca::root("a");
    let b = Ca::root("b");
    let mut bundles = a.bundle_set("a");
    bundles.insert(b.bundle("b"));
    // b's CA signs an identity in domain a: refused, because only a's roots speak for a.
    let (forged, _) = b.leaf("spiffe://a/ns/x/sa/y");
    assert_eq!(
        verify(&forged, &bundles),
        Err(VerifyError::UnknownAuthority)
    );
    let (genuine, _) = b.leaf("spiffe://b/ns/x/sa/y");
    assert_eq!(
        verify(&genuine, &bundles),
        Ok("spiffe://b/ns/x/sa/y".into())
    );
}

#[test]
fn several_roots_per_domain_are_all_trusted() {
    let old = Ca::root("old");
    let new = Ca::root("new");
    let bundle = mesh_identity::TrustBundle::from_roots(
        "td".parse().unwrap(),
        vec![old.cert.clone(), new.cert.clone()],
    )
    .unwrap();
    let bundles = BundleSet::single(bundle);
    assert!(verify(&old.leaf(ID).0, &bundles).is_ok());
    assert!(verify(&new.leaf(ID).0, &bundles).is_ok());
}

#[test]
fn trust_domain_aliases_use_the_local_bundle_and_canonicalize() {
    let ca = Ca::root("root");
    let mut bundles = ca.bundle_set("new.td");
    let (chain, _) = ca.leaf("spiffe://old.td/ns/a/sa/b");
    assert_eq!(
        verify(&chain, &bundles),
        Err(VerifyError::NoBundle("old.td".parse().unwrap()))
    );
    bundles.set_aliases("new.td".parse().unwrap(), vec!["old.td".parse().unwrap()]);
    let id = verify_svid_chain(&chain, &bundles, PeerRole::Server, UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), "spiffe://old.td/ns/a/sa/b");
    assert_eq!(
        bundles.canonical(&id).to_string(),
        "spiffe://new.td/ns/a/sa/b"
    );
}
