//! Property: behind mesh-routing's `PathNormalizationLayer`, mesh-identity's
//! `AuthorizationLayer` decides every equivalent spelling of a path as it decides the path
//! itself, and the app sees the normalized path (the composition every mesh-proxy listener
//! uses; `hostile.rs` checks the same over sockets for a few spellings).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use mesh_identity::authz::{AuthorizationLayer, AuthorizationPolicy, Authorizer};
use mesh_routing::{PathNormalization, PathNormalizationLayer};
use proptest::prelude::*;
use serde_json::json;
use tower::{Layer as _, ServiceExt as _, service_fn};

fn authorization() -> AuthorizationLayer {
    let policy = |name: &str, spec| AuthorizationPolicy::from_spec("default", name, &spec).unwrap();
    AuthorizationLayer::new(Authorizer::new(vec![
        policy(
            "deny-admin",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}),
        ),
        policy(
            "allow-public-and-admin",
            json!({"rules": [{"to": [{"operation": {"paths": ["/public/*", "/admin/*"]}}]}]}),
        ),
    ]))
}

/// (status, the path the app saw) for `path` through normalization (`mode`, or none) and
/// authorization.
async fn through(path: &str, mode: Option<PathNormalization>) -> (u16, String) {
    let app = service_fn(|req: http::Request<()>| async move {
        Ok::<_, Infallible>(http::Response::new(req.uri().path().to_string()))
    });
    let req = http::Request::get(path)
        .header("host", "reviews:9080")
        .body(())
        .unwrap();
    let authorized = authorization().layer(app);
    let resp = match mode {
        Some(mode) => {
            let svc = PathNormalizationLayer::new(mode).layer(authorized);
            svc.oneshot(req).await.unwrap().map(|b| b.to_string())
        }
        None => authorized.oneshot(req).await.unwrap(),
    };
    let status = resp.status().as_u16();
    let seen = if status == 200 {
        resp.into_body()
    } else {
        String::new()
    };
    (status, seen)
}

/// `segments` spelled with `tricks` (escaped letters, `./`, `zz/../`, backslashes, doubled
/// slashes where the mode merges them): a path every mode normalizes to `/segments...`.
fn spell(segments: &[String], tricks: &[u8], mode: PathNormalization) -> String {
    let mut spelled = String::new();
    for (i, seg) in segments.iter().enumerate() {
        let trick = tricks[i % tricks.len()];
        spelled.push_str(match trick {
            3 if i > 0 => "\\",
            4 if mode != PathNormalization::Base => "//",
            _ => "/",
        });
        match trick {
            0 => spelled.push_str("./"),
            1 => spelled.push_str("zz/../"),
            _ => {}
        }
        for (j, c) in seg.chars().enumerate() {
            match (trick, j) {
                (2, 0) => spelled.push_str(&format!("%{:02x}", c as u8)),
                (5, 0) => spelled.push_str(&format!("%{:02X}", c as u8)),
                _ => spelled.push(c),
            }
        }
    }
    spelled
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_spelling_is_authorized_as_the_path_it_normalizes_to(
        first in prop_oneof![Just("admin"), Just("public"), Just("api")],
        rest in proptest::collection::vec("[a-z0-9_~-]{1,5}", 0..3),
        tricks in proptest::collection::vec(0u8..6, 1..4),
        mode in prop_oneof![
            Just(PathNormalization::Base),
            Just(PathNormalization::MergeSlashes),
            Just(PathNormalization::DecodeAndMergeSlashes),
        ],
    ) {
        let segments: Vec<String> = std::iter::once(first.to_string()).chain(rest).collect();
        let clean = format!("/{}", segments.join("/"));
        let spelled = spell(&segments, &tricks, mode);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (want, _) = rt.block_on(through(&clean, None));
        let (got, seen) = rt.block_on(through(&spelled, Some(mode)));
        prop_assert_eq!(got, want, "{} (as {}) under {:?}", spelled, clean, mode);
        // Only /public/* is let through; the app then sees the normalized path.
        prop_assert_eq!(want == 200, first == "public" && segments.len() > 1);
        if got == 200 {
            prop_assert_eq!(seen, clean);
        }
    }
}
