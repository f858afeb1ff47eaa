//! Kubernetes-style resource documents: multi-document YAML streams split into typed envelopes.
//!
//! YAML is parsed once into [`serde_json::Value`] documents; each kind's `spec` is then decoded
//! into its serde model with field paths, so a type error names `http[1].route[0].weight`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, ConfigErrors, Problem, ResourceRef};

/// `metadata` of a resource. Fields other than these are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`; empty means "the loader's default namespace".
    #[serde(default)]
    pub namespace: String,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One document of a YAML stream: the envelope with its `spec` still undecoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `apiVersion`, e.g. `networking.istio.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `VirtualService`.
    pub kind: String,
    /// `metadata`, with the namespace defaulted.
    pub metadata: ObjectMeta,
    /// The raw `spec` (`null` when absent).
    pub spec: serde_json::Value,
    /// Where the document came from, for error messages.
    pub origin: Origin,
}

/// Where a document came from: a source name (usually a file path) and its position in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file or stream name given to [`parse_documents`].
    pub source: String,
    /// 0-based index of the document in its stream (empty documents are not counted).
    pub index: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.source, self.index + 1)
    }
}

/// Why a YAML stream could not be split into documents.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The YAML itself is malformed; the message carries line and column.
    #[error("{source_name}: invalid YAML: {message}")]
    Yaml {
        /// The stream name.
        source_name: String,
        /// The parser's message, with position.
        message: String,
    },
    /// A document is not a resource envelope (not a mapping, or no `kind`/`apiVersion`).
    #[error("{origin}: {message}")]
    Envelope {
        /// Which document.
        origin: String,
        /// What is missing or malformed.
        message: String,
    },
    /// A resource of a known kind failed validation.
    #[error("{origin}: {errors}")]
    Invalid {
        /// Which document.
        origin: String,
        /// Every problem found in it.
        errors: ConfigErrors,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: serde_json::Value,
}

/// Splits a multi-document YAML stream into [`Document`]s. Empty documents are skipped;
/// `default_namespace` fills in a missing `metadata.namespace`.
///
/// ```
/// let docs = mesh_routing::parse_documents(
///     "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\nkind: B\napiVersion: v1\nmetadata: {name: b, namespace: x}\n",
///     "inline.yaml",
///     "default",
/// ).unwrap();
/// assert_eq!(docs[0].metadata.namespace, "default");
/// assert_eq!(docs[1].kind, "B");
/// ```
pub fn parse_documents(
    yaml: &str,
    source: &str,
    default_namespace: &str,
) -> Result<Vec<Document>, LoadError> {
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| LoadError::Yaml {
            source_name: source.to_string(),
            message: first_line(&e.to_string()),
        })?;
    let mut docs = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().filter(|v| !v.is_null()).enumerate() {
        let origin = Origin {
            source: source.to_string(),
            index,
        };
        let envelope: Envelope =
            serde_path_to_error::deserialize(value).map_err(|e| LoadError::Envelope {
                origin: origin.to_string(),
                message: format!("{}: {}", path_or_root(&e.path().to_string()), e.inner()),
            })?;
        let missing = |field: &str| LoadError::Envelope {
            origin: origin.to_string(),
            message: format!("{field} is required"),
        };
        let kind = envelope
            .kind
            .filter(|k| !k.is_empty())
            .ok_or_else(|| missing("kind"))?;
        let api_version = envelope
            .api_version
            .filter(|k| !k.is_empty())
            .ok_or_else(|| missing("apiVersion"))?;
        let mut metadata = envelope.metadata;
        if metadata.name.is_empty() {
            return Err(missing("metadata.name"));
        }
        if metadata.namespace.is_empty() {
            metadata.namespace = default_namespace.to_string();
        }
        docs.push(Document {
            api_version,
            kind,
            metadata,
            spec: envelope.spec,
            origin,
        });
    }
    Ok(docs)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn path_or_root(p: &str) -> &str {
    if p.is_empty() || p == "." {
        "(root)"
    } else {
        p
    }
}

impl Document {
    /// The `kind namespace/name` of this document.
    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef::new(
            self.kind.clone(),
            self.metadata.namespace.clone(),
            self.metadata.name.clone(),
        )
    }

    /// Checks that `apiVersion` is `group/version` with one of `versions`.
    pub fn check_api_version(&self, group: &str, versions: &[&str]) -> Result<(), ConfigError> {
        let ok = self
            .api_version
            .split_once('/')
            .is_some_and(|(g, v)| g == group && versions.contains(&v));
        if ok {
            Ok(())
        } else {
            Err(ConfigError {
                resource: self.resource_ref(),
                path: String::new(),
                problem: Problem::Invalid(format!(
                    "unsupported apiVersion {:?}; expected {group}/{}",
                    self.api_version,
                    versions.join(" or "),
                )),
            })
        }
    }

    /// Decodes `spec` into a serde model; a type error names its field path inside `spec`.
    pub fn decode_spec<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let spec = if self.spec.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            self.spec.clone()
        };
        serde_path_to_error::deserialize(spec).map_err(|e| ConfigError {
            resource: self.resource_ref(),
            path: if e.path().to_string() == "." {
                String::new()
            } else {
                e.path().to_string()
            },
            problem: Problem::Decode(e.inner().to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_yaml_names_source_and_line() {
        let err = parse_documents("a: [1, 2\nb: 3", "vs.yaml", "default").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("vs.yaml: invalid YAML: line 2"), "{msg}");
    }

    #[test]
    fn missing_kind_is_reported_with_document_index() {
        let err = parse_documents("kind: A\napiVersion: v1\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n", "f.yaml", "ns")
            .unwrap_err();
        assert_eq!(err.to_string(), "f.yaml (document 2): kind is required");
    }

    #[test]
    fn non_mapping_document_is_rejected() {
        let err = parse_documents("- 1\n- 2\n", "f.yaml", "ns").unwrap_err();
        assert!(matches!(err, LoadError::Envelope { .. }), "{err}");
    }

    #[test]
    fn api_version_group_and_version_are_checked() {
        let docs = parse_documents(
            "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r}\n",
            "f",
            "default",
        )
        .unwrap();
        let err = docs[0]
            .check_api_version("networking.istio.io", &["v1", "v1beta1"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "VirtualService default/r: unsupported apiVersion \"networking.istio.io/v2\"; expected networking.istio.io/v1 or v1beta1"
        );
    }
}
