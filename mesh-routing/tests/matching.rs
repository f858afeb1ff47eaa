//! Istio matching semantics, one table of cases per matcher, checked through compiled tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_routing::{ListenerPort, RouteMatch, RouteTable, TableOptions, load_virtual_services};

/// A table from VirtualService documents (YAML, `---`-separated).
fn table(yaml: &str) -> RouteTable {
    table_for(yaml, &TableOptions::default())
}

fn table_for(yaml: &str, options: &TableOptions) -> RouteTable {
    RouteTable::build(
        &load_virtual_services(yaml, "t.yaml", "default").unwrap(),
        options,
    )
}

/// One VirtualService for host `svc` whose routes are named; `http` is indented by 2.
fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [svc]\n  http:\n{http}"
    )
}

/// A single route named `hit` guarded by one match block.
fn guarded(match_block: &str) -> RouteTable {
    table(&vs(&format!(
        "  - name: hit\n    match: [{match_block}]\n    route: [{{destination: {{host: svc}}}}]\n"
    )))
}

type Req = http::request::Builder;

fn get(path: &str) -> Req {
    http::Request::get(path).header("host", "svc")
}

/// Name of the route the request hits, `404` for no route, `none` for no virtual host.
fn hit(t: &RouteTable, req: Req) -> String {
    match t.route(&req.body(()).unwrap()) {
        RouteMatch::Matched(m) => m.route().name().unwrap_or("unnamed").to_string(),
        RouteMatch::NoRoute => "404".into(),
        RouteMatch::NoVirtualHost => "none".into(),
    }
}

fn hits(t: &RouteTable, req: Req) -> bool {
    hit(t, req) == "hit"
}

#[test]
fn uri_prefix_is_a_plain_string_prefix() {
    let t = guarded("{uri: {prefix: /v2}}");
    assert!(hits(&t, get("/v2")));
    assert!(hits(&t, get("/v2example")));
    assert!(hits(&t, get("/v2/x?q=1")));
    assert!(!hits(&t, get("/v1")));
    assert!(!hits(&t, get("/V2")));
}

#[test]
fn uri_exact_ignores_the_query_string_and_is_case_sensitive() {
    let t = guarded("{uri: {exact: /login}}");
    assert!(hits(&t, get("/login?next=/")));
    assert!(!hits(&t, get("/login/")));
    assert!(!hits(&t, get("/Login")));
}

#[test]
fn uri_regex_must_match_the_whole_path() {
    let t = guarded("{uri: {regex: '/api/v[0-9]+'}}");
    assert!(hits(&t, get("/api/v12")));
    assert!(hits(&t, get("/api/v1?x=y")));
    assert!(!hits(&t, get("/api/v1/users")));
    assert!(!hits(&t, get("/x/api/v1")));
}

#[test]
fn ignore_uri_case_applies_to_exact_and_prefix_only() {
    let t = guarded("{uri: {prefix: /API}, ignoreUriCase: true}");
    assert!(hits(&t, get("/api/users")));
    assert!(hits(&t, get("/Api")));
    let t = guarded("{uri: {exact: /Login}, ignoreUriCase: true}");
    assert!(hits(&t, get("/LOGIN")));
    let t = guarded("{uri: {regex: /abc}, ignoreUriCase: true}");
    assert!(!hits(&t, get("/ABC")));
}

#[test]
fn method_scheme_and_authority() {
    let t = guarded("{method: {exact: POST}}");
    assert!(hits(&t, http::Request::post("/").header("host", "svc")));
    assert!(!hits(&t, get("/")));
    let t = guarded("{scheme: {exact: https}}");
    assert!(hits(&t, http::Request::get("https://svc/")));
    assert!(!hits(&t, http::Request::get("http://svc/")));
    // authority matches the raw Host, port included.
    let t = guarded("{authority: {exact: 'svc:8080'}}");
    assert!(hits(&t, http::Request::get("/").header("host", "svc:8080")));
    assert!(!hits(&t, get("/")));
    let t = guarded("{authority: {prefix: svc}}");
    assert!(hits(&t, get("/")));
}

