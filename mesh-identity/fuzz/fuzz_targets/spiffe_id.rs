//! SPIFFE ID parsing never panics, and what it accepts round-trips through `Display`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_identity::{SpiffeId, TrustDomain, validate_path};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<SpiffeId>() {
        let text = id.to_string();
        assert_eq!(text, s, "canonical form differs from accepted input");
        assert_eq!(text.parse::<SpiffeId>().as_ref(), Ok(&id));
        assert!(validate_path(id.path()).is_ok());
        let rebuilt = SpiffeId::from_segments(
            id.trust_domain().clone(),
            &id.segments().collect::<Vec<_>>(),
        );
        assert_eq!(rebuilt.as_ref(), Ok(&id));
    }
    if let Ok(td) = s.parse::<TrustDomain>() {
        assert_eq!(td.to_string(), s);
    }
    let _ = validate_path(s);
});
