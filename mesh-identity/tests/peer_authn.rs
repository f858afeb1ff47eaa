//! PeerAuthentication: which mTLS mode applies to a workload port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use mesh_identity::{MtlsMode, PeerAuthentication, PeerAuthenticationSet};
use serde_json::{Value, json};

fn pa(ns: &str, name: &str, spec: Value) -> PeerAuthentication {
    PeerAuthentication::from_spec(ns, name, &spec).unwrap()
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

#[test]
fn most_specific_policy_wins_and_unset_inherits() {
    let set = PeerAuthenticationSet::new(vec![
        pa("istio-system", "mesh", json!({"mtls": {"mode": "STRICT"}})),
        pa("legacy", "ns", json!({"mtls": {"mode": "PERMISSIVE"}})),
        pa(
            "legacy",
            "old-app",
            json!({
                "selector": {"matchLabels": {"app": "old"}},
                "mtls": {"mode": "DISABLE"},
                "portLevelMtls": {"8443": {"mode": "STRICT"}, "9000": {"mode": "UNSET"}},
            }),
        ),
        pa("default", "unset", json!({"mtls": {"mode": "UNSET"}})),
    ]);
    let cases = [
        ("mesh-wide applies", "default", "web", 80, MtlsMode::Strict),
        (
            "namespace overrides mesh",
            "legacy",
            "web",
            80,
            MtlsMode::Permissive,
        ),
        (
            "workload overrides namespace",
            "legacy",
            "old",
            80,
            MtlsMode::Disable,
        ),
        (
            "port level overrides workload",
            "legacy",
            "old",
            8443,
            MtlsMode::Strict,
        ),
        (
            "UNSET port inherits workload",
            "legacy",
            "old",
            9000,
            MtlsMode::Disable,
        ),
        (
            "UNSET namespace inherits mesh",
            "default",
            "web",
            80,
            MtlsMode::Strict,
        ),
    ];
    for (name, ns, app, port, want) in cases {
        assert_eq!(set.mode_for(ns, &labels(app), port), want, "case: {name}");
    }
}

#[test]
fn default_is_permissive() {
    let set = PeerAuthenticationSet::new(vec![]);
    assert_eq!(
        set.mode_for("default", &labels("x"), 80),
        MtlsMode::Permissive
    );
}

#[test]
fn validation_errors_name_resource_and_field() {
    let err = |spec: Value| {
        PeerAuthentication::from_spec("ns", "pa", &spec)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!({"portLevelMtls": {"80": {"mode": "STRICT"}}})),
        "PeerAuthentication ns/pa: portLevelMtls: port-level mTLS needs a workload selector"
    );
    assert_eq!(
        err(
            json!({"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"http": {"mode": "STRICT"}}})
        ),
        "PeerAuthentication ns/pa: portLevelMtls.http: \"http\" is not a port number (1-65535)"
    );
    assert!(
        err(json!({"mtls": {"mode": "ON"}}))
            .starts_with("PeerAuthentication ns/pa: mtls.mode: unknown variant `ON`")
    );
}
