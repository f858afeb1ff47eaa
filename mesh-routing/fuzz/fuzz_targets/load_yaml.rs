//! Arbitrary text through the YAML loader and VirtualService validation: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(vss) = mesh_routing::load_virtual_services(text, "fuzz.yaml", "default") {
            // Whatever validated must also build and route without panicking.
            let table = mesh_routing::RouteTable::build(&vss, &mesh_routing::TableOptions::default());
            let req = http::Request::get("/a/b?c=d").header("host", "reviews").body(()).ok();
            if let Some(req) = req {
                let _ = table.route(&req);
            }
        }
    }
});
