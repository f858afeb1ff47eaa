//! Each of Istio's VirtualService validation rules, with the exact error and field path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_routing::{LoadError, VirtualService, load_virtual_services};

/// Wraps an `http` route list (YAML, indented under `spec:`) into a VirtualService.
fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: ns}}\nspec:\n{spec}"
    )
}

fn errors(spec: &str) -> Vec<String> {
    match load_virtual_services(&vs(spec), "t.yaml", "default") {
        Ok(_) => panic!("expected errors for:\n{spec}"),
        Err(LoadError::Invalid { errors, .. }) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => vec![other.to_string()],
    }
}

fn one_error(spec: &str) -> String {
    let e = errors(spec);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

const P: &str = "VirtualService ns/r: ";

#[test]
fn hosts_are_required() {
    assert_eq!(
        one_error("  http: [{route: [{destination: {host: a}}]}]\n"),
        format!("{P}hosts: is required")
    );
}

#[test]
fn invalid_host_names_the_host_and_index() {
    assert_eq!(
        one_error(
            "  hosts: [ok.com, 'foo.*.com']\n  http: [{route: [{destination: {host: a}}]}]\n"
        ),
        format!(
            "{P}hosts[1]: invalid host \"foo.*.com\": wildcard is only allowed as the first character of the first label"
        )
    );
}

#[test]
fn star_host_is_rejected_for_the_mesh_gateway() {
    assert_eq!(
        one_error("  hosts: ['*']\n  http: [{route: [{destination: {host: a}}]}]\n"),
        format!("{P}hosts[0]: invalid host \"*\": `*` is not allowed for the mesh gateway")
    );
    // Bound only to a gateway, `*` is fine.
    load_virtual_services(
        &vs("  hosts: ['*']\n  gateways: [gw]\n  http: [{route: [{destination: {host: a}}]}]\n"),
        "t",
        "d",
    )
    .unwrap();
}

#[test]
fn route_and_redirect_conflict() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    redirect: {uri: /x}\n"
        ),
        format!("{P}http[0]: route and redirect are mutually exclusive")
    );
}

#[test]
fn redirect_and_direct_response_conflict() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - redirect: {uri: /x}\n    directResponse: {status: 200}\n"
        ),
        format!("{P}http[0]: redirect and directResponse are mutually exclusive")
    );
}

#[test]
fn an_action_is_required() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - match: [{uri: {prefix: /}}]\n"),
        format!("{P}http[0]: one of route, redirect or directResponse is required")
    );
}

#[test]
fn mirror_and_mirrors_conflict() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    mirror: {host: b}\n    mirrors: [{destination: {host: c}}]\n"
        ),
        format!("{P}http[0]: mirror and mirrors are mutually exclusive")
    );
}

#[test]
fn negative_weight_is_rejected_with_its_path() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n  - route:\n    - {destination: {host: a}, weight: 50}\n    - {destination: {host: b}, weight: -5}\n"
        ),
        format!("{P}http[1].route[1].weight: weight must be >= 0, got -5")
    );
}

#[test]
fn all_zero_weights_with_several_destinations_are_rejected() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: 0}\n    - {destination: {host: b}, weight: 0}\n"
        ),
        format!(
            "{P}http[0].route: weights of 2 destinations are all 0; at least one must be positive"
        )
    );
}

#[test]
fn weights_need_not_sum_to_100_and_a_single_zero_weight_is_fine() {
    load_virtual_services(
        &vs("  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: 3}\n    - {destination: {host: b}, weight: 1}\n  - route: [{destination: {host: a}, weight: 0}]\n"),
        "t",
        "d",
    )
    .unwrap();
}

#[test]
fn invalid_regex_is_rejected_with_the_pattern() {
    let e = one_error(
        "  hosts: [a]\n  http:\n  - match: [{uri: {regex: '/(unclosed'}}]\n    route: [{destination: {host: a}}]\n",
    );
    assert!(
        e.starts_with(&format!(
            "{P}http[0].match[0].uri.regex: invalid regex \"/(unclosed\": "
        )),
        "{e}"
    );
}

#[test]
fn string_match_with_two_kinds_is_rejected() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - match: [{headers: {x-a: {exact: a, prefix: b}}}]\n    route: [{destination: {host: a}}]\n"
        ),
        format!("{P}http[0].match[0].headers.x-a: only one of exact, prefix or regex may be set")
    );
}

#[test]
fn query_param_prefix_is_unsupported_as_in_istio() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - match: [{queryParams: {q: {prefix: a}}}]\n    route: [{destination: {host: a}}]\n"
        ),
        format!(
            "{P}http[0].match[0].queryParams.q: prefix matching of query parameters (Istio supports exact and regex) is not supported"
        )
    );
}

