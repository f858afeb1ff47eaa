//! Configuration errors that name the resource, the field path and what is wrong.

use std::fmt;

/// Which resource an error is about: `VirtualService default/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    /// The resource kind, e.g. `VirtualService`.
    pub kind: String,
    /// The namespace the resource lives in (after defaulting).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ResourceRef {
    /// A reference to `kind namespace/name`.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What is wrong with a field. Variants are coarse enough to act on and carry the details
/// that the message prints.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The field does not have the expected shape (wrong type, unknown field, bad enum value).
    #[error("{0}")]
    Decode(String),
    /// A required field is missing or empty.
    #[error("is required")]
    Missing,
    /// Two fields were set that exclude each other.
    #[error("{0} and {1} are mutually exclusive")]
    Conflict(&'static str, &'static str),
    /// A regular expression does not compile (RE2 syntax, whole-value match).
    #[error("invalid regex {pattern:?}: {reason}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// What the regex engine said.
        reason: String,
    },
    /// A destination weight below zero.
    #[error("weight must be >= 0, got {0}")]
    NegativeWeight(i64),
    /// Several destinations whose weights are all zero.
    #[error("weights of {0} destinations are all 0; at least one must be positive")]
    AllWeightsZero(usize),
    /// A duration that does not parse or is out of range.
    #[error("invalid duration {value:?}: {reason}")]
    Duration {
        /// The value as written.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A number outside its allowed range.
    #[error("{value} is out of range [{min}, {max}]")]
    OutOfRange {
        /// The value as written.
        value: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A host name that Istio would reject.
    #[error("invalid host {host:?}: {reason}")]
    Host {
        /// The host as written.
        host: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A header name or value that HTTP does not allow.
    #[error("invalid header {0:?}")]
    Header(String),
    /// A field Istio accepts that this implementation does not support.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// Any other rule Istio's validation enforces.
    #[error("{0}")]
    Invalid(String),
}

/// One problem in one resource, with the field path inside its `spec`.
///
/// Displays as `VirtualService default/reviews: http[1].route[0].weight: weight must be >= 0, got -5`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The resource the problem is in.
    pub resource: ResourceRef,
    /// Field path inside `spec` (`http[1].route[0].weight`); empty for the whole resource.
    pub path: String,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.resource, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.resource, self.path, self.problem)
        }
    }
}

/// Every problem found in a set of resources. Validation reports all of them, not just the first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual problems.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            fmt::Display::fmt(e, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Collects every problem found while validating one resource, tracking the field path, so
/// that errors read `Kind ns/name: path: problem`. Other crates use it for their own kinds
/// (DestinationRule, Gateway, ServiceEntry).
///
/// ```
/// use mesh_routing::{Collector, Problem, ResourceRef};
/// let resource = ResourceRef::new("DestinationRule", "default", "reviews");
/// let mut c = Collector::new(&resource);
/// c.at(format_args!("subsets[{}]", 1), |c| c.push_at("name", Problem::Missing));
/// let err = c.finish(()).unwrap_err();
/// assert_eq!(err.to_string(), "DestinationRule default/reviews: subsets[1].name: is required");
/// ```
#[derive(Debug)]
pub struct Collector<'r> {
    resource: &'r ResourceRef,
    path: String,
    errors: Vec<ConfigError>,
}

impl<'r> Collector<'r> {
    /// Starts collecting for `resource`, at the root of its `spec`.
    pub fn new(resource: &'r ResourceRef) -> Self {
        Self {
            resource,
            path: String::new(),
            errors: Vec::new(),
        }
    }

    /// Runs `f` with `segment` appended to the path (`http[1]`, `route`, `[0]`, ...).
    pub fn at<T>(&mut self, segment: fmt::Arguments<'_>, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        let seg = segment.to_string();
        if !self.path.is_empty() && !seg.starts_with('[') {
            self.path.push('.');
        }
        self.path.push_str(&seg);
        let out = f(self);
        self.path.truncate(len);
        out
    }

    /// Records `problem` at the current path.
    pub fn push(&mut self, problem: Problem) {
        self.errors.push(ConfigError {
            resource: self.resource.clone(),
            path: self.path.clone(),
            problem,
        });
    }

    /// Records `problem` at `field` below the current path.
    pub fn push_at(&mut self, field: &str, problem: Problem) {
        self.at(format_args!("{field}"), |c| c.push(problem));
    }

    /// How many problems have been recorded so far (to tell whether a sub-part was valid).
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}
