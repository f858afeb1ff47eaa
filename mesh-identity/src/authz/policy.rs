//! A validated AuthorizationPolicy, compiled from its serde model.

use std::collections::BTreeMap;

use http::HeaderName;

use super::ip_block::IpBlock;
use super::model::{
    ActionSpec, AuthorizationPolicySpec, ConditionSpec, OperationSpec, RuleSpec, SourceSpec,
};
use super::string_match::StringMatch;
use crate::config_error::{ConfigError, Ctx};

const KIND: &str = "AuthorizationPolicy";

/// What a matching policy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Matching requests are allowed (and, once any ALLOW policy applies, only they are).
    Allow,
    /// Matching requests are denied.
    Deny,
    /// Matching requests are flagged for audit; the decision is unchanged.
    Audit,
    /// Matching requests are checked by the named external authorizer, before DENY and ALLOW.
    Custom {
        /// The extension provider name.
        provider: String,
    },
}

/// A validated AuthorizationPolicy, ready to evaluate.
#[derive(Debug, Clone)]
pub struct AuthorizationPolicy {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) selector: Option<BTreeMap<String, String>>,
    pub(crate) action: Action,
    pub(crate) rules: Vec<Rule>,
}

/// Positive and negative value lists of one field: a value must match one of `any_of` (when
/// given) and none of `none_of`.
#[derive(Debug, Clone)]
pub(crate) struct Field<T> {
    pub(crate) any_of: Option<Vec<T>>,
    pub(crate) none_of: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Self {
            any_of: None,
            none_of: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Rule {
    /// Empty: any source.
    pub(crate) from: Vec<Source>,
    /// Empty: any operation.
    pub(crate) to: Vec<Operation>,
    pub(crate) when: Vec<Condition>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Source {
    pub(crate) principals: Field<StringMatch>,
    pub(crate) namespaces: Field<StringMatch>,
    pub(crate) ip_blocks: Field<IpBlock>,
    pub(crate) remote_ip_blocks: Field<IpBlock>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Operation {
    pub(crate) hosts: Field<StringMatch>,
    pub(crate) ports: Field<u16>,
    pub(crate) methods: Field<StringMatch>,
    pub(crate) paths: Field<StringMatch>,
}

impl<T> Field<T> {
    fn is_empty(&self) -> bool {
        self.any_of.is_none() && self.none_of.is_empty()
    }
}

impl Rule {
    /// Whether the rule has conditions only HTTP requests have: operation hosts, methods and
    /// paths, `request.headers` keys.
    pub(crate) fn has_http_conditions(&self) -> bool {
        self.to.iter().any(Operation::is_http) || self.when.iter().any(Condition::is_http)
    }

    /// The rule with its HTTP-only conditions dropped (Istio's DENY rules on TCP).
    pub(crate) fn without_http_conditions(&self) -> Rule {
        Rule {
            from: self.from.clone(),
            to: (self.to.iter())
                .map(|o| Operation {
                    ports: o.ports.clone(),
                    ..Operation::default()
                })
                .collect(),
            when: self.when.iter().filter(|c| !c.is_http()).cloned().collect(),
        }
    }
}

impl Operation {
    fn is_http(&self) -> bool {
        !(self.hosts.is_empty() && self.methods.is_empty() && self.paths.is_empty())
    }
}

impl Condition {
    fn is_http(&self) -> bool {
        matches!(self, Self::Strings(StringKey::Header(_), _))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Strings(StringKey, Field<StringMatch>),
    Ips(IpKey, Field<IpBlock>),
    Port(Field<u16>),
}

#[derive(Debug, Clone)]
pub(crate) enum StringKey {
    Header(HeaderName),
    SourceNamespace,
    SourcePrincipal,
    Sni,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum IpKey {
    Source,
    Remote,
    Destination,
}

impl AuthorizationPolicy {
    /// Validates and compiles the `spec` of the AuthorizationPolicy `namespace/name`.
    ///
    /// Errors name the field, e.g.
    /// `AuthorizationPolicy foo/deny-all: rules[0].from[1].source.principals[0]: ...`.
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
        let spec: AuthorizationPolicySpec = ctx.deserialize(spec)?;
        Self::compile(namespace, name, spec)
    }

    /// Validates and compiles an already deserialized spec.
    pub fn compile(
        namespace: &str,
        name: &str,
        spec: AuthorizationPolicySpec,
    ) -> Result<Self, ConfigError> {
        let ctx = Ctx {
            kind: KIND,
            namespace,
            name,
        };
        let action = match (spec.action.unwrap_or(ActionSpec::Allow), spec.provider) {
            (ActionSpec::Custom, Some(p)) if !p.name.is_empty() => {
                Action::Custom { provider: p.name }
            }
            (ActionSpec::Custom, _) => {
                return Err(ctx.err("provider.name", "a CUSTOM policy needs a provider name"));
            }
            (_, Some(_)) => {
                return Err(ctx.err("provider", "only a CUSTOM policy may name a provider"));
            }
            (ActionSpec::Allow, None) => Action::Allow,
            (ActionSpec::Deny, None) => Action::Deny,
            (ActionSpec::Audit, None) => Action::Audit,
        };
        let rules = spec
            .rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(&ctx, &format!("rules[{i}]"), rule))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            selector: spec.selector.map(|s| s.match_labels),
            action,
            rules,
        })
    }

    /// The policy's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's action.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether the policy applies to a workload with these labels (namespace aside).
    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

fn compile_rule(ctx: &Ctx<'_>, at: &str, rule: RuleSpec) -> Result<Rule, ConfigError> {
    let mut out = Rule::default();
    for (i, from) in rule.from.unwrap_or_default().into_iter().enumerate() {
        let at = format!("{at}.from[{i}].source");
        let source = from
            .source
            .ok_or_else(|| ctx.err(&at, "`source` must be set"))?;
        out.from.push(compile_source(ctx, &at, source)?);
    }
    for (i, to) in rule.to.unwrap_or_default().into_iter().enumerate() {
        let at = format!("{at}.to[{i}].operation");
        let op = to
            .operation
            .ok_or_else(|| ctx.err(&at, "`operation` must be set"))?;
        out.to.push(compile_operation(ctx, &at, op)?);
    }
    for (i, cond) in rule.when.unwrap_or_default().into_iter().enumerate() {
        out.when
            .push(compile_condition(ctx, &format!("{at}.when[{i}]"), cond)?);
    }
    Ok(out)
}

/// Compiles one value list; `None` stays `None`, an empty list is an error.
fn list<T>(
    ctx: &Ctx<'_>,
    at: &str,
    field: &str,
    values: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, ConfigError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.is_empty() {
        return Err(ctx.err(format!("{at}.{field}"), "must not be an empty list"));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|msg| ctx.err(format!("{at}.{field}[{i}]"), msg)))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn field<T>(
    ctx: &Ctx<'_>,
    at: &str,
    (pos, neg): (&str, &str),
    (any_of, none_of): (Option<Vec<String>>, Option<Vec<String>>),
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Field<T>, ConfigError> {
    Ok(Field {
        any_of: list(ctx, at, pos, any_of, &parse)?,
        none_of: list(ctx, at, neg, none_of, &parse)?.unwrap_or_default(),
    })
}

fn is_empty<T>(f: &Field<T>) -> bool {
    f.any_of.is_none() && f.none_of.is_empty()
}

fn principal(s: &str) -> Result<StringMatch, String> {
    if s.starts_with("spiffe://") {
        return Err(format!(
            "{s:?}: principals are written without the `spiffe://` scheme"
        ));
    }
    StringMatch::parse(s)
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?} is not a port number (1-65535)"))
}

fn compile_source(ctx: &Ctx<'_>, at: &str, s: SourceSpec) -> Result<Source, ConfigError> {
    if s.request_principals.is_some() || s.not_request_principals.is_some() {
        let f = if s.request_principals.is_some() {
            "requestPrincipals"
        } else {
            "notRequestPrincipals"
        };
        return Err(ctx.err(
            format!("{at}.{f}"),
            "JWT request authentication is not supported",
        ));
    }
    let source = Source {
        principals: field(
            ctx,
            at,
            ("principals", "notPrincipals"),
            (s.principals, s.not_principals),
            principal,
        )?,
        namespaces: field(
            ctx,
            at,
            ("namespaces", "notNamespaces"),
            (s.namespaces, s.not_namespaces),
            StringMatch::parse,
        )?,
        ip_blocks: field(
            ctx,
            at,
            ("ipBlocks", "notIpBlocks"),
            (s.ip_blocks, s.not_ip_blocks),
            IpBlock::parse,
        )?,
        remote_ip_blocks: field(
            ctx,
            at,
            ("remoteIpBlocks", "notRemoteIpBlocks"),
            (s.remote_ip_blocks, s.not_remote_ip_blocks),
            IpBlock::parse,
        )?,
    };
    if is_empty(&source.principals)
        && is_empty(&source.namespaces)
        && is_empty(&source.ip_blocks)
        && is_empty(&source.remote_ip_blocks)
    {
        return Err(ctx.err(at, "at least one field must be set"));
    }
    Ok(source)
}

fn compile_operation(ctx: &Ctx<'_>, at: &str, o: OperationSpec) -> Result<Operation, ConfigError> {
    let host = |s: &str| StringMatch::parse(s).map(StringMatch::lowercase);
    let op = Operation {
        hosts: field(ctx, at, ("hosts", "notHosts"), (o.hosts, o.not_hosts), host)?,
        ports: field(ctx, at, ("ports", "notPorts"), (o.ports, o.not_ports), port)?,
        methods: field(
            ctx,
            at,
            ("methods", "notMethods"),
            (o.methods, o.not_methods),
            StringMatch::parse,
        )?,
        paths: field(
            ctx,
            at,
            ("paths", "notPaths"),
            (o.paths, o.not_paths),
            StringMatch::parse,
        )?,
    };
    if is_empty(&op.hosts) && is_empty(&op.ports) && is_empty(&op.methods) && is_empty(&op.paths) {
        return Err(ctx.err(at, "at least one field must be set"));
    }
    Ok(op)
}

fn compile_condition(ctx: &Ctx<'_>, at: &str, c: ConditionSpec) -> Result<Condition, ConfigError> {
    if c.values.is_none() && c.not_values.is_none() {
        return Err(ctx.err(at, "one of `values` or `notValues` must be set"));
    }
    let key = c.key.as_str();
    let names = ("values", "notValues");
    let lists = (c.values, c.not_values);
    let strings = |k| {
        Ok(Condition::Strings(
            k,
            field(ctx, at, names, lists.clone(), StringMatch::parse)?,
        ))
    };
    let ips = |k| {
        Ok(Condition::Ips(
            k,
            field(ctx, at, names, lists.clone(), IpBlock::parse)?,
        ))
    };
    match key {
        "source.ip" => ips(IpKey::Source),
        "remote.ip" => ips(IpKey::Remote),
        "destination.ip" => ips(IpKey::Destination),
        "destination.port" => Ok(Condition::Port(field(ctx, at, names, lists.clone(), port)?)),
        "source.namespace" => strings(StringKey::SourceNamespace),
        "source.principal" => {
            let f = field(ctx, at, names, lists.clone(), principal)?;
            Ok(Condition::Strings(StringKey::SourcePrincipal, f))
        }
        "connection.sni" => strings(StringKey::Sni),
        _ => {
            if let Some(name) = key
                .strip_prefix("request.headers[")
                .and_then(|k| k.strip_suffix(']'))
            {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ctx.err(
                        format!("{at}.key"),
                        format!("{name:?} is not a valid header name"),
                    )
                })?;
                return strings(StringKey::Header(header));
            }
            let why = if key.starts_with("request.auth.") {
                "JWT request authentication is not supported".to_owned()
            } else {
                format!("unknown condition key {key:?}")
            };
            Err(ctx.err(format!("{at}.key"), why))
        }
    }
}