#[test]
fn bad_durations_are_rejected() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    timeout: '10'\n"
        ),
        format!("{P}http[0].timeout: invalid duration \"10\": missing unit (use ms, s, m or h)")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    timeout: 10\n"
        ),
        format!("{P}http[0].timeout: invalid type: integer `10`, expected a string")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    retries: {attempts: 3, perTryTimeout: 100us}\n"
        ),
        format!(
            "{P}http[0].retries.perTryTimeout: invalid duration \"100us\": must be at least 1ms"
        )
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault: {delay: {fixedDelay: -1s, percentage: {value: 5}}}\n"
        ),
        format!(
            "{P}http[0].fault.delay.fixedDelay: invalid duration \"-1s\": duration must not be negative"
        )
    );
}

#[test]
fn retry_on_tokens_are_checked() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    retries: {attempts: 3, retryOn: '5xx,bogus'}\n"
        ),
        format!("{P}http[0].retries.retryOn: \"bogus\" is not a valid retryOn policy")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    retries: {attempts: -1}\n"
        ),
        format!("{P}http[0].retries.attempts: attempts must be >= 0, got -1")
    );
}

#[test]
fn fault_abort_status_and_percentage_ranges() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault: {abort: {httpStatus: 99, percentage: {value: 10}}}\n"
        ),
        format!("{P}http[0].fault.abort.httpStatus: 99 is out of range [200, 599]")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    fault: {abort: {httpStatus: 503, percentage: {value: 150}}}\n"
        ),
        format!("{P}http[0].fault.abort.percentage: 150 is out of range [0, 100]")
    );
}

#[test]
fn redirect_rules() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - redirect: {uri: /x, redirectCode: 200}\n"),
        format!(
            "{P}http[0].redirect.redirectCode: 200 is not a redirect status (301, 302, 303, 307 or 308)"
        )
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - redirect: {port: 8080, derivePort: FROM_REQUEST_PORT}\n"
        ),
        format!("{P}http[0].redirect: port and derivePort are mutually exclusive")
    );
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - redirect: {}\n"),
        format!(
            "{P}http[0].redirect: redirect must specify uri, authority, scheme, port or derivePort"
        )
    );
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - redirect: {uri: /x}\n    rewrite: {uri: /y}\n"),
        format!("{P}http[0]: redirect and rewrite are mutually exclusive")
    );
}

#[test]
fn direct_response_status_range_and_body() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - directResponse: {status: 600}\n"),
        format!("{P}http[0].directResponse.status: 600 is out of range [200, 599]")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n"
        ),
        format!("{P}http[0].directResponse.body: string and bytes are mutually exclusive")
    );
}

#[test]
fn rewrite_uri_and_regex_rewrite_conflict() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n"
        ),
        format!("{P}http[0].rewrite: uri and uriRegexRewrite are mutually exclusive")
    );
}

#[test]
fn header_operation_names_are_checked() {
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    headers: {request: {set: {'bad header': x}}}\n"
        ),
        format!("{P}http[0].headers.request.set.bad header: invalid header \"bad header\"")
    );
}

#[test]
fn destination_host_is_required_and_port_in_range() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - route: [{destination: {subset: v1}}]\n"),
        format!("{P}http[0].route[0].destination.host: is required")
    );
    assert_eq!(
        one_error(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a, port: {number: 70000}}}]\n"
        ),
        format!("{P}http[0].route[0].destination.port.number: 70000 is out of range [1, 65535]")
    );
}

#[test]
fn unknown_fields_and_wrong_types_are_decode_errors_with_paths() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, wieght: 5}]\n"),
        format!(
            "{P}http[0].route[0].wieght: unknown field `wieght`, expected one of `destination`, `weight`, `headers`"
        )
    );
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, weight: heavy}]\n"),
        format!("{P}http[0].route[0].weight: invalid type: string \"heavy\", expected i64")
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let e = errors(
        "  hosts: ['a..b']\n  http:\n  - route: [{destination: {host: a}, weight: -1}, {destination: {host: b}}]\n    timeout: soon\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn delegate_is_reported_unsupported() {
    assert_eq!(
        one_error("  hosts: [a]\n  http:\n  - delegate: {name: x}\n"),
        format!("{P}http[0].delegate: delegate VirtualServices is not supported")
    );
}

#[test]
fn tls_routes_need_sni_hosts() {
    assert_eq!(
        one_error(
            "  hosts: [a.com]\n  gateways: [gw]\n  tls:\n  - match: [{port: 443}]\n    route: [{destination: {host: a.com}}]\n"
        ),
        format!("{P}tls[0].match[0].sniHosts: is required")
    );
}

#[test]
fn api_version_and_envelope_are_checked() {
    let err = load_virtual_services("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a]}\n", "f.yaml", "default")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.yaml (document 1): VirtualService default/r: unsupported apiVersion \"networking.istio.io/v2\"; expected networking.istio.io/v1 or v1beta1 or v1alpha3"
    );
    for version in ["v1", "v1beta1", "v1alpha3"] {
        let yaml = format!(
            "apiVersion: networking.istio.io/{version}\nkind: VirtualService\nmetadata: {{name: r}}\nspec: {{hosts: [a], http: [{{route: [{{destination: {{host: a}}}}]}}]}}\n"
        );
        VirtualService::from_yaml(&yaml).unwrap();
    }
}
