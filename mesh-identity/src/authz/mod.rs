//! Istio `security.istio.io` AuthorizationPolicy: serde model, validation, evaluation and a
//! tower layer.
//!
//! Semantics follow Istio: CUSTOM, then DENY, then ALLOW; no ALLOW policy means allow; once an
//! ALLOW policy applies, a request must match one. A rule matches when any `from`, any `to`
//! and all `when` entries match; `notX` fields negate. `spec: {}` (ALLOW, no rules) denies
//! everything; a DENY with no rules never matches; `rules: [{}]` matches everything.
//! Values are exact, `prefix*`, `*suffix` or `*`.

mod eval;
mod ip_block;
mod layer;
pub mod model;
mod policy;
mod request;
mod string_match;

pub use eval::{Authorizer, CustomAuthorizer, DEFAULT_ROOT_NAMESPACE, Decision, PolicySet};
pub use layer::{Authorization, AuthorizationFuture, AuthorizationLayer, DENIED_BODY};
pub use policy::{Action, AuthorizationPolicy};
pub use request::{ConnectionInfo, RequestAttrs};