#[test]
fn header_names_are_case_insensitive_values_case_sensitive() {
    let t = guarded("{headers: {End-User: {exact: jason}}}");
    assert!(hits(&t, get("/").header("end-user", "jason")));
    assert!(hits(&t, get("/").header("END-USER", "jason")));
    assert!(!hits(&t, get("/").header("end-user", "Jason")));
    assert!(!hits(&t, get("/")));
}

#[test]
fn any_of_repeated_header_values_may_match() {
    let t = guarded("{headers: {x-group: {exact: beta}}}");
    assert!(hits(
        &t,
        get("/")
            .header("x-group", "alpha")
            .header("x-group", "beta")
    ));
    assert!(!hits(
        &t,
        get("/")
            .header("x-group", "alpha")
            .header("x-group", "gamma")
    ));
}

#[test]
fn empty_header_match_means_present() {
    let t = guarded("{headers: {x-debug: {}}}");
    assert!(hits(&t, get("/").header("x-debug", "")));
    assert!(hits(&t, get("/").header("x-debug", "1")));
    assert!(!hits(&t, get("/")));
}

#[test]
fn header_prefix_and_regex() {
    let t = guarded("{headers: {user-agent: {prefix: Mozilla}}}");
    assert!(hits(&t, get("/").header("user-agent", "Mozilla/5.0")));
    let t = guarded("{headers: {x-v: {regex: 'v[12]'}}}");
    assert!(hits(&t, get("/").header("x-v", "v2")));
    assert!(!hits(&t, get("/").header("x-v", "v23")));
}

#[test]
fn without_headers_treats_a_missing_header_as_empty() {
    // exact "foo" does not match "", so a missing header satisfies withoutHeaders.
    let t = guarded("{withoutHeaders: {x-a: {exact: foo}}}");
    assert!(hits(&t, get("/")));
    assert!(hits(&t, get("/").header("x-a", "bar")));
    assert!(!hits(&t, get("/").header("x-a", "foo")));
    // prefix "" matches "", so a missing header does not satisfy it.
    let t = guarded("{withoutHeaders: {x-a: {prefix: ''}}}");
    assert!(!hits(&t, get("/")));
    // regex ".*" matches "" too.
    let t = guarded("{withoutHeaders: {x-a: {regex: '.*'}}}");
    assert!(!hits(&t, get("/")));
}

#[test]
fn without_headers_presence_means_absent() {
    let t = guarded("{withoutHeaders: {x-canary: {}}}");
    assert!(hits(&t, get("/")));
    assert!(!hits(&t, get("/").header("x-canary", "")));
}

#[test]
fn query_params_are_decoded_and_case_sensitive() {
    let t = guarded("{queryParams: {user: {exact: jane doe}}}");
    assert!(hits(&t, get("/?user=jane%20doe")));
    assert!(hits(&t, get("/?us%65r=jane%20doe")));
    assert!(!hits(&t, get("/?User=jane%20doe")));
    assert!(!hits(&t, get("/?user=jane")));
    let t = guarded("{queryParams: {v: {regex: '[0-9]+'}}}");
    assert!(hits(&t, get("/?v=42")));
    assert!(!hits(&t, get("/?v=42a")));
    let t = guarded("{queryParams: {debug: {}}}");
    assert!(hits(&t, get("/?debug")));
    assert!(!hits(&t, get("/?nodebug=1")));
}

#[test]
fn conditions_in_a_block_are_anded_blocks_are_ored() {
    let t = table(&vs(
        "  - name: hit\n    match:\n    - {uri: {prefix: /a}, headers: {x: {exact: '1'}}}\n    - {uri: {prefix: /b}}\n    route: [{destination: {host: svc}}]\n",
    ));
    assert!(hits(&t, get("/a").header("x", "1")));
    assert!(!hits(&t, get("/a")));
    assert!(hits(&t, get("/b")));
    assert_eq!(hit(&t, get("/c")), "404");
}

