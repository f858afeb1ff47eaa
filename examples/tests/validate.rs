//! `mesh-proxy validate` as a process, on the fixtures in `tests/fixtures/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn validate(paths: &[PathBuf]) -> (i32, String) {
    let Output { status, stdout, .. } = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .arg("validate")
        .args(paths)
        .output()
        .unwrap();
    (status.code().unwrap(), String::from_utf8(stdout).unwrap())
}

#[test]
fn clean_config_passes() {
    let (code, out) = validate(&[fixture("valid")]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "no problems found\n");
}

#[test]
fn every_error_is_printed_with_file_resource_and_field() {
    let (code, out) = validate(&[fixture("invalid/bad.yaml")]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(
        errors[0].contains(
            "bad.yaml (document 1): VirtualService default/reviews: http[0].route[0].weight:"
        ),
        "{out}"
    );
    assert!(errors[1].contains("bad.yaml (document 2): DestinationRule default/reviews: trafficPolicy.loadBalancer.simple:"), "{out}");
    assert!(out.ends_with("2 errors, 0 warnings\n"), "{out}");
}

#[test]
fn missing_file_is_an_error() {
    let (code, out) = validate(&[fixture("does-not-exist.yaml")]);
    assert_eq!(code, 1);
    assert!(out.contains("does-not-exist.yaml: cannot read"), "{out}");
}

#[test]
fn warnings_alone_exit_zero() {
    let (code, out) = validate(&[fixture("warnings")]);
    assert_eq!(code, 0, "{out}");
    let has = |needle: &str| {
        out.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(needle))
    };
    assert!(
        has(
            "a-routes.yaml (document 3): EnvoyFilter default/lua: kind EnvoyFilter is not supported"
        ),
        "{out}"
    );
    // Within one VirtualService and across VirtualServices, in load order.
    assert!(
        has(
            "VirtualService default/ratings: http[1]: route never matches: an earlier catch-all route (default/ratings http[0])"
        ),
        "{out}"
    );
    assert!(
        has(
            "b-more.yaml (document 1): VirtualService default/ratings-canary: http[0]: route never matches"
        ),
        "{out}"
    );
    assert!(
        has(
            "VirtualService default/edge: gateways[0]: Gateway default/missing-gw is not in the loaded configuration"
        ),
        "{out}"
    );
    assert!(
        has(
            "VirtualService default/edge: http[0].route[0].destination.host: unknown host \"nowhere.example.org\""
        ),
        "{out}"
    );
    assert!(
        has(
            "VirtualService default/ratings: http[0].route[0].destination.subset: unknown subset \"v9\""
        ),
        "{out}"
    );
    assert!(out.ends_with("0 errors, 6 warnings\n"), "{out}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .args(["--config", "x.yaml", "--inbound", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "mesh-proxy: error: --inbound needs --inbound-target ADDR\n"
    );
}
