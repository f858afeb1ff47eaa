//! SPIFFE bundle JSON parsing never panics, and what it accepts round-trips through `to_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_identity::{TrustBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(td) = "fuzz.example".parse::<TrustDomain>() else {
        return;
    };
    if let Ok(bundle) = TrustBundle::from_json(td.clone(), data) {
        let again = TrustBundle::from_json(td, bundle.to_json().as_bytes())
            .expect("our own JSON output must parse");
        assert_eq!(again.roots(), bundle.roots());
        assert_eq!(again.sequence(), bundle.sequence());
        assert_eq!(again.refresh_hint(), bundle.refresh_hint());
    }
});