#[test]
fn port_restricts_to_the_listener_port() {
    let t = guarded("{port: 8080}");
    let mut req = get("/").body(()).unwrap();
    req.extensions_mut().insert(ListenerPort(8080));
    assert!(t.route(&req).route().is_some());
    req.extensions_mut().insert(ListenerPort(9090));
    assert!(t.route(&req).route().is_none());
    // Without a listener port, the Host port stands in.
    assert!(hits(&t, http::Request::get("/").header("host", "svc:8080")));
    assert!(!hits(&t, get("/")));
}

#[test]
fn first_match_wins_in_order() {
    let t = table(&vs(
        "  - name: first\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: a}}]\n  - name: second\n    match: [{uri: {exact: /api/x}}]\n    route: [{destination: {host: b}}]\n  - name: rest\n    route: [{destination: {host: c}}]\n",
    ));
    // The exact match is more specific but comes later: the prefix wins.
    assert_eq!(hit(&t, get("/api/x")), "first");
    assert_eq!(hit(&t, get("/other")), "rest");
}

#[test]
fn first_match_order_spans_virtual_services_for_the_same_host() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: one}\nspec:\n  hosts: [svc]\n  http:\n  - name: one-api\n    match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: a}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: two}\nspec:\n  hosts: [svc.default.svc.cluster.local]\n  http:\n  - name: two-api-x\n    match: [{uri: {exact: /api/x}}]\n    route: [{destination: {host: b}}]\n  - name: two-rest\n    route: [{destination: {host: b}}]\n";
    let t = table(yaml);
    assert_eq!(hit(&t, get("/api/x")), "one-api");
    assert_eq!(hit(&t, get("/z")), "two-rest");
}

#[test]
fn host_with_routes_but_no_match_is_404_and_unknown_host_has_no_virtual_host() {
    let t = guarded("{uri: {exact: /only}}");
    assert_eq!(hit(&t, get("/other")), "404");
    assert_eq!(
        hit(&t, http::Request::get("/only").header("host", "unknown")),
        "none"
    );
}

fn hosts_vs(hosts: &str) -> RouteTable {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [{hosts}]\n  gateways: [gw]\n  http:\n  - name: hit\n    route: [{{destination: {{host: svc}}}}]\n"
    );
    table_for(&yaml, &TableOptions::gateway("default/gw"))
}

#[test]
fn wildcard_hosts_match_subdomains_only() {
    let t = hosts_vs("'*.foo.com'");
    assert!(hits(
        &t,
        http::Request::get("/").header("host", "a.foo.com")
    ));
    assert!(hits(
        &t,
        http::Request::get("/").header("host", "a.b.foo.com")
    ));
    assert_eq!(
        hit(&t, http::Request::get("/").header("host", "foo.com")),
        "none"
    );
}

#[test]
fn host_matching_ignores_port_and_case() {
    let t = hosts_vs("www.example.com");
    assert!(hits(
        &t,
        http::Request::get("/").header("host", "www.example.com:8443")
    ));
    assert!(hits(
        &t,
        http::Request::get("/").header("host", "WWW.Example.com")
    ));
    assert!(hits(&t, http::Request::get("http://www.example.com:81/")));
}

#[test]
fn exact_host_beats_longest_wildcard_beats_star() {
    let mk = |name: &str, host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: ['{host}']\n  gateways: [gw]\n  http:\n  - name: {name}\n    route: [{{destination: {{host: x.com}}}}]\n"
        )
    };
    let yaml = [
        mk("star", "*"),
        mk("com", "*.com"),
        mk("foo", "*.foo.com"),
        mk("exact", "a.foo.com"),
    ]
    .join("---\n");
    let t = table_for(&yaml, &TableOptions::gateway("default/gw"));
    let h = |host: &str| hit(&t, http::Request::get("/").header("host", host));
    assert_eq!(h("a.foo.com"), "exact");
    assert_eq!(h("b.foo.com"), "foo");
    assert_eq!(h("b.bar.com"), "com");
    assert_eq!(h("localhost"), "star");
}

