//! Properties of path normalization: it is idempotent, leaves no dot segments, encoded
//! unreserved characters or backslashes (nor slash runs when merging), and every equivalent
//! spelling of a path normalizes to the same path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_routing::{PathNormalization, normalize_path};
use proptest::prelude::*;

const MODES: [PathNormalization; 3] = [
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
    PathNormalization::DecodeAndMergeSlashes,
];

fn mode() -> impl Strategy<Value = PathNormalization> {
    proptest::sample::select(&MODES[..])
}

/// Printable ASCII paths (no `?` or `#`, which end a path) with many `%`, `.`, `/` and `\`.
fn raw_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(vec!['/', '.', '%', '\\', 'a', '2', 'e', 'f', 'F', '5', 'c']),
            1 => proptest::char::range(' ', '~').prop_filter("no ? or #", |c| *c != '?' && *c != '#'),
        ],
        0..40,
    )
    .prop_map(|chars| format!("/{}", chars.into_iter().collect::<String>()))
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalized_paths_are_fixed_points_without_dot_segments_or_decodable_escapes(
        path in raw_path(),
        mode in mode(),
    ) {
        let Ok(once) = normalize_path(&path, mode) else { return Ok(()) };
        let twice = normalize_path(&once, mode).unwrap();
        prop_assert_eq!(&*twice, &*once);
        prop_assert!(once.starts_with('/'));
        prop_assert!(!once.contains('\\'), "{once}");
        for seg in once.split('/') {
            prop_assert!(seg != "." && seg != "..", "{once}");
        }
        let b = once.as_bytes();
        for (i, _) in once.match_indices('%') {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            let c = u8::from_str_radix(hex, 16).unwrap();
            prop_assert!(!unreserved(c), "{once}");
            prop_assert_eq!(hex, hex.to_ascii_uppercase());
        }
        if mode != PathNormalization::Base {
            prop_assert!(!once.contains("//"), "{once}");
        }
    }

    /// Spell a clean path in equivalent ways (escaped letters, `./`, `x/../`, backslashes and,
    /// when merging, doubled slashes): all of them normalize to the clean path.
    #[test]
    fn every_equivalent_spelling_normalizes_to_the_same_path(
        segments in proptest::collection::vec("[a-z0-9_~-]{1,5}", 1..5),
        tricks in proptest::collection::vec(0u8..6, 1..5),
        mode in mode(),
    ) {
        let clean = format!("/{}", segments.join("/"));
        let mut spelled = String::new();
        for (i, seg) in segments.iter().enumerate() {
            let trick = tricks[i % tricks.len()];
            // A request path always starts with `/`; later slashes may be spelled otherwise.
            let slash = match trick {
                3 if i > 0 => "\\",
                4 if mode != PathNormalization::Base => "//",
                _ => "/",
            };
            spelled.push_str(slash);
            match trick {
                0 => spelled.push_str("./"),
                1 => spelled.push_str("zz/../"),
                _ => {}
            }
            for (j, c) in seg.chars().enumerate() {
                if trick == 2 && j == 0 {
                    spelled.push_str(&format!("%{:02x}", c as u8));
                } else if trick == 5 && j == 0 {
                    spelled.push_str(&format!("%{:02X}", c as u8));
                } else {
                    spelled.push(c);
                }
            }
        }
        prop_assert_eq!(&*normalize_path(&spelled, mode).unwrap(), clean.as_str(), "{}", spelled);
    }
}
