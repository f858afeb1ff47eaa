//! Istio `security.istio.io` PeerAuthentication: model, validation, and which mTLS mode
//! applies to a workload port.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::authz::DEFAULT_ROOT_NAMESPACE;
use crate::authz::model::WorkloadSelector;
use crate::config_error::{ConfigError, Ctx};
use crate::inbound::MtlsMode;

const KIND: &str = "PeerAuthentication";

/// `spec` of a PeerAuthentication.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// Workloads the policy applies to; the whole namespace when absent.
    pub selector: Option<WorkloadSelector>,
    /// The mode for all ports.
    pub mtls: Option<MtlsSpec>,
    /// Per-port modes (keys are port numbers); needs a selector.
    pub port_level_mtls: Option<BTreeMap<String, MtlsSpec>>,
}

/// `mtls` and `portLevelMtls` values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsSpec {
    /// The mode; UNSET (or absent) inherits from the parent policy.
    pub mode: Option<ModeSpec>,
}

/// `mtls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModeSpec {
    /// Inherit.
    Unset,
    /// Plaintext only.
    Disable,
    /// mTLS or plaintext.
    Permissive,
    /// mTLS only.
    Strict,
}

fn mode(spec: Option<&MtlsSpec>) -> Option<MtlsMode> {
    match spec.and_then(|m| m.mode)? {
        ModeSpec::Unset => None,
        ModeSpec::Disable => Some(MtlsMode::Disable),
        ModeSpec::Permissive => Some(MtlsMode::Permissive),
        ModeSpec::Strict => Some(MtlsMode::Strict),
    }
}

/// A validated PeerAuthentication.
#[derive(Debug, Clone)]
pub struct PeerAuthentication {
    namespace: String,
    name: String,
    selector: Option<BTreeMap<String, String>>,
    mode: Option<MtlsMode>,
    ports: BTreeMap<u16, Option<MtlsMode>>,
}

impl PeerAuthentication {
    /// Validates and compiles the `spec` of the PeerAuthentication `namespace/name`.
    pub fn from_spec(
        namespace: &str,
        name: &str,
        spec: &serde_json::Value,
    ) -> Result<Self, ConfigError> {
        let ctx = Ctx {
            kind: KIND,
            namespace,
            name,
        };
        let spec: PeerAuthenticationSpec = ctx.deserialize(spec)?;
        Self::compile(namespace, name, spec)
    }

    /// Validates and compiles an already deserialized spec.
    pub fn compile(
        namespace: &str,
        name: &str,
        spec: PeerAuthenticationSpec,
    ) -> Result<Self, ConfigError> {
        let ctx = Ctx {
            kind: KIND,
            namespace,
            name,
        };
        let mut ports = BTreeMap::new();
        if let Some(levels) = &spec.port_level_mtls {
            if spec.selector.is_none() {
                return Err(ctx.err("portLevelMtls", "port-level mTLS needs a workload selector"));
            }
            for (port, m) in levels {
                let p = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        ctx.err(
                            format!("portLevelMtls.{port}"),
                            format!("{port:?} is not a port number (1-65535)"),
                        )
                    })?;
                ports.insert(p, mode(Some(m)));
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            selector: spec.selector.map(|s| s.match_labels),
            mode: mode(spec.mtls.as_ref()),
            ports,
        })
    }

    /// The policy's `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// All PeerAuthentications of the mesh, resolving the mode of a workload port.
#[derive(Debug, Clone)]
pub struct PeerAuthenticationSet {
    policies: Vec<PeerAuthentication>,
    root_namespace: String,
}

impl PeerAuthenticationSet {
    /// A set with Istio's default root namespace (`istio-system`).
    pub fn new(mut policies: Vec<PeerAuthentication>) -> Self {
        // Istio picks the oldest of competing policies; without creation times, the name
        // order makes the choice deterministic.
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Self {
            policies,
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
        }
    }

    /// Sets the mesh root namespace.
    pub fn with_root_namespace(mut self, ns: impl Into<String>) -> Self {
        self.root_namespace = ns.into();
        self
    }

    /// The mode for `port` of a workload: its own (selector) policy's port-level then
    /// workload-wide mode, then its namespace's policy, then the mesh-wide policy, each
    /// level skipped when UNSET; PERMISSIVE when nothing says otherwise.
    pub fn mode_for(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u16,
    ) -> MtlsMode {
        let selects = |p: &PeerAuthentication| {
            p.selector
                .as_ref()
                .is_some_and(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
        };
        let workload = self
            .policies
            .iter()
            .find(|p| p.namespace == namespace && selects(p));
        let ns_wide = self
            .policies
            .iter()
            .find(|p| p.namespace == namespace && p.selector.is_none());
        let mesh = self
            .policies
            .iter()
            .find(|p| p.namespace == self.root_namespace && p.selector.is_none());
        workload
            .and_then(|p| p.ports.get(&port).copied().flatten())
            .or_else(|| workload.and_then(|p| p.mode))
            .or_else(|| ns_wide.and_then(|p| p.mode))
            .or_else(|| mesh.and_then(|p| p.mode))
            .unwrap_or(MtlsMode::Permissive)
    }
}
