//! The demo's Istio configuration: `examples/demo/mesh.yaml`, a template whose `${NAME}`
//! placeholders are the ports of the servers the demo starts.

use super::DemoError;

/// The bundled template (`examples/demo/mesh.yaml`).
pub const TEMPLATE: &str = include_str!("../../demo/mesh.yaml");

/// The ports filled into [`TEMPLATE`].
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// `reviews` v1.
    pub reviews_v1: u16,
    /// `reviews` v2.
    pub reviews_v2: u16,
    /// The mirror sink (`reviews-shadow`).
    pub sink: u16,
    /// The mTLS-only `ratings` workload.
    pub ratings: u16,
    /// The proxy's inbound listener (in front of `details`).
    pub inbound: u16,
    /// The "external" API (`api.weather.example`).
    pub external: u16,
    /// The gRPC `catalog` service.
    pub catalog: u16,
    /// The WebSocket `chat` service.
    pub chat: u16,
}

/// [`TEMPLATE`] with every placeholder replaced; a placeholder left over is an error.
pub fn render(ports: &Ports) -> Result<String, DemoError> {
    let mut text = TEMPLATE.to_string();
    for (name, port) in [
        ("REVIEWS_V1_PORT", ports.reviews_v1),
        ("REVIEWS_V2_PORT", ports.reviews_v2),
        ("SINK_PORT", ports.sink),
        ("RATINGS_PORT", ports.ratings),
        ("INBOUND_PORT", ports.inbound),
        ("EXTERNAL_PORT", ports.external),
        ("CATALOG_PORT", ports.catalog),
        ("CHAT_PORT", ports.chat),
    ] {
        text = text.replace(&format!("${{{name}}}"), &port.to_string());
    }
    match text.find("${") {
        Some(at) => Err(DemoError::Check(format!(
            "mesh.yaml: unknown placeholder at {:?}",
            &text[at..text.len().min(at + 24)]
        ))),
        None => Ok(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_the_result_loads() {
        let ports = Ports {
            reviews_v1: 1001,
            reviews_v2: 1002,
            sink: 1003,
            ratings: 1004,
            inbound: 1005,
            external: 1006,
            catalog: 1007,
            chat: 1008,
        };
        let text = render(&ports).unwrap();
        assert!(text.contains("http: 1005"));
        mesh_gateway::Bundle::load(&text, "mesh.yaml", "default").unwrap();
    }
}
