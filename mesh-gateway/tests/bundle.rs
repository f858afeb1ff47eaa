//! Loading whole configurations: mixed kinds, every problem with its origin, files and directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use mesh_gateway::Bundle;

const VALID: &str = "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext}
spec: {hosts: [api.example.com], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: ext}
spec: {host: api.example.com, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
apiVersion: networking.istio.io/v1
kind: EnvoyFilter
metadata: {name: lua}
spec: {}
";

#[test]
fn mixed_kinds_load_into_one_bundle() {
    let b = Bundle::load(VALID, "mesh.yaml", "default").unwrap();
    assert_eq!(
        (
            b.gateways.len(),
            b.service_entries.len(),
            b.sidecars.len(),
            b.peer_authentications.len()
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(b.ignored.len(), 1);
    assert_eq!(b.ignored[0].1.to_string(), "EnvoyFilter default/lua");
    assert_eq!(b.destination_rules.len(), 1);
    assert_eq!(b.ignored[0].0, "mesh.yaml (document 6)");
}

#[test]
fn every_problem_is_reported_with_file_document_resource_and_field() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-weight}
spec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: -1}]}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: no-servers}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-action}
spec: {action: MAYBE}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-weight}
spec: {hosts: [b], http: [{route: [{destination: {host: b}}]}]}
";
    let errors = Bundle::load(yaml, "cfg.yaml", "default").unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        lines[0],
        "cfg.yaml (document 1): VirtualService default/bad-weight: http[0].route[0].weight: weight must be >= 0, got -1"
    );
    assert_eq!(
        lines[1],
        "cfg.yaml (document 2): Gateway default/no-servers: servers: is required"
    );
    assert!(
        lines[2]
            .starts_with("cfg.yaml (document 3): AuthorizationPolicy default/bad-action: action: "),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        "cfg.yaml (document 4): VirtualService default/bad-weight is defined twice (first in cfg.yaml (document 1))"
    );
}

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let errors = Bundle::load("kind: [unclosed\n", "broken.yaml", "default").unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0]
            .to_string()
            .starts_with("broken.yaml: invalid YAML: line "),
        "{}",
        errors
    );
}

#[test]
fn files_and_directories_load_in_order_and_unreadable_paths_are_reported() {
    let dir = std::env::temp_dir().join(format!("mesh-bundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(dir.join("conf.d/b.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: second}\nspec: {hosts: [x], http: [{route: [{destination: {host: x}}]}]}\n").unwrap();
    std::fs::write(dir.join("conf.d/a.yml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: first}\nspec: {hosts: [x], http: [{route: [{destination: {host: x}}]}]}\n").unwrap();
    std::fs::write(dir.join("conf.d/notes.txt"), "not config").unwrap();
    std::fs::write(dir.join("gw.yaml"), VALID).unwrap();
    let b = Bundle::load_paths(&[dir.join("gw.yaml"), dir.join("conf.d")], "default").unwrap();
    let names: Vec<&str> = b
        .virtual_services
        .iter()
        .map(|v| v.resource().name.as_str())
        .collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(b.gateways.len(), 1);
    let missing: PathBuf = dir.join("missing.yaml");
    let errors = Bundle::load_paths(std::slice::from_ref(&missing), "default").unwrap_err();
    assert!(
        errors.0[0]
            .to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{errors}"
    );
}
