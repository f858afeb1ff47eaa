//! Reading whole Istio security resources (apiVersion, kind, metadata, spec).

use serde_json::Value;

use crate::authz::AuthorizationPolicy;
use crate::config_error::{ConfigError, Ctx};
use crate::peer_authn::PeerAuthentication;

/// The security.istio.io versions accepted, as in Istio.
pub const SECURITY_API_VERSIONS: [&str; 2] = ["security.istio.io/v1", "security.istio.io/v1beta1"];

/// Checks apiVersion and kind, and returns (namespace, name, spec).
fn parts<'a>(
    kind: &'static str,
    doc: &'a Value,
    default_namespace: &'a str,
) -> Result<(&'a str, &'a str, &'a Value), ConfigError> {
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(default_namespace);
    let ctx = Ctx {
        kind,
        namespace,
        name,
    };
    if name.is_empty() {
        return Err(ctx.err("metadata.name", "must be set"));
    }
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !SECURITY_API_VERSIONS.contains(&api) {
        return Err(ctx.err(
            "apiVersion",
            format!("{api:?} is not one of {SECURITY_API_VERSIONS:?}"),
        ));
    }
    let found = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if found != kind {
        return Err(ctx.err("kind", format!("expected {kind}, found {found:?}")));
    }
    static EMPTY: Value = Value::Null;
    // A missing spec is an empty one (`spec: {}` semantics).
    let spec = doc.get("spec").unwrap_or(&EMPTY);
    Ok((namespace, name, spec))
}

fn spec_or_empty(spec: &Value) -> std::borrow::Cow<'_, Value> {
    match spec {
        Value::Null => std::borrow::Cow::Owned(Value::Object(Default::default())),
        other => std::borrow::Cow::Borrowed(other),
    }
}

impl AuthorizationPolicy {
    /// Validates a whole resource document (already parsed from YAML or JSON). Resources
    /// without `metadata.namespace` get `default_namespace`.
    pub fn from_document(doc: &Value, default_namespace: &str) -> Result<Self, ConfigError> {
        let (ns, name, spec) = parts("AuthorizationPolicy", doc, default_namespace)?;
        Self::from_spec(ns, name, &spec_or_empty(spec))
    }
}

impl PeerAuthentication {
    /// Validates a whole resource document (already parsed from YAML or JSON). Resources
    /// without `metadata.namespace` get `default_namespace`.
    pub fn from_document(doc: &Value, default_namespace: &str) -> Result<Self, ConfigError> {
        let (ns, name, spec) = parts("PeerAuthentication", doc, default_namespace)?;
        Self::from_spec(ns, name, &spec_or_empty(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_checked_before_their_spec() {
        let ok = json!({
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-all"},
        });
        let p = AuthorizationPolicy::from_document(&ok, "shop").unwrap();
        assert_eq!((p.namespace(), p.name()), ("shop", "deny-all"));

        let wrong_version = json!({"apiVersion": "networking.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "a", "namespace": "x"}});
        assert_eq!(
            AuthorizationPolicy::from_document(&wrong_version, "d")
                .unwrap_err()
                .to_string(),
            "AuthorizationPolicy x/a: apiVersion: \"networking.istio.io/v1\" is not one of [\"security.istio.io/v1\", \"security.istio.io/v1beta1\"]"
        );
        let wrong_kind = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "a"}});
        assert_eq!(
            PeerAuthentication::from_document(&wrong_kind, "d")
                .unwrap_err()
                .to_string(),
            "PeerAuthentication d/a: kind: expected PeerAuthentication, found \"AuthorizationPolicy\""
        );
        let bad_spec = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "a"}, "spec": {"mtls": {"mode": "ON"}}});
        assert!(
            PeerAuthentication::from_document(&bad_spec, "d")
                .unwrap_err()
                .to_string()
                .starts_with("PeerAuthentication d/a: mtls.mode: unknown variant")
        );
    }
}
