//! Loading a whole configuration: multi-document YAML of mixed Istio kinds, from strings,
//! files or directories, into one validated, typed [`Bundle`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use mesh_identity::PeerAuthentication;
use mesh_identity::authz::AuthorizationPolicy;
use mesh_mirror::DestinationRule;
use mesh_routing::{Document, ResourceRef, VirtualService, parse_documents};

use crate::egress::OutboundMode;
use crate::gateway::Gateway;
use crate::service_entry::ServiceEntry;

/// Every supported resource of a configuration, validated and typed.
///
/// ```
/// use mesh_gateway::Bundle;
/// let yaml = r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-all}
/// spec: {}
/// ---
/// apiVersion: apps/v1
/// kind: Deployment
/// metadata: {name: not-ours}
/// "#;
/// let bundle = Bundle::load(yaml, "mesh.yaml", "default").unwrap();
/// assert_eq!(bundle.virtual_services.len(), 1);
/// assert_eq!(bundle.authorization_policies.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// VirtualServices, in load order (which is their priority for a shared host).
    pub virtual_services: Vec<VirtualService>,
    /// Gateways.
    pub gateways: Vec<Gateway>,
    /// DestinationRules.
    pub destination_rules: Vec<DestinationRule>,
    /// ServiceEntries.
    pub service_entries: Vec<ServiceEntry>,
    /// Sidecars' outbound traffic policies.
    pub sidecars: Vec<(ResourceRef, OutboundMode)>,
    /// PeerAuthentications.
    pub peer_authentications: Vec<PeerAuthentication>,
    /// AuthorizationPolicies.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// Istio kinds this implementation does not act on (`EnvoyFilter`, ...), with where they
    /// were, so tools can warn about them.
    pub ignored: Vec<(String, ResourceRef)>,
    seen: HashMap<(String, String, String), String>,
}

/// One problem found while loading, with the file and document it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    /// `file (document N)`, or the file alone for read and YAML errors.
    pub origin: String,
    /// What is wrong: names the resource and field where there is one.
    pub message: String,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Every problem found in a configuration. Loading never stops at the first one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadErrors(pub Vec<LoadProblem>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            fmt::Display::fmt(p, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

const NETWORKING: &str = "networking.istio.io/";
const SECURITY: &str = "security.istio.io/";

impl Bundle {
    /// Loads one multi-document YAML stream. `source` names it in errors.
    pub fn load(yaml: &str, source: &str, default_namespace: &str) -> Result<Self, LoadErrors> {
        let mut bundle = Self::default();
        let mut errors = Vec::new();
        bundle.add_stream(yaml, source, default_namespace, &mut errors);
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Loads files and directories (their `.yaml`, `.yml` and `.json` files, sorted by name, not
    /// recursive), in the order given.
    pub fn load_paths(paths: &[PathBuf], default_namespace: &str) -> Result<Self, LoadErrors> {
        let mut bundle = Self::default();
        let mut errors = Vec::new();
        for file in expand(paths, &mut errors) {
            match std::fs::read_to_string(&file) {
                Ok(text) => bundle.add_stream(
                    &text,
                    &file.display().to_string(),
                    default_namespace,
                    &mut errors,
                ),
                Err(e) => errors.push(LoadProblem {
                    origin: file.display().to_string(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(LoadErrors(errors))
        }
    }

    fn add_stream(
        &mut self,
        yaml: &str,
        source: &str,
        default_namespace: &str,
        errors: &mut Vec<LoadProblem>,
    ) {
        let docs = match parse_documents(yaml, source, default_namespace) {
            Ok(docs) => docs,
            Err(e) => {
                errors.push(LoadProblem {
                    origin: source.to_string(),
                    message: strip_origin(&e.to_string(), source),
                });
                return;
            }
        };
        for doc in &docs {
            if let Err(message) = self.add_document(doc) {
                errors.push(LoadProblem {
                    origin: doc.origin.to_string(),
                    message,
                });
            }
        }
    }

    fn add_document(&mut self, doc: &Document) -> Result<(), String> {
        let istio =
            doc.api_version.starts_with(NETWORKING) || doc.api_version.starts_with(SECURITY);
        if !istio {
            return Ok(()); // Kubernetes objects that share the file are not ours to judge.
        }
        let key = (
            doc.kind.clone(),
            doc.metadata.namespace.clone(),
            doc.metadata.name.clone(),
        );
        if let Some(first) = self.seen.get(&key) {
            return Err(format!(
                "{} is defined twice (first in {first})",
                doc.resource_ref()
            ));
        }
        self.seen.insert(key, doc.origin.to_string());
        let text = |e: &dyn fmt::Display| e.to_string();
        match doc.kind.as_str() {
            "VirtualService" => self
                .virtual_services
                .push(VirtualService::from_document(doc).map_err(|e| text(&e))?),
            "Gateway" => self
                .gateways
                .push(Gateway::from_document(doc).map_err(|e| text(&e))?),
            "DestinationRule" => self
                .destination_rules
                .push(DestinationRule::from_document(doc).map_err(|e| text(&e))?),
            "ServiceEntry" => self
                .service_entries
                .push(ServiceEntry::from_document(doc).map_err(|e| text(&e))?),
            "Sidecar" => self.sidecars.push((
                doc.resource_ref(),
                OutboundMode::from_sidecar(doc).map_err(|e| text(&e))?,
            )),
            "PeerAuthentication" | "AuthorizationPolicy" => {
                if !mesh_identity::SECURITY_API_VERSIONS.contains(&doc.api_version.as_str()) {
                    return Err(format!(
                        "{}: unsupported apiVersion {:?}",
                        doc.resource_ref(),
                        doc.api_version
                    ));
                }
                let (ns, name) = (&doc.metadata.namespace, &doc.metadata.name);
                let spec = if doc.spec.is_null() {
                    serde_json::json!({})
                } else {
                    doc.spec.clone()
                };
                if doc.kind == "PeerAuthentication" {
                    self.peer_authentications.push(
                        PeerAuthentication::from_spec(ns, name, &spec).map_err(|e| text(&e))?,
                    );
                } else {
                    self.authorization_policies.push(
                        AuthorizationPolicy::from_spec(ns, name, &spec).map_err(|e| text(&e))?,
                    );
                }
            }
            _ => self
                .ignored
                .push((doc.origin.to_string(), doc.resource_ref())),
        }
        Ok(())
    }
}

/// The files named by `paths`, directories expanded.
fn expand(paths: &[PathBuf], errors: &mut Vec<LoadProblem>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| is_config(p))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(LoadProblem {
                    origin: path.display().to_string(),
                    message: format!("cannot list: {e}"),
                }),
            }
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn is_config(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

/// `parse_documents` errors start with the source name; the problem list prints it already.
fn strip_origin(message: &str, source: &str) -> String {
    message
        .strip_prefix(source)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
        .to_string()
}
