//! Loading this workload's own SVID: formats, key matching and leaf rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ca, certs_pem, key_pem, uri_san};
use mesh_identity::{PemError, Svid, SvidError, VerifyError};
use rcgen::{BasicConstraints, IsCa};

const ID: &str = "spiffe://td/ns/default/sa/api";

#[test]
fn pem_and_der_load_the_same_svid() {
    let ca = Ca::root("root").intermediate("inter");
    let (chain, key) = ca.leaf(ID);
    let from_pem = Svid::from_pem(certs_pem(&chain).as_bytes(), key_pem(&key).as_bytes()).unwrap();
    let der_chain: Vec<u8> = chain.iter().flat_map(|c| c.to_vec()).collect();
    let from_der = Svid::from_pem(&der_chain, key.secret_der()).unwrap();
    assert_eq!(from_pem.id().to_string(), ID);
    assert_eq!(from_pem.chain(), chain.as_slice());
    assert_eq!(from_der.chain(), chain.as_slice());
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let ca = Ca::root("root");
    let (chain, _) = ca.leaf(ID);
    let (_, other_key) = ca.leaf(ID);
    assert!(matches!(
        Svid::from_der(chain, other_key),
        Err(SvidError::KeyMismatch)
    ));
}

#[test]
fn a_leaf_breaking_svid_rules_is_refused() {
    let ca = Ca::root("root");
    let (chain, key) = ca.leaf_with(|p| {
        p.subject_alt_names = vec![uri_san(ID)];
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    assert!(matches!(
        Svid::from_der(chain, key),
        Err(SvidError::Leaf(VerifyError::LeafIsCa))
    ));
}

#[test]
fn missing_pieces_are_named() {
    let ca = Ca::root("root");
    let (chain, key) = ca.leaf(ID);
    assert!(matches!(
        Svid::from_pem(b"", key_pem(&key).as_bytes()),
        Err(SvidError::Chain(PemError::NothingFound("certificate")))
    ));
    assert!(matches!(
        Svid::from_pem(certs_pem(&chain).as_bytes(), certs_pem(&chain).as_bytes()),
        Err(SvidError::Key(PemError::NothingFound("private key")))
    ));
    // Debug output never shows the key.
    let svid = Svid::from_der(chain, key).unwrap();
    assert!(!format!("{svid:?}").contains("PRIVATE"));
}
