//! Gateway validation (exact messages and paths) and server selection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_gateway::{Credential, Gateway, ServerTable, TlsMode, TlsVersion};

fn compile(servers: &str) -> Result<Gateway, Vec<String>> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {{name: gw, namespace: edge}}\nspec:\n  servers:\n{servers}"
    );
    let docs = mesh_routing::parse_documents(&yaml, "gw.yaml", "default").unwrap();
    Gateway::from_document(&docs[0]).map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn one_error(servers: &str) -> String {
    let errors = compile(servers).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors[0].clone()
}

const P: &str = "Gateway edge/gw: ";

#[test]
fn a_valid_gateway_compiles_every_tls_mode() {
    let gw = compile(
        "  - port: {number: 80, protocol: HTTP, name: http}\n    hosts: ['*']\n    tls: {httpsRedirect: true}\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['./a.example.com']\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_2}\n  - port: {number: 8443, protocol: HTTPS}\n    hosts: ['b.example.com']\n    tls: {mode: MUTUAL, credentialName: b-cred}\n  - port: {number: 15443, protocol: TLS}\n    hosts: ['*.local']\n    tls: {mode: AUTO_PASSTHROUGH}\n  - port: {number: 9443, protocol: TLS}\n    hosts: ['db.example.com']\n    tls: {mode: PASSTHROUGH}\n  - port: {number: 15012, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: ISTIO_MUTUAL}\n",
    )
    .unwrap();
    let s = gw.servers();
    assert!(s[0].tls.as_ref().unwrap().https_redirect);
    assert_eq!(s[1].hosts[0].namespace.as_deref(), Some("edge"));
    assert_eq!(
        s[1].tls.as_ref().unwrap().credential,
        Credential::Files {
            certificate: "/c.pem".into(),
            private_key: "/k.pem".into()
        }
    );
    assert_eq!(
        s[1].tls.as_ref().unwrap().min_version,
        Some(TlsVersion::V1_2)
    );
    assert_eq!(s[2].tls.as_ref().unwrap().mode, TlsMode::Mutual);
    assert_eq!(s[3].tls.as_ref().unwrap().mode, TlsMode::AutoPassthrough);
    assert_eq!(s[4].tls.as_ref().unwrap().credential, Credential::None);
    assert_eq!(gw.binding_name(), "edge/gw");
}

#[test]
fn servers_are_required() {
    let docs = mesh_routing::parse_documents("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: edge}\nspec: {}\n", "f", "d").unwrap();
    assert_eq!(
        Gateway::from_document(&docs[0]).unwrap_err().to_string(),
        format!("{P}servers: is required")
    );
}

#[test]
fn port_number_protocol_and_hosts_are_checked() {
    assert_eq!(
        one_error("  - port: {number: 0, protocol: HTTP}\n    hosts: ['*']\n"),
        format!("{P}servers[0].port.number: 0 is out of range [1, 65535]")
    );
    assert_eq!(
        one_error("  - port: {number: 80, protocol: QUIC}\n    hosts: ['*']\n"),
        format!(
            "{P}servers[0].port.protocol: unknown protocol \"QUIC\"; expected HTTP, HTTPS, HTTP2, GRPC, TLS, TCP or MONGO"
        )
    );
    assert_eq!(
        one_error("  - port: {number: 80, protocol: HTTP}\n"),
        format!("{P}servers[0].hosts: is required")
    );
    assert_eq!(
        one_error("  - port: {number: 80, protocol: HTTP}\n    hosts: ['Bad_NS!/a.com']\n"),
        format!(
            "{P}servers[0].hosts[0]: invalid namespace \"Bad_NS!\" in host \"Bad_NS!/a.com\"; expected `*`, `.` or a namespace name"
        )
    );
    assert_eq!(
        one_error("  - port: {number: 80, protocol: HTTP}\n    hosts: ['ns/a.*.com']\n"),
        format!(
            "{P}servers[0].hosts[0]: invalid host \"a.*.com\": wildcard is only allowed as the first character of the first label"
        )
    );
}

#[test]
fn tls_rules() {
    assert_eq!(
        one_error("  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n"),
        format!("{P}servers[0].tls: HTTPS and TLS servers need tls settings")
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE}\n"
        ),
        format!("{P}servers[0].tls.serverCertificate: required when credentialName is not set")
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: MUTUAL, serverCertificate: c, privateKey: k}\n"
        ),
        format!(
            "{P}servers[0].tls.caCertificates: required for MUTUAL when credentialName is not set"
        )
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: PASSTHROUGH}\n"
        ),
        format!("{P}servers[0].tls.mode: PASSTHROUGH requires port protocol TLS")
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: ISTIO_MUTUAL, credentialName: x}\n"
        ),
        format!(
            "{P}servers[0].tls: ISTIO_MUTUAL uses the mesh identity; do not set certificates or credentialName"
        )
    );
    assert_eq!(
        one_error(
            "  - port: {number: 80, protocol: HTTP}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: x}\n"
        ),
        format!("{P}servers[0].tls: a plain-text server may only set tls.httpsRedirect")
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: x, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}\n"
        ),
        format!("{P}servers[0].tls: minProtocolVersion is higher than maxProtocolVersion")
    );
    assert_eq!(
        one_error(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: x, minProtocolVersion: SSLV3}\n"
        ),
        format!(
            "{P}servers[0].tls.minProtocolVersion: unknown variant \"SSLV3\", expected TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2 or TLSV1_3"
        )
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let e = one_error("  - port: {number: 80, protocol: HTTP, nmae: x}\n    hosts: ['*']\n");
    assert!(
        e.starts_with(&format!("{P}servers[0].port.nmae: unknown field `nmae`")),
        "{e}"
    );
}

