//! ServiceEntry validation (messages and paths) and the outbound traffic policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use mesh_gateway::{
    EndpointAddress, KnownHosts, OutboundMode, OutboundPolicyLayer, Resolution, ServiceEntry,
};
use mesh_routing::{
    RouteLayer, RouteTable, SharedRouteTable, TableOptions, UnknownHost, load_virtual_services,
    parse_documents,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn compile(spec: &str) -> Result<ServiceEntry, Vec<String>> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se, namespace: ns}}\nspec:\n{spec}"
    );
    let docs = parse_documents(&yaml, "se.yaml", "default").unwrap();
    ServiceEntry::from_document(&docs[0]).map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn one_error(spec: &str) -> String {
    let e = compile(spec).unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].clone()
}

const P: &str = "ServiceEntry ns/se: ";

#[test]
fn static_and_dns_entries_compile() {
    let se = compile("  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  endpoints: [{address: backend.example.com, weight: 3, locality: us-east/a}]\n").unwrap();
    assert_eq!(se.resolution(), Resolution::Dns);
    assert_eq!(
        se.endpoints()[0].address,
        EndpointAddress::Dns("backend.example.com".into())
    );
    assert_eq!(se.endpoints()[0].weight, 3);
    let se = compile("  hosts: ['*.internal']\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n").unwrap();
    assert_eq!(
        se.endpoint_addr(&se.endpoints()[0], &se.ports()[0])
            .unwrap()
            .to_string(),
        "10.0.0.1:8080"
    );
}

#[test]
fn validation_rules() {
    assert_eq!(
        one_error("  ports: [{number: 80, name: http}]\n"),
        format!("{P}hosts: is required")
    );
    assert_eq!(
        one_error("  hosts: ['*']\n"),
        format!("{P}hosts[0]: invalid host \"*\": `*` is not allowed in a ServiceEntry")
    );
    assert_eq!(
        one_error("  hosts: [a.com]\n  addresses: [10.0.0.0/33]\n"),
        format!("{P}addresses[0]: \"10.0.0.0/33\" is not an IP address or CIDR")
    );
    assert_eq!(
        one_error(
            "  hosts: [a.com]\n  ports: [{number: 80, name: http}, {number: 80, name: web}]\n"
        ),
        format!("{P}ports[1].number: port number 80 is not unique")
    );
    assert_eq!(
        one_error("  hosts: [a.com]\n  resolution: STATIC\n"),
        format!("{P}endpoints: resolution STATIC needs endpoints")
    );
    assert_eq!(
        one_error("  hosts: [a.com]\n  endpoints: [{address: 1.2.3.4}]\n"),
        format!("{P}endpoints: resolution NONE takes no endpoints")
    );
    assert_eq!(
        one_error(
            "  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: backend.example.com}]\n"
        ),
        format!(
            "{P}endpoints[0].address: \"backend.example.com\" is not an IP address (STATIC endpoints need IPs)"
        )
    );
    assert_eq!(
        one_error(
            "  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {grpc: 9000}}]\n"
        ),
        format!("{P}endpoints[0].ports.grpc: port \"grpc\" is not defined by the ServiceEntry")
    );
    assert_eq!(
        one_error("  hosts: ['*.a.com']\n  resolution: DNS\n"),
        format!(
            "{P}hosts[0]: invalid host \"*.a.com\": DNS resolution without endpoints needs concrete hosts"
        )
    );
    assert_eq!(
        one_error("  hosts: [a.com]\n  resolution: MAGIC\n"),
        format!(
            "{P}resolution: unknown variant \"MAGIC\", expected NONE, STATIC, DNS or DNS_ROUND_ROBIN"
        )
    );
}

#[test]
fn sidecar_outbound_mode_is_read_and_checked() {
    let doc = |mode: &str| {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default}}\nspec:\n  outboundTrafficPolicy: {{mode: {mode}}}\n"
        );
        parse_documents(&yaml, "sc.yaml", "istio-system")
            .unwrap()
            .remove(0)
    };
    assert_eq!(
        OutboundMode::from_sidecar(&doc("REGISTRY_ONLY")).unwrap(),
        OutboundMode::RegistryOnly
    );
    assert_eq!(
        OutboundMode::from_sidecar(&doc("ALLOW_ANY")).unwrap(),
        OutboundMode::AllowAny
    );
    assert_eq!(
        OutboundMode::from_sidecar(&doc("DENY"))
            .unwrap_err()
            .to_string(),
        "Sidecar istio-system/default: outboundTrafficPolicy.mode: unknown variant \"DENY\", expected ALLOW_ANY or REGISTRY_ONLY"
    );
}

/// A sidecar outbound stack: VirtualService routing, then the outbound policy for requests
/// that no route matched.
async fn outbound(mode: OutboundMode, host: &str) -> u16 {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: routed}\nspec:\n  hosts: [routed.example.com]\n  http: [{route: [{destination: {host: routed.example.com}}]}]\n";
    let table = RouteTable::build(
        &load_virtual_services(vs, "vs", "default").unwrap(),
        &TableOptions::default(),
    );
    let se = compile("  hosts: [registered.example.com, '*.wild.example.com']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n").unwrap();
    let svc = ServiceBuilder::new()
        .layer(RouteLayer::new(SharedRouteTable::new(table)).unknown_host(UnknownHost::Forward))
        .layer(OutboundPolicyLayer::new(
            mode,
            KnownHosts::from_service_entries([&se]),
        ))
        .service(service_fn(|_req: http::Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }));
    let req = http::Request::get("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    svc.oneshot(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn registry_only_blocks_unknown_hosts_with_502() {
    assert_eq!(
        outbound(OutboundMode::RegistryOnly, "unregistered.example.org").await,
        502
    );
    assert_eq!(
        outbound(OutboundMode::RegistryOnly, "registered.example.com:80").await,
        200
    );
    assert_eq!(
        outbound(OutboundMode::RegistryOnly, "a.wild.example.com").await,
        200
    );
    // A host with a VirtualService route is known to the mesh.
    assert_eq!(
        outbound(OutboundMode::RegistryOnly, "routed.example.com").await,
        200
    );
}

#[tokio::test]
async fn allow_any_passes_unknown_hosts() {
    assert_eq!(
        outbound(OutboundMode::AllowAny, "unregistered.example.org").await,
        200
    );
}
