//! Istio's auto-mTLS for the outbound listener: a cluster whose DestinationRule sets no
//! `tls`, and whose endpoints are all labelled `security.istio.io/tlsMode: istio`, is reached
//! with ISTIO_MUTUAL using the proxy's SVID. The server's SPIFFE ID must be one of the
//! endpoints' service accounts (`spiffe://TD/ns/NS/sa/SA`, NS being the ServiceEntry's
//! namespace), else one of the ServiceEntry's `subjectAltNames`, else any ID of the local
//! trust domain.
//!
//! Limits: the choice is made per cluster (host, subset, port) when its connector is built,
//! from the endpoints known then; Envoy decides per endpoint. A cluster mixing labelled and
//! unlabelled endpoints stays plaintext.

use std::collections::BTreeSet;

use mesh_gateway::ServiceEntryRegistry;
use mesh_gateway::origination::{OriginatingConnector, TlsOrigination};
use mesh_mirror::{
    ClientTls, ClusterInfo, DestinationRules, MakeConnector, ServiceRegistry as _, TLS_MODE_LABEL,
    TlsMode,
};

/// A [`MakeConnector`] adding auto-mTLS in front of [`TlsOrigination`].
#[derive(Debug, Clone)]
pub struct AutoMtls {
    inner: TlsOrigination,
    /// Whether the proxy has an SVID (without one, auto-mTLS is off, as in Istio without
    /// certificates).
    enabled: bool,
    registry: ServiceEntryRegistry,
    rules: DestinationRules,
    trust_domain: String,
}

impl AutoMtls {
    /// Auto-mTLS over `inner` for the endpoints of `registry`.
    pub fn new(
        inner: TlsOrigination,
        enabled: bool,
        registry: ServiceEntryRegistry,
        rules: DestinationRules,
        trust_domain: String,
    ) -> Self {
        Self {
            inner,
            enabled,
            registry,
            rules,
            trust_domain,
        }
    }

    /// The ISTIO_MUTUAL settings for `cluster`, when auto-mTLS applies to it.
    pub fn istio_mutual(&self, cluster: &ClusterInfo<'_>) -> Option<ClientTls> {
        if !self.enabled || cluster.policy.tls.is_some() {
            return None;
        }
        let snapshot = self.registry.endpoints(cluster.host, cluster.port)?;
        let subset = cluster.subset.and_then(|name| {
            let rule = self.rules.for_host(cluster.host)?;
            Some(rule.subset(name)?.labels.clone())
        });
        let endpoints: Vec<_> = (snapshot.endpoints.iter())
            .filter(|e| {
                subset
                    .as_ref()
                    .is_none_or(|want| want.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            })
            .collect();
        let all_istio = !endpoints.is_empty()
            && (endpoints.iter())
                .all(|e| e.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio"));
        if !all_istio {
            return None;
        }
        let entry = self.registry.service_entry(cluster.host);
        let namespace = entry.map_or("default", |se| se.resource().namespace.as_str());
        let mut names: BTreeSet<String> = (endpoints.iter())
            .filter_map(|e| e.service_account.as_deref())
            .map(|sa| format!("spiffe://{}/ns/{namespace}/sa/{sa}", self.trust_domain))
            .collect();
        if names.is_empty() {
            names.extend(
                entry
                    .iter()
                    .flat_map(|se| se.subject_alt_names().iter().cloned()),
            );
        }
        Some(ClientTls {
            mode: TlsMode::IstioMutual,
            client_certificate: None,
            private_key: None,
            ca_certificates: None,
            credential_name: None,
            subject_alt_names: names.into_iter().collect(),
            sni: None,
            insecure_skip_verify: false,
        })
    }
}

impl MakeConnector for AutoMtls {
    type Connector = OriginatingConnector;

    fn make_connector(&self, cluster: &ClusterInfo<'_>) -> OriginatingConnector {
        match self.istio_mutual(cluster) {
            Some(tls) => {
                let mut policy = cluster.policy.clone();
                policy.tls = Some(tls);
                let info = ClusterInfo {
                    policy: &policy,
                    ..*cluster
                };
                self.inner.make_connector(&info)
            }
            None => self.inner.make_connector(cluster),
        }
    }
}
