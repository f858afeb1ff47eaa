//! Arbitrary text through the mixed-kind loader: every kind's validation either accepts or
//! reports problems, never panics; whatever loads also builds route tables and a registry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_gateway::{Bundle, ServiceEntryRegistry, gateway_route_tables};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bundle) = Bundle::load(text, "fuzz.yaml", "default") {
        for gateway in &bundle.gateways {
            let _ = gateway_route_tables(gateway, &bundle.virtual_services);
        }
        let registry = ServiceEntryRegistry::new(&bundle.service_entries);
        for entry in &bundle.service_entries {
            for host in entry.hosts() {
                let _ = mesh_mirror::ServiceRegistry::endpoints(&registry, host, None);
            }
        }
    }
});
