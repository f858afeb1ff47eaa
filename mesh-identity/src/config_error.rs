//! Errors in Istio security resources, naming the resource and the field.

use std::fmt;

/// A PeerAuthentication or AuthorizationPolicy that failed validation.
///
/// Displays as `KIND NAMESPACE/NAME: FIELD.PATH: message`, for example
/// `AuthorizationPolicy foo/deny-all: rules[0].from[1].source.principals[0]: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Resource kind (`AuthorizationPolicy`, `PeerAuthentication`).
    pub kind: &'static str,
    /// Resource namespace.
    pub namespace: String,
    /// Resource name.
    pub name: String,
    /// Field path inside `spec` (empty for the spec itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}: ", self.kind, self.namespace, self.name)?;
        if !self.path.is_empty() && self.path != "." {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Builds errors for one resource; `at` appends to a field path.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub(crate) kind: &'static str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: self.kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// Deserializes `spec`, turning serde errors into field-path errors.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
        &self,
        spec: &serde_json::Value,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(spec).map_err(|e| {
            let path = e.path().to_string();
            self.err(path, e.into_inner().to_string())
        })
    }
}
