//! Arbitrary request paths through path normalization, in every mode: an error or a path that
//! is its own normalization, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_routing::{PathNormalization, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = format!("/{text}");
    for mode in [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ] {
        if let Ok(once) = normalize_path(&path, mode) {
            let twice = normalize_path(&once, mode).expect("a normalized path normalizes");
            assert_eq!(once, twice, "not idempotent under {mode:?}");
        }
    }
});
