//! AuthorizationPolicy semantics, one table per rule of DESIGN.md, plus validation errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_identity::authz::{
    AuthorizationPolicy, Authorizer, CustomAuthorizer, Decision, PolicySet, RequestAttrs,
};
use serde_json::{Value, json};

fn policy(name: &str, spec: Value) -> AuthorizationPolicy {
    AuthorizationPolicy::from_spec("default", name, &spec).unwrap()
}

fn req(principal: Option<&str>, method: &str, path: &str) -> RequestAttrs {
    RequestAttrs {
        principal: principal.map(|p| format!("spiffe://{p}").parse().unwrap()),
        method: method.into(),
        path: path.into(),
        host: "reviews.default.svc.cluster.local:9080".into(),
        destination_port: Some(9080),
        source_ip: Some("10.1.2.3".parse().unwrap()),
        remote_ip: Some("10.1.2.3".parse().unwrap()),
        ..RequestAttrs::default()
    }
}

const SLEEP: &str = "cluster.local/ns/default/sa/sleep";
const ADMIN: &str = "cluster.local/ns/admin/sa/ops";

fn allowed(policies: Vec<AuthorizationPolicy>, r: &RequestAttrs) -> bool {
    Authorizer::new(policies).evaluate(r).is_allowed()
}

/// Runs a table of (case name, request, expected allow) against one policy list.
fn table(policies: Vec<AuthorizationPolicy>, cases: &[(&str, RequestAttrs, bool)]) {
    let authz = Authorizer::new(policies);
    for (name, r, want) in cases {
        assert_eq!(authz.evaluate(r).is_allowed(), *want, "case: {name}");
    }
}

struct Hook(bool);
impl CustomAuthorizer for Hook {
    fn check(&self, provider: &str, _request: &RequestAttrs) -> bool {
        assert_eq!(provider, "ext-authz");
        self.0
    }
}

#[test]
fn custom_then_deny_then_allow() {
    let custom = policy(
        "custom",
        json!({"action": "CUSTOM", "provider": {"name": "ext-authz"}, "rules": [{"to": [{"operation": {"paths": ["/ext/*"]}}]}]}),
    );
    let deny = policy(
        "deny",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/ext/secret", "/admin"]}}]}]}),
    );
    let allow = policy(
        "allow",
        json!({"rules": [{"to": [{"operation": {"paths": ["/ext/*", "/admin"]}}]}]}),
    );
    let all = || vec![custom.clone(), deny.clone(), allow.clone()];
    let with_hook = |ok| Authorizer::new(all()).with_custom(Arc::new(Hook(ok)));
    let cases = [
        // CUSTOM says no: denied whatever ALLOW says.
        (
            "custom denies first",
            with_hook(false),
            "/ext/public",
            false,
        ),
        // CUSTOM says yes: DENY still applies.
        ("deny after custom", with_hook(true), "/ext/secret", false),
        (
            "allow after custom and deny",
            with_hook(true),
            "/ext/public",
            true,
        ),
        // DENY wins over a matching ALLOW.
        ("deny beats allow", with_hook(true), "/admin", false),
        // No hook configured: CUSTOM fails closed.
        (
            "custom without hook",
            Authorizer::new(all()),
            "/ext/public",
            false,
        ),
        // CUSTOM not matching: its hook is irrelevant.
        ("custom not matching", with_hook(false), "/other", false),
    ];
    for (name, authz, path, want) in cases {
        let d = authz.evaluate(&req(Some(SLEEP), "GET", path));
        assert_eq!(d.is_allowed(), want, "case: {name}: {d:?}");
    }
    let d = Authorizer::new(vec![deny.clone()]).evaluate(&req(None, "GET", "/admin"));
    assert_eq!(
        d,
        Decision::Deny {
            reason: "DENY policy default/deny".into()
        }
    );
}

#[test]
fn no_allow_policy_means_allow() {
    table(vec![], &[("no policies", req(None, "GET", "/"), true)]);
    let deny_other = policy(
        "d",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}),
    );
    let audit = policy("a", json!({"action": "AUDIT", "rules": [{}]}));
    table(
        vec![deny_other, audit],
        &[
            ("only a non-matching DENY", req(None, "GET", "/"), true),
            ("matching DENY", req(None, "DELETE", "/"), false),
        ],
    );
}

