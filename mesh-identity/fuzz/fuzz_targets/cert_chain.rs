//! PEM/DER chain and key parsing, bundle loading and SVID chain verification never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_identity::{
    BundleSet, PeerRole, Svid, TrustBundle, parse_certificates, parse_private_key,
    verify_svid_chain,
};
use rustls_pki_types::UnixTime;

fuzz_target!(|data: &[u8]| {
    if let Ok(chain) = parse_certificates(data) {
        assert!(!chain.is_empty());
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        // With the chain's own first certificate as a root, path building is exercised too.
        let mut bundles = BundleSet::new();
        if let Ok(td) = "fuzz.example".parse()
            && let Ok(bundle) = TrustBundle::from_roots(td, vec![chain[chain.len() - 1].clone()])
        {
            bundles.insert(bundle);
        }
        let _ = verify_svid_chain(&chain, &bundles, PeerRole::Client, now);
        let _ = verify_svid_chain(&chain, &bundles, PeerRole::Server, now);
    }
    if let Ok(key) = parse_private_key(data) {
        let _ = Svid::from_pem(data, key.secret_der());
    }
    if let Ok(td) = "fuzz.example".parse() {
        let _ = TrustBundle::from_pem_or_json(td, data);
    }
});
