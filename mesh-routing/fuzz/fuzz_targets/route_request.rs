//! Attacker-controlled request parts (path, query, Host, headers) against a table that uses
//! every matcher kind: routing must never panic, whatever the bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mesh_routing::{RouteTable, TableOptions, load_virtual_services};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fuzz}
spec:
  hosts: [svc, "*.example.com"]
  http:
  - match:
    - {uri: {exact: /exact}, headers: {x-a: {exact: a}}}
    - {uri: {prefix: /PRE}, ignoreUriCase: true, queryParams: {q: {regex: "[a-z]+"}}}
    - {uri: {regex: "/r/[0-9]+"}, withoutHeaders: {x-b: {}}}
    - {authority: {prefix: svc}, method: {exact: POST}, port: 8080}
    rewrite: {uri: /rewritten}
    route: [{destination: {host: svc}}]
  - match: [{headers: {x-user: {exact: jason}}}]
    route: [{destination: {host: svc, subset: v2}}]
  - route: [{destination: {host: svc}}]
"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| match load_virtual_services(CONFIG, "fuzz", "default") {
        Ok(vss) => RouteTable::build(&vss, &TableOptions::default()),
        Err(e) => panic!("fuzz fixture is invalid: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (Some(uri), Some(host)) = (parts.next(), parts.next()) else { return };
    let mut b = http::Request::builder().uri(uri).header(http::header::HOST, host);
    for pair in parts.next().unwrap_or_default().split(|b| *b == b'\n') {
        if let Some(i) = pair.iter().position(|b| *b == b':') {
            b = b.header(&pair[..i], &pair[i + 1..]);
        }
    }
    if let Ok(req) = b.body(()) {
        let _ = table().route(&req);
    }
});
