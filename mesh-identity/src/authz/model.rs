//! The serde model of `security.istio.io` AuthorizationPolicy `spec`, with Istio's field
//! names. Unknown fields are rejected so that a typo (`notPrincipal`) cannot silently weaken a
//! DENY policy. Validation happens when compiling into [`super::AuthorizationPolicy`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// `spec` of an AuthorizationPolicy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// Workloads the policy applies to; all workloads of the namespace when absent.
    pub selector: Option<WorkloadSelector>,
    /// ALLOW (default), DENY, AUDIT or CUSTOM.
    pub action: Option<ActionSpec>,
    /// The external authorizer of a CUSTOM policy.
    pub provider: Option<ProviderSpec>,
    /// Rules; a request matches the policy when any rule matches.
    pub rules: Option<Vec<RuleSpec>>,
}

/// `selector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must all carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionSpec {
    /// Allow matching requests.
    Allow,
    /// Deny matching requests.
    Deny,
    /// Audit matching requests; no effect on the decision.
    Audit,
    /// Delegate matching requests to an external authorizer.
    Custom,
}

/// `provider`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSpec {
    /// Extension provider name.
    pub name: String,
}

/// `rules[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Sources; any may match.
    pub from: Option<Vec<FromSpec>>,
    /// Operations; any may match.
    pub to: Option<Vec<ToSpec>>,
    /// Conditions; all must match.
    pub when: Option<Vec<ConditionSpec>>,
}

/// `rules[].from[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromSpec {
    /// The source.
    pub source: Option<SourceSpec>,
}

/// `rules[].from[].source`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SourceSpec {
    pub principals: Option<Vec<String>>,
    pub not_principals: Option<Vec<String>>,
    pub request_principals: Option<Vec<String>>,
    pub not_request_principals: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub not_namespaces: Option<Vec<String>>,
    pub ip_blocks: Option<Vec<String>>,
    pub not_ip_blocks: Option<Vec<String>>,
    pub remote_ip_blocks: Option<Vec<String>>,
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

/// `rules[].to[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToSpec {
    /// The operation.
    pub operation: Option<OperationSpec>,
}

/// `rules[].to[].operation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct OperationSpec {
    pub hosts: Option<Vec<String>>,
    pub not_hosts: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
    pub not_ports: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub not_methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub not_paths: Option<Vec<String>>,
}

/// `rules[].when[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionSpec {
    /// Attribute name (`request.headers[x-token]`, `source.ip`, ...).
    pub key: String,
    /// Values, any of which may match.
    pub values: Option<Vec<String>>,
    /// Values none of which may match.
    pub not_values: Option<Vec<String>>,
}