#[test]
fn selection_by_sni_prefers_exact_then_longest_wildcard_then_star() {
    let gw = compile(
        "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: any}\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*.example.com']\n    tls: {mode: SIMPLE, credentialName: wild}\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*.api.example.com', 'x.org']\n    tls: {mode: SIMPLE, credentialName: api}\n  - port: {number: 443, protocol: HTTPS}\n    hosts: ['exact.example.com']\n    tls: {mode: SIMPLE, credentialName: exact}\n  - port: {number: 80, protocol: HTTP}\n    hosts: ['*.example.com']\n",
    )
    .unwrap();
    let table = ServerTable::new(&[gw]);
    let cred = |sni: Option<&str>| match &table
        .select_tls(443, sni)
        .unwrap()
        .server
        .tls
        .as_ref()
        .unwrap()
        .credential
    {
        Credential::Name(n) => n.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(cred(Some("exact.example.com")), "exact");
    assert_eq!(cred(Some("v1.api.example.com")), "api");
    assert_eq!(cred(Some("X.ORG")), "api");
    assert_eq!(cred(Some("www.example.com")), "wild");
    assert_eq!(cred(Some("other.net")), "any");
    assert_eq!(cred(None), "any");
    // Plain HTTP servers are chosen by Host, never for TLS.
    assert!(table.select_http(80, "www.example.com").is_some());
    assert!(table.select_http(80, "other.net").is_none());
    assert!(table.select_http(443, "www.example.com").is_none());
    assert!(table.select_tls(8443, Some("exact.example.com")).is_none());
}

#[test]
fn tls_routes_follow_sni_port_gateway_and_order() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first, namespace: edge}
spec:
  hosts: ['*.example.com']
  gateways: [gw]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: a.internal}}]
  - match: [{sniHosts: ['*.example.com'], port: 443}]
    route: [{destination: {host: wild.internal}}]
  - match: [{sniHosts: [m.example.com], gateways: [mesh]}]
    route: [{destination: {host: mesh-only.internal}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second, namespace: edge}
spec:
  hosts: [b.example.com]
  gateways: [gw]
  tls:
  - match: [{sniHosts: [b.example.com]}]
    route: [{destination: {host: b.internal}}]
";
    let vss = mesh_routing::load_virtual_services(yaml, "vs.yaml", "default").unwrap();
    let table = mesh_gateway::TlsRouteTable::build(&vss, "edge/gw");
    let host = |port, sni: &str| {
        table
            .route(port, sni, None)
            .map(|d| d.iter().next().unwrap().destination.host.clone())
    };
    assert_eq!(host(443, "A.example.com").as_deref(), Some("a.internal"));
    // The earlier wildcard route shadows the later VirtualService on port 443, not on 8443.
    assert_eq!(host(443, "b.example.com").as_deref(), Some("wild.internal"));
    assert_eq!(host(8443, "b.example.com").as_deref(), Some("b.internal"));
    assert_eq!(host(8443, "c.example.com"), None);
    // A match bound to `mesh` does not apply to the gateway.
    assert_eq!(host(8443, "m.example.com"), None);
    let mesh = mesh_gateway::TlsRouteTable::build(&vss, "mesh");
    assert_eq!(
        mesh.route(443, "m.example.com", None)
            .map(|d| d.iter().next().unwrap().destination.host.clone())
            .as_deref(),
        Some("mesh-only.internal")
    );
}

#[test]
fn gateway_route_tables_intersect_server_and_virtual_service_hosts_per_port() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  servers:
  - {port: {number: 80, protocol: HTTP}, hosts: ['*/a.example.com']}
  - {port: {number: 8080, protocol: HTTP}, hosts: ['edge/b.example.com']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wide, namespace: edge}
spec:
  hosts: ['*.example.com']
  gateways: [gw]
  http: [{name: wide, route: [{destination: {host: web.internal}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: foreign, namespace: other}
spec:
  hosts: [b.example.com]
  gateways: [edge/gw]
  http: [{name: foreign, route: [{destination: {host: web.internal}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh-only, namespace: edge}
spec:
  hosts: [a.example.com]
  http: [{name: mesh-only, route: [{destination: {host: web.internal}}]}]
";
    let b = mesh_gateway::Bundle::load(yaml, "t.yaml", "default").unwrap();
    let tables = mesh_gateway::gateway_route_tables(&b.gateways[0], &b.virtual_services);
    let hit = |port: u16, host: &str| {
        let req = http::Request::get("/")
            .header("host", host)
            .body(())
            .unwrap();
        tables[&port]
            .route(&req)
            .route()
            .map(|r| r.name().unwrap_or_default().to_string())
    };
    assert_eq!(hit(80, "a.example.com").as_deref(), Some("wide"));
    assert_eq!(
        hit(80, "b.example.com"),
        None,
        "port 80 serves a.example.com only"
    );
    // `edge/b.example.com` admits VirtualServices of namespace edge only.
    assert_eq!(hit(8080, "b.example.com").as_deref(), Some("wide"));
    assert_eq!(tables[&8080].domains(), ["b.example.com"]);
}