#[test]
fn short_names_are_qualified_and_answer_to_istio_aliases() {
    let t = table(&vs(
        "  - name: hit\n    route: [{destination: {host: svc}}]\n",
    ));
    for host in [
        "svc",
        "svc.default",
        "svc.default.svc",
        "svc.default.svc.cluster.local",
        "svc:9080",
    ] {
        assert!(
            hits(&t, http::Request::get("/").header("host", host)),
            "{host}"
        );
    }
    // A proxy in another namespace does not get the bare short name.
    let other = TableOptions {
        namespace: "other".into(),
        ..TableOptions::default()
    };
    let t = table_for(
        &vs("  - name: hit\n    route: [{destination: {host: svc}}]\n"),
        &other,
    );
    assert_eq!(
        hit(&t, http::Request::get("/").header("host", "svc")),
        "none"
    );
    assert!(hits(
        &t,
        http::Request::get("/").header("host", "svc.default")
    ));
}

#[test]
fn tables_are_bound_to_a_gateway_and_match_gateways_override() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ext}\nspec:\n  hosts: [ext.com]\n  gateways: [mesh, istio-system/egress]\n  http:\n  - name: to-egress\n    match: [{gateways: [mesh]}]\n    route: [{destination: {host: egress.istio-system.svc.cluster.local}}]\n  - name: to-external\n    match: [{gateways: [istio-system/egress]}]\n    route: [{destination: {host: ext.com}}]\n";
    let mesh = table_for(yaml, &TableOptions::default());
    let egress = table_for(yaml, &TableOptions::gateway("istio-system/egress"));
    let other = table_for(yaml, &TableOptions::gateway("default/ingress"));
    let req = || http::Request::get("/").header("host", "ext.com");
    assert_eq!(hit(&mesh, req()), "to-egress");
    assert_eq!(hit(&egress, req()), "to-external");
    assert_eq!(hit(&other, req()), "none");
}

#[test]
fn source_labels_and_namespace_select_per_proxy() {
    let t = |labels: &[(&str, &str)], ns: &str| {
        let options = TableOptions {
            namespace: ns.into(),
            source_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TableOptions::default()
        };
        table_for(
            &vs(
                "  - name: hit\n    match: [{sourceLabels: {app: web}, sourceNamespace: default}]\n    route: [{destination: {host: svc}}]\n",
            ),
            &options,
        )
    };
    assert!(hits(
        &t(&[("app", "web"), ("v", "1")], "default"),
        http::Request::get("/").header("host", "svc.default")
    ));
    assert_eq!(hit(&t(&[("app", "api")], "default"), get("/")), "404");
    assert_eq!(
        hit(
            &t(&[("app", "web")], "prod"),
            http::Request::get("/").header("host", "svc.default")
        ),
        "404"
    );
}

#[test]
fn many_regex_routes_keep_first_match_order() {
    // Enough regex routes that the table matches them with one RegexSet pass.
    let mut http = String::new();
    for i in 0..12 {
        http.push_str(&format!("  - name: n{i}\n    match: [{{uri: {{regex: '/never-{i}/.*'}}}}]\n    route: [{{destination: {{host: svc}}}}]\n"));
    }
    http.push_str("  - name: needs-header\n    match: [{uri: {regex: '/a.*'}, headers: {x: {exact: '1'}}}]\n    route: [{destination: {host: svc}}]\n");
    http.push_str("  - name: broad\n    match: [{uri: {regex: '/a.*'}}]\n    route: [{destination: {host: svc}}]\n");
    http.push_str("  - name: narrow\n    match: [{uri: {regex: '/ab.*'}}]\n    route: [{destination: {host: svc}}]\n");
    let t = table(&vs(&http));
    assert_eq!(hit(&t, get("/abc").header("x", "1")), "needs-header");
    assert_eq!(hit(&t, get("/abc")), "broad");
    assert_eq!(hit(&t, get("/never-7/x")), "n7");
    assert_eq!(hit(&t, get("/never-7")), "404");
    assert_eq!(hit(&t, get("/zzz")), "404");
}
