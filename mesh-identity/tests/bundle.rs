//! Trust bundles: PEM and SPIFFE bundle JSON in and out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ca, certs_pem};
use mesh_identity::{BundleError, TrustBundle, TrustDomain};
use serde_json::{Value, json};

fn td() -> TrustDomain {
    "td".parse().unwrap()
}

fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[test]
fn pem_bundle_keeps_every_root_in_order() {
    let (a, b) = (Ca::root("a"), Ca::root("b"));
    let pem = certs_pem(&[a.cert.clone(), b.cert.clone()]);
    let bundle = TrustBundle::from_pem(td(), pem.as_bytes()).unwrap();
    assert_eq!(bundle.roots(), [a.cert.clone(), b.cert.clone()]);
    assert_eq!(bundle.trust_domain(), &td());
}

#[test]
fn json_round_trip_keeps_roots_sequence_and_refresh_hint() {
    let (a, b) = (Ca::root("a"), Ca::root("b"));
    let mut bundle = TrustBundle::from_roots(td(), vec![a.cert.clone(), b.cert.clone()]).unwrap();
    bundle.set_sequence(Some(42));
    bundle.set_refresh_hint(Some(300));
    let json = bundle.to_json();
    let back = TrustBundle::from_json(td(), json.as_bytes()).unwrap();
    assert_eq!(back.roots(), bundle.roots());
    assert_eq!(back.sequence(), Some(42));
    assert_eq!(back.refresh_hint(), Some(300));
}

#[test]
fn json_output_is_a_jwk_set_with_x509_svid_keys() {
    let a = Ca::root("a");
    let bundle = TrustBundle::from_roots(td(), vec![a.cert.clone()]).unwrap();
    let doc: Value = serde_json::from_str(&bundle.to_json()).unwrap();
    let key = &doc["keys"][0];
    assert_eq!(key["use"], "x509-svid");
    // rcgen's default key is ECDSA P-256.
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["x"].as_str().unwrap().len(), 43);
    assert_eq!(key["y"].as_str().unwrap().len(), 43);
    assert_eq!(key["x5c"], json!([b64(&a.cert)]));
    assert!(doc.get("spiffe_sequence").is_none());
}

#[test]
fn jwt_keys_are_ignored_and_x509_keys_loaded() {
    let a = Ca::root("a");
    let doc = json!({
        "keys": [
            {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"},
            {"use": "x509-svid", "kty": "EC", "x5c": [b64(&a.cert)]},
        ],
        "spiffe_sequence": 7,
    });
    let bundle = TrustBundle::from_json(td(), doc.to_string().as_bytes()).unwrap();
    assert_eq!(bundle.roots(), std::slice::from_ref(&a.cert));
    assert_eq!(bundle.sequence(), Some(7));
}

fn json_error(doc: Value) -> (String, String) {
    match TrustBundle::from_json(td(), doc.to_string().as_bytes()) {
        Err(BundleError::Json { path, reason, .. }) => (path, reason),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn malformed_json_errors_name_the_field() {
    let a = Ca::root("a");
    let (path, reason) = json_error(json!({
        "keys": [{"use": "x509-svid", "x5c": [b64(&a.cert), b64(&a.cert)]}]
    }));
    assert_eq!(path, "keys[0].x5c");
    assert!(reason.contains("exactly one"), "{reason}");

    let (path, _) =
        json_error(json!({"keys": [{"use": "x509-svid"}, {"use": "x509-svid", "x5c": ["%%%"]}]}));
    assert_eq!(path, "keys[0].x5c");
    let (path, _) = json_error(json!({"keys": [{"use": "x509-svid", "x5c": ["%%%"]}]}));
    assert_eq!(path, "keys[0].x5c[0]");
    let (path, _) = json_error(json!({"keys": [{"kty": "EC"}]}));
    assert_eq!(path, "keys[0]");
    let (path, _) =
        json_error(json!({"keys": [{"use": "x509-svid", "x5c": []}], "spiffe_sequence": "x"}));
    assert_eq!(path, "spiffe_sequence");
}

#[test]
fn bundles_without_roots_or_with_bad_roots_are_refused() {
    let doc = json!({"keys": [{"use": "jwt-svid", "kty": "EC"}]});
    assert_eq!(
        TrustBundle::from_json(td(), doc.to_string().as_bytes()).unwrap_err(),
        BundleError::NoRoots(td())
    );
    assert_eq!(
        TrustBundle::from_pem(td(), b"").unwrap_err(),
        BundleError::NoRoots(td())
    );
    let doc = json!({"keys": [{"use": "x509-svid", "x5c": [b64(b"not der")]}]});
    assert!(matches!(
        TrustBundle::from_json(td(), doc.to_string().as_bytes()),
        Err(BundleError::BadRoot { index: 0, .. })
    ));
}

#[test]
fn format_is_detected_from_the_content() {
    let a = Ca::root("a");
    let from_pem =
        TrustBundle::from_pem_or_json(td(), certs_pem(std::slice::from_ref(&a.cert)).as_bytes())
            .unwrap();
    let json = from_pem.to_json();
    let from_json = TrustBundle::from_pem_or_json(td(), format!("\n  {json}").as_bytes()).unwrap();
    assert_eq!(from_json.roots(), from_pem.roots());
    let from_der = TrustBundle::from_pem_or_json(td(), &a.cert).unwrap();
    assert_eq!(from_der.roots(), from_pem.roots());
}
