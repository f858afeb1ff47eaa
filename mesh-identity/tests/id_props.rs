//! Properties of SPIFFE ID parsing over generated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_identity::{SpiffeId, TrustDomain};
use proptest::prelude::*;

proptest! {
    #[test]
    fn valid_ids_round_trip(
        td in "[a-z0-9._-]{1,64}",
        segments in prop::collection::vec("[a-zA-Z0-9._-]{1,12}", 0..6),
    ) {
        prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
        let text = format!("spiffe://{td}{}", segments.iter().map(|s| format!("/{s}")).collect::<String>());
        let id: SpiffeId = text.parse().unwrap();
        prop_assert_eq!(id.to_string(), text);
        let td: TrustDomain = td.parse().unwrap();
        prop_assert_eq!(SpiffeId::from_segments(td, &segments).unwrap(), id);
    }

    #[test]
    fn any_accepted_string_is_already_canonical(s in "spiffe://[a-zA-Z0-9:@%./_-]{0,40}") {
        if let Ok(id) = s.parse::<SpiffeId>() {
            prop_assert_eq!(id.to_string(), s);
        }
    }
}