#[test]
fn allow_policies_present_and_none_matching_means_deny() {
    let a = policy(
        "a",
        json!({"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
    );
    let b = policy(
        "b",
        json!({"rules": [{"from": [{"source": {"principals": [ADMIN]}}]}]}),
    );
    table(
        vec![a, b],
        &[
            ("first allow matches", req(None, "GET", "/"), true),
            ("second allow matches", req(Some(ADMIN), "POST", "/"), true),
            ("none matches", req(Some(SLEEP), "POST", "/"), false),
        ],
    );
}

#[test]
fn rule_needs_any_from_any_to_and_all_when() {
    let p = policy(
        "p",
        json!({"rules": [{
            "from": [{"source": {"principals": [SLEEP]}}, {"source": {"namespaces": ["admin"]}}],
            "to": [{"operation": {"methods": ["GET"]}}, {"operation": {"paths": ["/public/*"]}}],
            "when": [
                {"key": "request.headers[x-env]", "values": ["prod"]},
                {"key": "source.ip", "values": ["10.0.0.0/8"]},
            ],
        }]}),
    );
    let with_env = |mut r: RequestAttrs| {
        r.headers.insert("x-env", "prod".parse().unwrap());
        r
    };
    let mut outside = with_env(req(Some(SLEEP), "GET", "/"));
    outside.source_ip = Some("192.168.0.1".parse().unwrap());
    table(
        vec![p],
        &[
            (
                "first from, first to",
                with_env(req(Some(SLEEP), "GET", "/")),
                true,
            ),
            (
                "second from, second to",
                with_env(req(Some(ADMIN), "POST", "/public/x")),
                true,
            ),
            (
                "no from matches",
                with_env(req(Some("cluster.local/ns/x/sa/y"), "GET", "/")),
                false,
            ),
            (
                "no to matches",
                with_env(req(Some(SLEEP), "POST", "/private")),
                false,
            ),
            (
                "one when fails (header)",
                req(Some(SLEEP), "GET", "/"),
                false,
            ),
            ("one when fails (ip)", outside, false),
        ],
    );
}

#[test]
fn not_fields_negate() {
    let p = policy(
        "p",
        json!({"rules": [{
            "from": [{"source": {"notPrincipals": [ADMIN], "notNamespaces": ["blocked"]}}],
            "to": [{"operation": {"notMethods": ["DELETE"], "notPaths": ["/private/*"], "notPorts": ["15000"]}}],
            "when": [{"key": "request.headers[x-debug]", "notValues": ["*"]}],
        }]}),
    );
    let mut debug = req(Some(SLEEP), "GET", "/");
    debug.headers.insert("x-debug", "1".parse().unwrap());
    let mut admin_port = req(Some(SLEEP), "GET", "/");
    admin_port.destination_port = Some(15000);
    table(
        vec![p],
        &[
            ("nothing excluded", req(Some(SLEEP), "GET", "/"), true),
            (
                "anonymous passes notPrincipals",
                req(None, "GET", "/"),
                true,
            ),
            ("excluded principal", req(Some(ADMIN), "GET", "/"), false),
            (
                "excluded namespace",
                req(Some("cluster.local/ns/blocked/sa/x"), "GET", "/"),
                false,
            ),
            ("excluded method", req(Some(SLEEP), "DELETE", "/"), false),
            (
                "excluded path",
                req(Some(SLEEP), "GET", "/private/a"),
                false,
            ),
            ("excluded port", admin_port, false),
            ("header present fails notValues *", debug, false),
        ],
    );
}

#[test]
fn empty_spec_allow_denies_everything() {
    let p = policy("deny-all", json!({}));
    table(
        vec![p],
        &[
            ("anonymous", req(None, "GET", "/"), false),
            ("authenticated", req(Some(ADMIN), "GET", "/"), false),
        ],
    );
    let rules_empty = policy("deny-all-2", json!({"action": "ALLOW", "rules": []}));
    assert!(!allowed(vec![rules_empty], &req(None, "GET", "/")));
}

#[test]
fn deny_without_rules_never_matches() {
    let p = policy("d", json!({"action": "DENY"}));
    table(
        vec![p],
        &[("any request", req(Some(ADMIN), "DELETE", "/x"), true)],
    );
}

#[test]
fn a_rule_with_nothing_matches_everything() {
    let allow_all = policy("allow-all", json!({"rules": [{}]}));
    let deny_all = policy("deny-all", json!({"action": "DENY", "rules": [{}]}));
    table(
        vec![allow_all.clone()],
        &[("allow all", req(None, "PUT", "/any"), true)],
    );
    table(
        vec![allow_all, deny_all],
        &[("deny all beats allow all", req(None, "GET", "/"), false)],
    );
}

#[test]
fn string_values_are_exact_prefix_suffix_or_any() {
    let paths = |v: Value| {
        policy(
            "p",
            json!({"rules": [{"to": [{"operation": {"paths": v}}]}]}),
        )
    };
    let cases = [
        (json!(["/api"]), "/api", true),
        (json!(["/api"]), "/api/v1", false),
        (json!(["/api/*"]), "/api/v1", true),
        (json!(["/api/*"]), "/apiv1", false),
        (json!(["*.png"]), "/img/a.png", true),
        (json!(["*.png"]), "/img/a.jpg", false),
        (json!(["*"]), "/anything", true),
    ];
    for (v, path, want) in cases {
        assert_eq!(
            allowed(vec![paths(v.clone())], &req(None, "GET", path)),
            want,
            "{v} vs {path}"
        );
    }
    // Hosts are case-insensitive and match with or without the port.
    let hosts = |v: Value| {
        policy(
            "h",
            json!({"rules": [{"to": [{"operation": {"hosts": v}}]}]}),
        )
    };
    let r = req(None, "GET", "/");
    assert!(allowed(
        vec![hosts(json!(["Reviews.default.svc.cluster.local"]))],
        &r
    ));
    assert!(allowed(
        vec![hosts(json!(["*.svc.cluster.local:9080"]))],
        &r
    ));
    assert!(!allowed(
        vec![hosts(json!(["ratings.default.svc.cluster.local"]))],
        &r
    ));
}

#[test]
fn principals_are_spiffe_ids_without_the_scheme() {
    let p = |v: Value| {
        policy(
            "p",
            json!({"rules": [{"from": [{"source": {"principals": v}}]}]}),
        )
    };
    let cases = [
        (json!([SLEEP]), Some(SLEEP), true),
        (json!(["cluster.local/ns/default/*"]), Some(SLEEP), true),
        (json!(["*/sa/sleep"]), Some(SLEEP), true),
        (json!(["*"]), Some(SLEEP), true),
        // `*` needs an authenticated peer.
        (json!(["*"]), None, false),
        (json!([ADMIN]), Some(SLEEP), false),
    ];
    for (v, who, want) in cases {
        assert_eq!(
            allowed(vec![p(v.clone())], &req(who, "GET", "/")),
            want,
            "{v} vs {who:?}"
        );
    }
    let err = AuthorizationPolicy::from_spec(
        "default",
        "p",
        &json!({"rules": [{"from": [{"source": {"principals": [format!("spiffe://{SLEEP}")]}}]}]}),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("without the `spiffe://` scheme"),
        "{err}"
    );
}

#[test]
fn namespaces_and_ip_blocks_match_the_source() {
    let p = policy(
        "p",
        json!({"rules": [{"from": [{"source": {"namespaces": ["default"], "ipBlocks": ["10.0.0.0/8"]}}]}]}),
    );
    let mut far = req(Some(SLEEP), "GET", "/");
    far.source_ip = Some("172.16.0.1".parse().unwrap());
    table(
        vec![p],
        &[
            ("namespace and ip", req(Some(SLEEP), "GET", "/"), true),
            ("wrong namespace", req(Some(ADMIN), "GET", "/"), false),
            ("wrong ip", far, false),
            ("no principal, no namespace", req(None, "GET", "/"), false),
        ],
    );
}

#[test]
fn audit_never_changes_the_decision() {
    let audit = policy("audit", json!({"action": "AUDIT", "rules": [{}]}));
    let d = Authorizer::new(vec![audit]).evaluate(&req(None, "GET", "/"));
    assert_eq!(
        d,
        Decision::Allow {
            audited: vec!["default/audit".into()]
        }
    );
}

#[test]
fn workload_selection_by_namespace_selector_and_root_namespace() {
    let mk = |ns: &str, name: &str, spec: Value| {
        AuthorizationPolicy::from_spec(ns, name, &spec).unwrap()
    };
    let set = PolicySet::new(vec![
        mk(
            "istio-system",
            "mesh-deny-delete",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}),
        ),
        mk(
            "default",
            "reviews-only",
            json!({"selector": {"matchLabels": {"app": "reviews"}}, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
        ),
        mk("other", "deny-all", json!({})),
    ]);
    let labels = |app: &str| BTreeMap::from([("app".to_owned(), app.to_owned())]);
    let reviews = set.for_workload("default", &labels("reviews"));
    let ratings = set.for_workload("default", &labels("ratings"));
    let other = set.for_workload("other", &labels("reviews"));
    assert!(reviews.evaluate(&req(None, "GET", "/")).is_allowed());
    assert!(!reviews.evaluate(&req(None, "POST", "/")).is_allowed());
    assert!(ratings.evaluate(&req(None, "POST", "/")).is_allowed());
    assert!(
        !ratings.evaluate(&req(None, "DELETE", "/")).is_allowed(),
        "mesh-wide DENY"
    );
    assert!(!other.evaluate(&req(None, "GET", "/")).is_allowed());
}

#[test]
fn trust_domain_aliases_match_principals_across_domains() {
    let p = policy(
        "p",
        json!({"rules": [{"from": [{"source": {"principals": ["old.td/ns/default/sa/sleep"]}}]}]}),
    );
    let authz = Authorizer::new(vec![p])
        .with_trust_domain_aliases("new.td".parse().unwrap(), vec!["old.td".parse().unwrap()]);
    let yes = ["new.td/ns/default/sa/sleep", "old.td/ns/default/sa/sleep"];
    for who in yes {
        assert!(
            authz.evaluate(&req(Some(who), "GET", "/")).is_allowed(),
            "{who}"
        );
    }
    assert!(
        !authz
            .evaluate(&req(Some("other.td/ns/default/sa/sleep"), "GET", "/"))
            .is_allowed()
    );
}

fn error(spec: Value) -> String {
    AuthorizationPolicy::from_spec("foo", "bad", &spec)
        .unwrap_err()
        .to_string()
}

#[test]
fn validation_errors_name_resource_and_field() {
    let cases = [
        (
            json!({"rules": [{"from": [{"source": {"principals": ["a"]}}, {"source": {"principals": ["a*b"]}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].from[1].source.principals[0]: \"a*b\": `*` is only allowed at the start or the end of a value",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].to[0].operation.ports[0]: \"http\" is not a port number (1-65535)",
        ),
        (
            json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/40"]}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/40\" has an invalid prefix length",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].when[0].key: JWT request authentication is not supported",
        ),
        (
            json!({"rules": [{"when": [{"key": "source.color", "values": ["x"]}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].when[0].key: unknown condition key \"source.color\"",
        ),
        (
            json!({"rules": [{"when": [{"key": "source.ip"}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].when[0]: one of `values` or `notValues` must be set",
        ),
        (
            json!({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].from[0].source.requestPrincipals: JWT request authentication is not supported",
        ),
        (
            json!({"rules": [{"from": [{"source": {}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].from[0].source: at least one field must be set",
        ),
        (
            json!({"rules": [{"from": [{}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].from[0].source: `source` must be set",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"methods": []}}]}]}),
            "AuthorizationPolicy foo/bad: rules[0].to[0].operation.methods: must not be an empty list",
        ),
        (
            json!({"action": "CUSTOM"}),
            "AuthorizationPolicy foo/bad: provider.name: a CUSTOM policy needs a provider name",
        ),
        (
            json!({"action": "DENY", "provider": {"name": "x"}}),
            "AuthorizationPolicy foo/bad: provider: only a CUSTOM policy may name a provider",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(error(spec), want);
    }
    // Serde-level errors carry the path too; unknown fields are refused.
    let e = error(json!({"rules": [{"from": [{"source": {"notPrincipal": ["a"]}}]}]}));
    assert!(e.starts_with("AuthorizationPolicy foo/bad: rules[0].from[0].source.notPrincipal: unknown field `notPrincipal`"), "{e}");
    let e = error(json!({"action": "MAYBE"}));
    assert!(
        e.starts_with("AuthorizationPolicy foo/bad: action: unknown variant `MAYBE`"),
        "{e}"
    );
}

/// Istio's "Authorization for TCP traffic": on a TCP connection an ALLOW rule with HTTP-only
/// conditions never matches, and a DENY rule's HTTP-only conditions are ignored.
#[test]
fn tcp_connections_follow_istios_http_only_field_rules() {
    use mesh_identity::authz::ConnectionInfo;
    let conn = ConnectionInfo {
        remote: "10.1.2.3:40000".parse().unwrap(),
        local: "10.0.0.9:9000".parse().unwrap(),
        original_client: None,
        sni: None,
    };
    let tcp = |p: Option<&str>| {
        RequestAttrs::for_connection(&conn, p.map(|p| format!("spiffe://{p}").parse().unwrap()))
    };
    let allow_get = policy(
        "allow-get",
        json!({"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["9000"]}}]}]}),
    );
    let allow_port = policy(
        "allow-port",
        json!({"action": "ALLOW", "rules": [{"to": [{"operation": {"ports": ["9000"]}}]}]}),
    );
    assert!(!allowed(vec![allow_get.clone()], &tcp(Some(SLEEP))));
    assert!(allowed(vec![allow_get, allow_port], &tcp(Some(SLEEP))));
    let deny_get = policy(
        "deny-get",
        json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": [ADMIN]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}),
    );
    // The method is ignored: every connection from ADMIN is denied, others pass.
    assert!(!allowed(vec![deny_get.clone()], &tcp(Some(ADMIN))));
    assert!(allowed(vec![deny_get.clone()], &tcp(Some(SLEEP))));
    // Over HTTP the same DENY only takes GET.
    assert!(allowed(
        vec![deny_get.clone()],
        &req(Some(ADMIN), "POST", "/")
    ));
    assert!(!allowed(vec![deny_get], &req(Some(ADMIN), "GET", "/")));
}
