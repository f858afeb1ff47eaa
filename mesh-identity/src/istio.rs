//! Istio's identity layout: `spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.

use crate::id::{IdError, SpiffeId, TrustDomain};

impl SpiffeId {
    /// The Istio workload identity `spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
    pub fn istio(
        trust_domain: TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdError> {
        Self::from_segments(trust_domain, &["ns", namespace, "sa", service_account])
    }

    /// The namespace of an Istio workload identity, `None` for other path shapes.
    pub fn istio_namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account of an Istio workload identity, `None` for other path shapes.
    pub fn istio_service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.segments();
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_identity_round_trips() {
        let id = SpiffeId::istio("cluster.local".parse().unwrap(), "default", "sleep").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
        assert_eq!(id.istio_namespace(), Some("default"));
        assert_eq!(id.istio_service_account(), Some("sleep"));
    }

    #[test]
    fn other_shapes_have_no_istio_parts() {
        for s in [
            "spiffe://td",
            "spiffe://td/ns/default",
            "spiffe://td/ns/default/sa/x/extra",
            "spiffe://td/namespace/default/sa/x",
        ] {
            let id: SpiffeId = s.parse().unwrap();
            assert_eq!(id.istio_namespace(), None, "{s}");
        }
    }

    #[test]
    fn istio_constructor_validates_names() {
        let td: TrustDomain = "td".parse().unwrap();
        assert_eq!(
            SpiffeId::istio(td, "a/b", "x"),
            Err(IdError::BadPathSegmentChar('/'))
        );
    }
}
